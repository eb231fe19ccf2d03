"""One answer streamed piece by piece while ``model.generate`` runs: the chat worker and the server's transformers
engine both use it.

transformers streams through :class:`~transformers.TextIteratorStreamer`, which needs ``generate`` in another
thread; the thread, the streamer and carrying the thread's error over to the caller are what both callers need the
same way, so they live here once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any


def stream_generation(model: Any, tokenizer: Any, arguments: dict[str, Any]) -> Iterator[str]:
    """The decoded text of what ``model.generate(**arguments)`` produces, piece by piece, without the prompt.

    ``arguments`` are the inputs and generation options (not the streamer, which this adds). An error raised by
    ``generate`` ends the stream and is raised here once the generating thread has finished, so the caller sees it
    after the pieces that came before it. Empty pieces (the streamer's flushes) are left out.
    """
    import torch
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failure: list[BaseException] = []

    def generate() -> None:
        try:
            with torch.inference_mode():
                model.generate(**arguments, streamer=streamer)
        except BaseException as error:
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=generate, name="generate", daemon=True)
    worker.start()
    for piece in streamer:
        if piece:
            yield piece
    worker.join()
    if failure:
        raise failure[0]
