"""Streaming responses: text chunks as they arrive, the outcome when done."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator

from .asyncwait import wait_out
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
        #: text reached the caller since the last StreamReset (one reset takes all of it back)
        self.saw_text = False
        #: the last streamed call answered, and its text reached the caller as it came
        self.answer_streamed = False
        #: the chunks went through the output guards (llmlab.stream_guard): the text shown since the
        #: last reset is kept, and the whole answer is sent again when it is not the outcome's text
        self.guarded = False
        self._shown: list[str] = []
        self._closing: asyncio.Future | None = None  # the one close of an async stream (see aclose)

    def __repr__(self) -> str:
        out = self.outcome
        if out is None:
            return "StreamResponse(<not finished>)"
        what = out.kind.value if out.error is None else out.error.code
        return (f"StreamResponse({what}, request_id={out.request_id!r}, deployment={out.deployment!r}, "
                f"ttft_s={out.ttft_s}, cost_usd={out.cost_usd:.6f})")

    def _done(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def whole_answer_chunk(self) -> Iterator[Any]:
        """Cache, rule and last-resort answers, and a cascade's earlier stage's answer served when
        the last stage failed, arrive as one chunk (they were not streamed).  After text of a
        stream that was cut, the chunk comes behind a :class:`StreamReset`: without it a stream cut
        before the last-resort answer read as the cut text followed by that answer, and a cascade
        whose last stage was cut served its earlier stage's answer without sending it at all.  So
        does a streamed answer whose output guards stopped its chunks (a rewrite of text already
        shown) or whose shown text is not the guarded answer: the caller ends with ``outcome.text``."""
        out = self.outcome
        if out is None or not out.ok or not out.text:
            return
        streamed = self.answer_streamed and out.kind.value == "model"
        if streamed and (not self.guarded or "".join(self._shown) == out.text):
            return
        reset = self.reset(out.deployment or "cache")
        if reset is not None:
            yield reset
        yield out.text

    def show(self, text: str) -> str:
        """Note that ``text``, about to be yielded to the caller, reached it when not empty."""
        if text:
            self.saw_text = True
            if self.guarded:
                self._shown.append(text)
        return text

    def reset(self, deployment: str) -> StreamReset | None:
        """The :class:`StreamReset` to send before an answer starts over, when text reached the
        caller since the last one; None when nothing needs taking back (a failed retry after a
        reset used to send another, and the caller got three in a row)."""
        if not self.saw_text:
            return None
        self.saw_text = False
        self._shown.clear()
        return StreamReset(deployment)

    # Iteration goes through a wrapper the response does not hold: the driving generator refers
    # to this response, so a caller's ``break`` would otherwise leave it suspended until garbage
    # collection (no ledger record, the budget hold kept).  Dropping the wrapper closes the stream
    # at once, and the gateway records the request as ClientDisconnected.
    def __iter__(self) -> Iterator[Any]:
        chunks = self._chunks
        if not hasattr(chunks, "__next__") and hasattr(chunks, "__anext__"):  # Python's own message blames a generator
            raise TypeError("a stream from Gateway.astream() is read with `async for`; "
                            "use Gateway.stream() for a plain `for` loop")
        try:
            yield from chunks  # type: ignore[misc]
        finally:
            self.close()

    async def _aiter(self) -> AsyncIterator[Any]:
        if not hasattr(self._chunks, "__anext__"):
            raise TypeError("a stream from Gateway.stream() is read with a plain `for` loop; "
                            "use Gateway.astream() for `async for`")
        try:
            async for chunk in self._chunks:  # type: ignore[union-attr]
                yield chunk
        finally:
            await self.aclose()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._aiter()

    def close(self) -> None:
        """Stop a stream early (also what leaving a ``for`` loop or a ``with`` block does)."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`; every call waits for the one close.  Leaving an ``async
        for`` drops its iterator, whose own close the event loop runs as a task: an ``await
        r.aclose()`` right after (or an ``async with`` block's end) met that close half-way, and
        one of the two failed with "aclose(): asynchronous generator is already running", logged
        as a task exception never retrieved."""
        if self._closing is None:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is None:
                return
            self._closing = asyncio.ensure_future(aclose())
        if await wait_out(self._closing):  # the close runs to its end; a cancel meanwhile follows it
            raise asyncio.CancelledError()
        self._closing.result()

    def __enter__(self) -> "StreamResponse":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "StreamResponse":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    @property
    def text(self) -> str | None:
        return None if self.outcome is None else self.outcome.text
