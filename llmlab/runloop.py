"""The drive loops: step a pipeline generator for a sync, async or streaming caller.

The pipeline is sans-I/O (it yields effects); these loops perform each effect with a driver and
send the result back, whatever the driver (litellm's, the scripted one).  They also own what
only the caller's side can know: a caller who leaves (a closed stream, a cancelled task) is
recorded and billed through :meth:`PipelineRun.abandon`, and a streamed answer's chunks are
shown with the caller's own values (:class:`~llmlab.placeholders.StreamRestorer`).
"""
from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import Any, AsyncIterator, Awaitable, Callable, ContextManager, Generator, Iterator

from .effects import Call, CallError, ErrorKind
from .errors import ClientDisconnected
from .fallback import streamed_part
from .live import LiteLLMDriver, _aclose, _StreamState, reported_part
from .placeholders import StreamRestorer
from .provider_errors import redact_secrets
from .stream import StreamResponse


def driver_failure(effect: Any, exc: Exception) -> CallError:
    """A driver that raised while performing a call: an attempt outcome, never a crash."""
    params = effect.deployment.params if isinstance(effect, Call) else {}
    return CallError(ErrorKind.MALFORMED, redact_secrets(f"driver raised {type(exc).__name__}: {exc}", params)[:200])


class PipelineRun:
    """Steps one pipeline generator; shared by every drive loop (sync, async, streaming).

    A failing ``Call`` becomes a :class:`CallError` (the chain retries or falls back); any other
    failing effect is thrown into the pipeline, which turns it into a typed outcome.

    ``lock`` (the pipeline's :class:`~llmlab.steplock.StepLock`) is held while the generator runs
    between two effects, never while an effect is performed, and the pipeline lets it go around
    user code: the stages' in-memory state (budgets, rate buckets, caches, breakers, ledger) is
    then changed by one request at a time even when ``complete()`` is called from many threads,
    while calls to providers and guards' own I/O still overlap.
    """

    def __init__(self, gen: Generator[Any, Any, Any], lock: ContextManager[Any] = nullcontext()) -> None:
        self.gen = gen
        self.lock = lock
        self.effect: Any = None
        self.outcome: Any = None
        self.done = False
        self._step(gen.__next__)

    def _step(self, advance: Callable[[], Any]) -> None:
        with self.lock:
            try:
                self.effect = advance()
            except StopIteration as stop:
                self.done, self.outcome = True, stop.value

    def send(self, value: Any) -> None:
        self._step(lambda: self.gen.send(value))

    def fail(self, exc: Exception) -> None:
        if isinstance(self.effect, Call):
            self.send(driver_failure(self.effect, exc))
        else:
            self._step(lambda: self.gen.throw(exc))

    def abandon(self, streamed: str = "", latency_s: float = 0.0,
                prompt_tokens: tuple[int, int, int] | None = None) -> Any:
        """The caller left (closed the stream, cancelled the task): finish the pipeline with
        :class:`~llmlab.errors.ClientDisconnected` so the request still reaches the ledger, its
        budget reservation settles and a half-open probe is released.  ``streamed`` is what the
        provider sent of the current call (the text the caller received, and tool-call arguments
        it did not): its tokens are charged, with ``prompt_tokens`` (prompt, cache reads, cache
        writes) when the provider reported them (else the prompt counted locally)."""
        if self.done:
            return self.outcome
        effect, partial = self.effect, None
        if isinstance(effect, Call) and (streamed or prompt_tokens):  # the prompt is billed once read
            partial = reported_part(streamed_part(effect, streamed, latency_s), prompt_tokens)
        error = ClientDisconnected(partial=partial, deployment=effect.deployment if isinstance(effect, Call) else None)
        try:
            self._step(lambda: self.gen.throw(error))
        except ClientDisconnected:  # a pipeline that does not handle it: nothing to record
            self.done = True
        if not self.done:  # the pipeline asked for another effect: nobody is left to perform it
            with self.lock:
                self.gen.close()
            self.done = True
        return self.outcome


def drive(gen: Generator[Any, Any, Any], perform: Callable[[Any], Any],
          lock: ContextManager[Any] = nullcontext()) -> Any:
    """Run a pipeline generator to completion, performing each effect synchronously."""
    run = PipelineRun(gen, lock)
    while not run.done:
        try:
            value = perform(run.effect)
        except Exception as exc:
            run.fail(exc)
        else:
            run.send(value)
    return run.outcome


async def adrive(gen: Generator[Any, Any, Any], aperform: Callable[[Any], Awaitable[Any]],
                 lock: ContextManager[Any] = nullcontext()) -> Any:
    """Run a pipeline generator to completion, awaiting each effect (same failure rules as drive)."""
    run = PipelineRun(gen, lock)
    while not run.done:
        try:
            value = await aperform(run.effect)
        except asyncio.CancelledError:  # the caller cancelled: record the request, then let the cancel through
            run.abandon()
            raise
        except Exception as exc:
            run.fail(exc)
        else:
            run.send(value)
    return run.outcome


