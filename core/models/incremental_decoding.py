"""The text of a growing answer, decoded one new token at a time instead of whole after every token.

Generation asks the refusal scorer for a verdict after every token, on the answer decoded so far; decoding the
whole answer each time costs a call into the tokenizer that grows with the answer, and over a study's trials it
was about a tenth of a trial's time. The Rust tokenizer behind transformers' fast tokenizers has a streaming
decoder (:class:`tokenizers.decoders.DecodeStream`) that returns only what a new token adds, handling the cases
plain concatenation gets wrong (a character split over several byte tokens, the space a SentencePiece-style
decoder strips from the first word); the answer is the concatenation of those pieces.

The streamed text must be ``tokenizer.decode(tokens, skip_special_tokens=True)``, since a verdict that differed
would stop generation at another token. It is, but for one thing: a character still split over byte tokens
appears once its last byte comes, where the whole decode shows U+FFFD for it meanwhile (no refusal marker holds
that character, and generation judges the last token and keeps the answer from one whole decode). Streaming is
used only where that decode is the Rust decode itself: a fast tokenizer whose ``clean_up_tokenization_spaces`` post-processing is off, or skipped (transformers
skips it for BPE models). Anything else (a slow Python tokenizer, a WordPiece tokenizer that cleans up spaces, a
tokenizer the streaming decoder rejects) decodes the whole answer as before, which is always correct.
"""

from __future__ import annotations

from typing import Any


def streaming_backend(tokenizer: Any) -> Any | None:
    """The Rust tokenizer to stream with, or None where streaming would not give ``tokenizer.decode``'s text."""
    try:
        from tokenizers import Tokenizer
        from tokenizers.decoders import DecodeStream  # noqa: F401 - only its presence is checked here
    except ImportError:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        return None
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        is_bpe = type(backend.model).__name__ == "BPE"
        forced = getattr(tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
        if not is_bpe or forced:
            return None
    return backend


class IncrementalText:
    """The decoded text (special tokens dropped) of tokens given a few at a time through :meth:`extend`."""

    def __init__(self, tokenizer: Any, backend: Any | None) -> None:
        """``backend`` from :func:`streaming_backend` (looked up once per tokenizer by the caller); None decodes
        the whole sequence on every :attr:`text`."""
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self._backend = backend
        self._stream: Any = None
        self._pieces: list[str] = []
        self._text: str | None = ""
        if backend is not None:
            from tokenizers.decoders import DecodeStream

            self._stream = DecodeStream(skip_special_tokens=True)

    def extend(self, tokens: list[int]) -> None:
        if not tokens:
            return
        self.tokens.extend(tokens)
        if self._stream is None:
            self._text = None
            return
        try:
            for token in tokens:
                piece = self._stream.step(self._backend, token)
                if piece:
                    self._pieces.append(piece)
        except Exception:  # noqa: BLE001 - a token the streaming decoder rejects: decode whole from now on
            self._stream = None
            self._text = None
            return
        self._text = None

    @property
    def text(self) -> str:
        if self._text is None:
            if self._stream is not None:
                self._text = "".join(self._pieces)
                self._pieces = [self._text]
            else:
                self._text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        return self._text
