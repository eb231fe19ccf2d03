"""The residual stream at the last prompt token after every decoder layer, which refusal directions are made of.

The values are read with a forward hook on each decoder layer rather than from ``output_hidden_states``: in
transformers the last hidden state is taken after the final norm, which rescales every dimension by its learned
weight and every prompt by its own norm. A direction measured there is not the direction the last layer writes
into the residual stream, so ablating it misses a refusal that lives in the last layer. Hooks see every layer's
true output, and keep only the last position instead of every hidden state of the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from heretic_tui.core.models.batching import batches, encode, positions
from heretic_tui.core.models.layers import decoder_layers
from heretic_tui.core.models.loading import LoadedModel


def last_token_residuals(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Residual stream of the last prompt token after every layer, in float32: shape [prompts, layers, hidden]."""
    _, layers = decoder_layers(loaded.model)
    captured: list[torch.Tensor | None] = [None] * len(layers)

    def capture(index: int) -> Callable[..., None]:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            captured[index] = hidden[:, -1, :].float().cpu()

        return hook

    handles = [layer.register_forward_hook(capture(index)) for index, layer in enumerate(layers)]
    rows = []
    done = 0
    try:
        for chunk in batches(texts, batch_size):
            if check_cancelled:
                check_cancelled()
            batch = encode(loaded.tokenizer, chunk, loaded.device)
            captured[:] = [None] * len(layers)
            with torch.inference_mode():
                loaded.model(**batch, position_ids=positions(batch["attention_mask"]), use_cache=False,
                             logits_to_keep=1)
            missing = [index for index, value in enumerate(captured) if value is None]
            if missing:
                raise RuntimeError(f"decoder layers {missing} of {type(loaded.model).__name__} did not run")
            rows.append(torch.stack([value for value in captured if value is not None], dim=1))
            done += len(chunk)
            if progress:
                progress(done)
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(rows)