class _Streamed:
    """What the current streamed call has sent, for the bill of a caller who leaves midway: the
    driver's :class:`_StreamState` when it yields one first (text, tool-call arguments, other
    choices), else the text pieces the caller received."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.pieces: list[str] = []
        self.state: _StreamState | None = None

    def took(self, item: Any) -> bool:
        """Note ``item``; True when it is text for the caller."""
        if isinstance(item, _StreamState):
            self.state = item
            return False
        if isinstance(item, str):
            self.pieces.append(item)
            return True
        return False

    def text(self) -> str:
        return self.state.sent() if self.state is not None else "".join(self.pieces)

    def prompt(self) -> tuple[int, int, int] | None:
        """The prompt tokens the provider reported so far (see :meth:`_StreamState.reported_prompt`)."""
        return self.state.reported_prompt() if self.state is not None else None


def iter_stream(gen: Generator[Any, Any, Any], driver: LiteLLMDriver, response: StreamResponse,
                lock: ContextManager[Any] = nullcontext()) -> Iterator[Any]:
    """Drive the pipeline, yielding the answer calls' chunks; the outcome lands on ``response``."""
    run = PipelineRun(gen, lock)
    streamed = _Streamed(driver.clock())  # what the current call has sent
    sub: Generator[Any, None, Any] | None = None
    try:
        while not run.done:
            effect = run.effect
            if not (isinstance(effect, Call) and effect.stream):
                try:
                    run.send(driver.perform(effect))
                except Exception as exc:
                    run.fail(exc)
                continue
            streamed = _Streamed(driver.clock())  # the last call's text is billed with its result already:
            reset = response.reset(effect.deployment.name)  # a caller who leaves at the reset owes nothing more
            if reset is not None:
                yield reset
            sub = driver.stream_call(effect)
            shown = StreamRestorer(effect.restore)  # the caller's own values, as outcome.text has them
            streamed.started = driver.clock()
            while True:
                try:
                    piece = next(sub)
                except StopIteration as stop:
                    tail = response.show(shown.flush())
                    if tail:
                        yield tail
                    response.answer_streamed = bool(streamed.pieces) and getattr(stop.value, "ok", False)
                    run.send(stop.value)
                    break
                except Exception as exc:
                    run.fail(exc)
                    break
                if streamed.took(piece):
                    text = response.show(shown.feed(piece))
                    if text:
                        yield text
    except GeneratorExit:  # the caller stopped iterating: still one outcome, and the streamed tokens charged
        if sub is not None:
            sub.close()  # ends the provider's stream (and its connection) now, not at garbage collection
        response._done(run.abandon(streamed.text(), driver.clock() - streamed.started, streamed.prompt()))
        raise
    response._done(run.outcome)
    yield from response.whole_answer_chunk()


async def aiter_stream(gen: Generator[Any, Any, Any], driver: LiteLLMDriver, response: StreamResponse,
                       lock: ContextManager[Any] = nullcontext()) -> AsyncIterator[Any]:
    """Async twin of :func:`iter_stream`."""
    run = PipelineRun(gen, lock)
    streamed = _Streamed(driver.clock())
    sub: AsyncIterator[Any] | None = None
    try:
        while not run.done:
            effect = run.effect
            if not (isinstance(effect, Call) and effect.stream):
                try:
                    run.send(await driver.aperform(effect))
                except Exception as exc:
                    run.fail(exc)
                continue
            streamed = _Streamed(driver.clock())  # as in iter_stream: leaving at the reset bills nothing more
            reset = response.reset(effect.deployment.name)
            if reset is not None:
                yield reset
            result: Any = None
            shown = StreamRestorer(effect.restore)  # as in iter_stream
            streamed.started = driver.clock()
            sub = driver.astream_call(effect)
            try:
                async for item in sub:
                    if isinstance(item, str):
                        streamed.took(item)
                        text = response.show(shown.feed(item))
                        if text:
                            yield text
                    elif not streamed.took(item):
                        result = item
            except Exception as exc:
                run.fail(exc)
                continue
            tail = response.show(shown.flush())
            if tail:
                yield tail
            response.answer_streamed = bool(streamed.pieces) and getattr(result, "ok", False)
            run.send(result)
    except (GeneratorExit, asyncio.CancelledError):  # the caller closed the stream or cancelled its task
        if sub is not None:  # ends the provider's stream (and its connection) now, as iter_stream does
            await _aclose(sub)
        response._done(run.abandon(streamed.text(), driver.clock() - streamed.started, streamed.prompt()))
        raise
    response._done(run.outcome)
    for chunk in response.whole_answer_chunk():
        yield chunk
