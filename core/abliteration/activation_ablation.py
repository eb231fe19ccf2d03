"""Abliteration in activation space: trials applied by forward hooks, several trials per forward pass.

For a weight W that writes into the residual stream, the edit W' = (I - w d d^T) W gives W' x = y - w d (d^T y)
with y = W x, so the ablation can be applied to the module's output instead of its weight; MPOA's row rescaling
(:mod:`~heretic_tui.core.abliteration.ablation`) is one fixed factor per output unit on top,
y' = s * (y - w d (d^T y)). Applied this way every row of a batch can carry its own trial: the batch holds K
copies of the evaluation prompts, and each row's direction, strength and factors are gathered from its trial. No
weight is edited, nothing needs resetting, and a model whose weights cannot be edited (4-bit or 8-bit) can be
searched all the same.

Rows are followed through a forward pass and through generation by two hooks on the model itself: a forward that
starts without a KV cache starts the next chunk of rows (the callers in :mod:`heretic_tui.core.models.generation`
walk their texts in order, a chunk at a time), and the cache the model returns reports every row it drops
(``batch_select_indices``, which generation calls when a row's verdict is known), so a row leaving the batch takes
its trial parameters with it. Every hooked forward checks that its batch has as many rows as are being followed,
so a caller that walks rows differently fails loudly instead of mixing trials up.

Where the hooks sit:

- dense models: on the output of each attention output projection and MLP down projection (``nn.Linear``; a bias
  is taken off before the projection and added back, since the weight edit leaves the bias alone);
- MoE models with fused experts (one ``[experts, hidden, intermediate]`` tensor): for the plain projection on the
  experts module's combined output, which is exact because the projection is linear and every expert of a layer
  shares w and d. MPOA's factors differ per expert and cannot be applied to the combined output, so when a trial
  uses MPOA the experts module runs the eager per-expert computation of transformers' fused layout here, with each
  expert's output ablated and rescaled before the routing weights are applied. A fused layout other than that one
  (transposed, biased or without a gate) is refused with MPOA and points at ``abliteration.apply = 'weights'``;
- quantized models (bitsandbytes 4-bit or 8-bit, torchao, HQQ): on the output of each quantized output layer,
  found by module name since a packed weight has no axis of the hidden size. The quantized weights are never
  written; MPOA's factors read a dequantized copy of one weight at a time (peft's ``dequantize_module_weight``).

Hand-written because neither transformers nor peft applies a different edit to each row of one batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from heretic_tui.core.abliteration.ablation import (
    ATTENTION_MARKERS,
    ATTENTION_OUTPUT_NAMES,
    COMPONENTS,
    MLP_MARKERS,
    MLP_OUTPUT_NAMES,
    Abliterator,
    Component,
    TrialParameters,
)
from heretic_tui.core.abliteration.methods import NORM_PRESERVING, PROJECTION, edited_kinds
from heretic_tui.core.models.layers import UnsupportedLayoutError, decoder_layers, text_config


@dataclass
class HookTarget:
    """One residual-writing weight and the module whose output (or expert computation) carries its edit."""

    component: Component
    module: nn.Module
    fused: bool
    """A 3-D ``[experts, ., .]`` tensor inside an experts module rather than an ``nn.Linear`` weight."""
    quantized: bool = False
    """A 4-bit or 8-bit layer: its weight is never written, and read (dequantized) only for MPOA's factors."""


@dataclass
class ComponentTrials:
    """The K trials' edit of one weight, one row per trial, on the weight's device, in float32."""

    strengths: torch.Tensor
    """[K]: the kernel's weight w at this layer (0 where a trial leaves the weight alone)."""
    directions: torch.Tensor
    """[K, hidden]: each trial's unit direction for this layer."""
    factors: torch.Tensor | None
    """[K, hidden] (dense) or [K, experts, hidden] (fused): MPOA's per-output-unit factors (1 for a projection
    trial); None when no trial edits this weight with MPOA."""


@dataclass
class TrialBatch:
    """K trials prepared for the hooks: per weight, what each trial does to it."""

    trials: list[TrialParameters]
    edits: dict[str, ComponentTrials]
    """Keyed by the component's name; weights no trial edits are absent."""

    def __len__(self) -> int:
        return len(self.trials)


class RowMismatchError(RuntimeError):
    """A hooked forward saw a batch that is not the rows being followed (a caller that walks rows differently)."""


