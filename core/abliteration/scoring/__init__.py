"""Judging a response to a harmful prompt: the :class:`RefusalScorer` interface and the scorers behind it."""
