"""Streaming responses: text chunks as they arrive, the outcome when done."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator

from .effects import Outcome


@dataclass(frozen=True, slots=True)
class StreamReset:
    """Yielded when a stream broke midway and another attempt starts from scratch.

    A consumer that renders incrementally should clear what it showed: the chunks that follow
    form the complete answer of ``deployment``.
    """

    deployment: str


class StreamResponse:
    """Iterate for ``str`` chunks (and :class:`StreamReset` markers); ``outcome`` is set at the end.

    Cache hits and rule answers arrive as one chunk.  The outcome records time to first token.
    """

    def __init__(self, chunks: Iterator[Any] | AsyncIterator[Any] = ()) -> None:
        self._chunks = iter(chunks) if isinstance(chunks, (tuple, list)) else chunks
        self.outcome: Outcome | None = None
        self.saw_text = False

    def _done(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def whole_answer_chunk(self) -> Iterator[str]:
        """Cache, rule and last-resort answers (nothing was streamed) arrive as one chunk."""
        out = self.outcome
        if out is not None and out.ok and out.text and (not self.saw_text or out.kind.value != "model"):
            yield out.text

    def __iter__(self) -> Iterator[Any]:
        return self._chunks  # type: ignore[return-value]

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._chunks  # type: ignore[return-value]

    @property
    def text(self) -> str | None:
        return None if self.outcome is None else self.outcome.text