class ActivationAblation:
    """Applies K trials to a model's forward passes through hooks, without editing any weight."""

    def __init__(self, model: Any, directions: Any) -> None:
        """``directions`` as :class:`~heretic_tui.core.abliteration.ablation.Abliterator` takes them; its weight
        path decides each trial's directions, so both paths always ablate the same ones.

        A quantized model's weights cannot be edited, so the weight path refuses it; its residual-writing layers
        are then found as modules (:func:`quantized_targets`), and the directions are still chosen by the weight
        path's own code."""
        self.model = model
        if has_quantized_layers(model):
            self.weight_path = _direction_chooser(model, directions)
            self.targets = quantized_targets(model)
        else:
            self.weight_path = Abliterator(model, directions)
            self.targets = [self._target(component) for component in self.weight_path.components]
        self._row_norms: dict[str, torch.Tensor] = {}
        self._all_rows: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None
        self._cursor = 0
        self._every_row = False
        self._version = 0
        self._gathered: dict[str, tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}

    def _target(self, component: Component) -> HookTarget:
        owner, _, attribute = component.name.rpartition(".")
        if component.parameter.dim() == 2:
            module = self.model.get_submodule(owner)
            if not isinstance(module, nn.Linear):
                raise UnsupportedLayoutError(
                    f"{component.name} belongs to a {type(module).__name__}, not a linear layer, so its edit cannot be "
                    "applied to the module's output; set abliteration.apply = 'weights'."
                )
            return HookTarget(component, module, fused=False)
        return HookTarget(component, self.model.get_submodule(owner), fused=True)

    # Preparing trials.

    @torch.no_grad()
    def prepare(self, trials: Sequence[TrialParameters]) -> TrialBatch:
        """What each of the trials does to every weight: strengths, directions and (for MPOA) the row factors."""
        trials = list(trials)
        per_layer = [self._trial_directions(parameters) for parameters in trials]
        edits: dict[str, ComponentTrials] = {}
        for target in self.targets:
            component = target.component
            strengths = [self._strength(parameters, component) for parameters in trials]
            if not any(strengths):
                continue
            device = component.parameter.device
            directions = torch.stack([layers[component.layer] for layers in per_layer]).to(device)
            factors = None
            if any(parameters.ablation_method == NORM_PRESERVING and strength
                   for parameters, strength in zip(trials, strengths)):
                factors = torch.stack([
                    self._factors(target, directions[index], strength)
                    if parameters.ablation_method == NORM_PRESERVING and strength
                    else torch.ones(self._factor_shape(target), device=device)
                    for index, (parameters, strength) in enumerate(zip(trials, strengths))
                ])
            edits[component.name] = ComponentTrials(torch.tensor(strengths, device=device), directions, factors)
        for parameters in trials:
            if parameters.ablation_method not in (PROJECTION, NORM_PRESERVING):
                raise ValueError(f"Unknown ablation method {parameters.ablation_method!r}.")
        return TrialBatch(trials, edits)

    def _trial_directions(self, parameters: TrialParameters) -> torch.Tensor:
        """The unit direction of every layer in this trial ([layers, hidden]), as the weight path chooses it."""
        return self.weight_path.trial_directions(parameters)

    @staticmethod
    def _strength(parameters: TrialParameters, component: Component) -> float:
        if component.kind not in edited_kinds(parameters.edited_components):
            return 0.0
        kernel = parameters.kernels.get(component.kind)
        return kernel.weight(component.layer) if kernel else 0.0

    @staticmethod
    def _factor_shape(target: HookTarget) -> tuple[int, ...]:
        if target.quantized:
            return (target.module.out_features,)
        parameter = target.component.parameter
        hidden = parameter.shape[target.component.output_axis]
        return (hidden,) if parameter.dim() == 2 else (parameter.shape[0], hidden)

    def _weight_rows(self, target: HookTarget) -> torch.Tensor:
        """The weight as float32 with the hidden (output) axis second to last: [hidden, inputs] or
        [experts, hidden, inputs]; a quantized layer's is dequantized (by peft's helper) for the moment."""
        component = target.component
        if target.quantized:
            from peft.utils.integrations import dequantize_module_weight

            return dequantize_module_weight(target.module).detach().float()
        weight = component.parameter.detach().float()
        if weight.dim() == 3 and component.output_axis == 2:
            return weight.transpose(1, 2)
        return weight

    def _factors(self, target: HookTarget, direction: torch.Tensor, strength: float) -> torch.Tensor:
        """MPOA's s_i = |W_i| / |W_i - w d_i d^T W| without building the edited weight:
        |W_i - w d_i r|^2 = |W_i|^2 - 2 w d_i (W r)_i + w^2 d_i^2 |r|^2 with r = d^T W."""
        weight = self._weight_rows(target)
        name = target.component.name
        if name not in self._row_norms:
            self._row_norms[name] = weight.pow(2).sum(dim=-1)
        original = self._row_norms[name]
        projection = torch.einsum("h,...hi->...i", direction, weight)
        along = torch.einsum("...hi,...i->...h", weight, projection)
        squared = projection.pow(2).sum(dim=-1, keepdim=True)
        edited = original - 2 * strength * direction * along + strength**2 * direction.pow(2) * squared
        tiny = torch.finfo(torch.float32).eps * original
        return torch.where(edited > tiny, (original / edited.clamp_min(torch.finfo(torch.float32).tiny)).sqrt(),
                           torch.ones_like(edited))

    # Applying trials.

    @contextmanager
    def applied(self, batch: TrialBatch, row_trials: Sequence[int] | None = None) -> Iterator[None]:
        """Hooks on for the forwards inside: the i-th text the caller runs is edited by trial ``row_trials[i]``
        of ``batch``, whether it runs them in one batch or in chunks, with or without a KV cache.

        Without ``row_trials`` the batch must hold one trial, which edits every row of every forward inside
        (a chat, a capability check): the model behaves as if that trial's weights were loaded."""
        if self._all_rows is not None:
            raise RuntimeError("Trials are already applied through hooks; contexts do not nest.")
        if row_trials is None:
            if len(batch) != 1:
                raise ValueError(f"A batch of {len(batch)} trials needs the trial of every row.")
            self._every_row = True
            row_trials = []
        elif any(not 0 <= row < len(batch) for row in row_trials):
            raise ValueError(f"Row trials must index the {len(batch)} trials of the batch.")
        self._all_rows = torch.tensor(list(row_trials), dtype=torch.long)
        self._rows, self._cursor, self._gathered = None, 0, {}
        handles = [
            self.model.register_forward_pre_hook(self._before_model, with_kwargs=True),
            self.model.register_forward_hook(self._after_model, with_kwargs=True),
        ]
        replaced: list[nn.Module] = []
        try:
            for target in self.targets:
                edit = batch.edits.get(target.component.name)
                if edit is None:
                    continue
                if target.fused and edit.factors is not None:
                    self._check_eager_layout(target)
                    target.module.forward = self._expert_forward(target, edit)  # type: ignore[method-assign]
                    replaced.append(target.module)
                else:
                    handles.append(target.module.register_forward_hook(self._output_hook(target, edit)))
            yield
        finally:
            for handle in handles:
                handle.remove()
            for module in replaced:
                del module.forward
            self._all_rows, self._rows, self._gathered, self._every_row = None, None, {}, False

    def _before_model(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        assert self._all_rows is not None
        inputs = kwargs.get("input_ids")
        if inputs is None:
            inputs = args[0] if args else kwargs.get("inputs_embeds")
        rows = int(inputs.shape[0])
        if self._every_row:
            self._set_rows(torch.zeros(rows, dtype=torch.long))
            return
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if cache is None or cache.get_seq_length() == 0:
            if self._cursor + rows > len(self._all_rows):
                raise RowMismatchError(
                    f"A forward pass of {rows} rows starts after {self._cursor} of {len(self._all_rows)} rows were "
                    "run; the texts given do not match the rows the trials were applied to."
                )
            self._set_rows(self._all_rows[self._cursor:self._cursor + rows])
            self._cursor += rows
        elif self._rows is None or len(self._rows) != rows:
            raise RowMismatchError(
                f"A cached forward pass has {rows} rows while {0 if self._rows is None else len(self._rows)} are "
                "followed; rows were dropped without the cache's batch_select_indices."
            )

    def _after_model(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        cache = getattr(output, "past_key_values", None) or getattr(output, "cache", None)
        if cache is None or getattr(cache, "_follows_trial_rows", None) is self:
            return
        select = cache.batch_select_indices
        ablation = self

        def batch_select_indices(indices: torch.Tensor) -> None:
            select(indices)
            if ablation._rows is not None:
                ablation._set_rows(ablation._rows[indices.to("cpu")])

        cache.batch_select_indices = batch_select_indices
        cache._follows_trial_rows = self

    def _set_rows(self, rows: torch.Tensor) -> None:
        self._rows = rows
        self._version += 1

    def _row_edit(self, name: str, edit: ComponentTrials,
                  rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The edit of each row of the current batch (gathered once per batch and weight)."""
        if self._rows is None or len(self._rows) != rows:
            raise RowMismatchError(
                f"A hooked module saw {rows} rows while {0 if self._rows is None else len(self._rows)} are followed."
            )
        cached = self._gathered.get(name)
        if cached is not None and cached[0] == self._version:
            return cached[1], cached[2], cached[3]
        index = self._rows.to(edit.strengths.device)
        gathered = (edit.strengths[index], edit.directions[index],
                    None if edit.factors is None else edit.factors[index])
        self._gathered[name] = (self._version, *gathered)
        return gathered

    def _output_hook(self, target: HookTarget, edit: ComponentTrials) -> Any:
        name = target.component.name
        bias = getattr(target.module, "bias", None) if not target.fused else None

        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            if target.fused:
                rows = self._rows_of_tokens(output.shape[0])
                strengths, directions, _ = self._row_edit(name, edit, len(self._rows))  # type: ignore[arg-type]
                return ablate_rows(output, strengths[rows], directions[rows], None, None)
            strengths, directions, factors = self._row_edit(name, edit, output.shape[0])
            return ablate_rows(output, strengths, directions, factors, bias)

        return hook

    def _rows_of_tokens(self, tokens: int) -> torch.Tensor:
        """Which row each token of a flattened [rows * sequence, hidden] MoE input belongs to."""
        assert self._rows is not None
        rows = len(self._rows)
        if rows == 0 or tokens % rows:
            raise RowMismatchError(f"An experts module saw {tokens} tokens, not a multiple of the {rows} rows.")
        return torch.arange(rows).repeat_interleave(tokens // rows)

    @staticmethod
    def _check_eager_layout(target: HookTarget) -> None:
        module = target.module
        layout_ok = (
            target.component.output_axis == 1 and target.component.name.endswith(".down_proj")
            and isinstance(getattr(module, "gate_up_proj", None), torch.Tensor)
            and getattr(module, "has_gate", True) and not getattr(module, "has_bias", False)
            and not getattr(module, "is_transposed", False) and getattr(module, "is_concatenated", True)
            and not getattr(module, "has_post_expert_norm", False) and hasattr(module, "act_fn")
        )
        if not layout_ok:
            raise UnsupportedLayoutError(
                f"MPOA (ablation_method = 'norm_preserving') needs each expert's output of {target.component.name} "
                f"({type(module).__name__}) separately, and heretic-tui only computes experts one by one for "
                "transformers' fused gate_up_proj/down_proj layout. Set abliteration.apply = 'weights' to edit the "
                "weights instead, or use ablation_method = 'projection'."
            )

    def _expert_forward(self, target: HookTarget, edit: ComponentTrials) -> Any:
        """transformers' eager fused-experts forward with every expert's output ablated and rescaled by its own
        MPOA factors before the routing weight."""
        module = target.module
        name = target.component.name
        apply_gate = getattr(module, "_apply_gate", None)

        def forward(hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:
            token_rows = self._rows_of_tokens(hidden_states.shape[0]).to(hidden_states.device)
            strengths, directions, factors = self._row_edit(name, edit, len(self._rows))  # type: ignore[arg-type]
            assert factors is not None
            final = torch.zeros_like(hidden_states)
            experts = module.down_proj.shape[0]
            for expert in torch.unique(top_k_index).tolist():
                if not 0 <= expert < experts:
                    continue
                token_index, position = torch.where(top_k_index == expert)
                gate_up = nn.functional.linear(hidden_states[token_index], module.gate_up_proj[expert])
                if apply_gate is not None:
                    gated = apply_gate(gate_up)
                else:
                    gate, up = gate_up.chunk(2, dim=-1)
                    gated = module.act_fn(gate) * up
                output = nn.functional.linear(gated, module.down_proj[expert])
                rows = token_rows[token_index].to(strengths.device)
                output = ablate_rows(output, strengths[rows], directions[rows], factors[rows, expert], None)
                output = output * top_k_weights[token_index, position, None]
                final.index_add_(0, token_index, output.to(final.dtype))
            return final

        return forward


QUANTIZED_WEIGHT_TYPES = ("Params4bit", "Int8Params")
"""bitsandbytes' 4-bit and 8-bit weight classes."""


def is_quantized_layer(module: nn.Module) -> bool:
    """A linear layer whose weight is stored quantized: bitsandbytes, torchao, or HQQ's layout (``W_q`` and
    ``dequantize()``), which peft's ``dequantize_module_weight`` reads."""
    if hasattr(module, "W_q") and callable(getattr(module, "dequantize", None)):
        return True
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return False
    return (type(weight).__name__ in QUANTIZED_WEIGHT_TYPES or type(weight).__module__.startswith("torchao.")
            or not weight.dtype.is_floating_point)


def has_quantized_layers(model: nn.Module) -> bool:
    return any(is_quantized_layer(module) for module in model.modules())


def quantized_targets(model: nn.Module) -> list[HookTarget]:
    """The residual-writing layers of a quantized model, found by module rather than by weight (a packed 4-bit
    weight has no axis of the hidden size): the same names and markers as
    :func:`~heretic_tui.core.abliteration.ablation.find_components`, and the same refusal of a layer missing a
    kind. Fused expert tensors are not quantized by bitsandbytes; a quantized MoE layer of that kind is refused."""
    hidden = text_config(model).hidden_size
    layers_name, layers = decoder_layers(model)
    found: list[HookTarget] = []
    for index, layer in enumerate(layers):
        prefix = f"{layers_name}.{index}"
        kinds: set[str] = set()
        for local_name, module in layer.named_modules():
            parts = local_name.split(".")
            owner, path = parts[-1], ".".join(parts[:-1]).lower()
            if getattr(module, "out_features", None) != hidden:
                continue
            if any(isinstance(parameter, torch.Tensor) and parameter.dim() == 3
                   for parameter in module.parameters(recurse=False)):
                raise UnsupportedLayoutError(f"{prefix}.{local_name} holds fused experts next to quantized layers; "
                                             "heretic-tui cannot ablate it without editing weights.")
            kind = None
            if any(marker in path for marker in ATTENTION_MARKERS) and owner in ATTENTION_OUTPUT_NAMES:
                kind = "attention"
            elif any(marker in path for marker in MLP_MARKERS) and owner in MLP_OUTPUT_NAMES:
                kind = "mlp"
            if kind is None:
                continue
            quantized = is_quantized_layer(module)
            anchor = getattr(module, "W_q", None) if quantized and hasattr(module, "W_q") else module.weight
            found.append(HookTarget(Component(kind, index, f"{prefix}.{local_name}.weight", anchor, 0), module,
                                    fused=False, quantized=quantized))
            kinds.add(kind)
        missing = [kind for kind in COMPONENTS if kind not in kinds]
        if missing:
            raise UnsupportedLayoutError(
                f"Layer {prefix} ({type(layer).__name__}) has no recognizable {' or '.join(missing)} output "
                "projection among its quantized layers. This architecture is not supported quantized yet."
            )
    return found


def _direction_chooser(model: Any, directions: Any) -> Any:
    """The weight path's direction logic for a model it refuses to edit (a quantized one).

    :class:`Abliterator` takes in its directions before it looks for weights to edit, so an instance whose
    weight search refused the model still chooses every trial's directions exactly as for an editable model."""
    chooser = Abliterator.__new__(Abliterator)
    try:
        Abliterator.__init__(chooser, model, directions)
    except UnsupportedLayoutError:
        pass
    if not isinstance(getattr(chooser, "directions", None), torch.Tensor):
        raise UnsupportedLayoutError("The refusal directions could not be prepared for this quantized model.")
    return chooser


def ablate_rows(output: torch.Tensor, strengths: torch.Tensor, directions: torch.Tensor,
                factors: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """y' = s * (y - w d (d^T y)) per row, in float32, for outputs [rows, ..., hidden] and per-row w [rows],
    d [rows, hidden] and s [rows, hidden]; a bias is taken off first and added back after."""
    values = output.float()
    if bias is not None:
        values = values - bias.float()
    shape = (values.shape[0],) + (1,) * (values.dim() - 2) + (values.shape[-1],)
    directions = directions.to(values.device).reshape(shape)
    along = (values * directions).sum(dim=-1, keepdim=True)
    values = values - strengths.to(values.device).reshape(shape[:-1] + (1,)) * along * directions
    if factors is not None:
        values = values * factors.to(values.device).reshape(shape)
    if bias is not None:
        values = values + bias.float()
    return values.to(output.dtype)
