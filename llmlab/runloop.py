"""The drive loops: step a pipeline generator for a sync, async or streaming caller.

The pipeline is sans-I/O (it yields effects); these loops perform each effect with a driver and
send the result back, whatever the driver (litellm's, the scripted one).  They also own what
only the caller's side can know: a caller who leaves (a closed stream, a cancelled task) is
recorded and billed through :meth:`PipelineRun.abandon`, and a streamed answer's chunks are
shown with the caller's own values (:class:`~llmlab.placeholders.StreamRestorer`).
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import (TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, ContextManager, Generator, Iterator,
                    Protocol, TypeVar, runtime_checkable)

from .asyncwait import wait_out
from .effects import Admit, Call, CallError, CallResult, ErrorKind, JoinFlight, Race, RaceDecided, RaceResult
from .errors import ClientDisconnected
from .fallback import streamed_part
from .live import _aclose, _StreamState, reported_part
from .placeholders import StreamRestorer
from .provider_errors import redact_secrets
from .stream import StreamResponse
from .stream_guard import StreamGuard

if TYPE_CHECKING:
    from .admission import Ticket

log = logging.getLogger("llmlab.live")
T = TypeVar("T")


@runtime_checkable
class Driver(Protocol):
    """What performs the pipeline's effects for a :class:`~llmlab.gateway.Gateway` (its ``driver=``):
    :class:`~llmlab.live.LiteLLMDriver` live, :class:`~llmlab.scripted.ScriptedDriver` offline.

    ``perform`` / ``aperform`` take a ``Call``, ``Sleep`` or ``Embed`` and return its result (a
    ``CallResult`` or ``CallError`` for a call, never raising for a provider's failure);
    ``stream_call`` yields a streamed call's text chunks and returns its result, ``astream_call``
    yields them with the result last; ``clock`` times the streams.  The gateway's hint was
    ``LiteLLMDriver``, so a type checker refused the scripted driver the docs pass it.
    """

    @property
    def clock(self) -> Callable[[], float]: ...

    def perform(self, effect: Any) -> Any: ...

    async def aperform(self, effect: Any) -> Any: ...

    def stream_call(self, call: Call) -> Generator[Any, None, CallResult | CallError]: ...

    def astream_call(self, call: Call) -> AsyncIterator[Any]: ...


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

    def __init__(self, gen: Generator[Any, Any, Any], lock: ContextManager[Any] = nullcontext(), *,
                 start: bool = True) -> None:
        self.gen = gen
        self.lock = lock
        self.effect: Any = None
        self.outcome: Any = None
        self.done = False
        if start:
            self.start()

    def start(self) -> None:
        """Run the pipeline up to its first effect (``start=False`` leaves it to the caller)."""
        self._step(self.gen.__next__)

    def _step(self, advance: Callable[[], Any]) -> None:
        with self.lock:
            try:
                self.effect = advance()
            except StopIteration as stop:
                self.done, self.outcome = True, stop.value

    def send(self, value: Any) -> None:
        self._step(lambda: self.gen.send(value))

    def first_token(self, hook: Callable[[float], None], ttft_s: float) -> None:
        """Run a call's first-token hook (``Call.on_first_token``) under the lock: it changes a
        breaker's state, as the pipeline's steps do."""
        with self.lock:
            hook(ttft_s)

    def fail(self, exc: Exception) -> None:
        effect = self.effect
        if isinstance(effect, Call):
            self.send(driver_failure(effect, exc))
        elif isinstance(effect, Race):  # as the first call's failure, the hedge not sent
            self.send(RaceResult(driver_failure(effect.first, exc)))
        else:
            self._step(lambda: self.gen.throw(exc))

    def abandon(self, streamed: str = "", latency_s: float = 0.0,
                prompt_tokens: tuple[int, int, int] | None = None, call: Call | None = None,
                decided: RaceDecided | None = None, whole: CallResult | None = None) -> Any:
        """The caller left (closed the stream, cancelled the task): finish the pipeline with
        :class:`~llmlab.errors.ClientDisconnected` so the request still reaches the ledger, its
        budget reservation settles and a half-open probe is released.  ``streamed`` is what the
        provider sent of the current call (the text the caller received, and tool-call arguments
        it did not): its tokens are charged, with ``prompt_tokens`` (prompt, cache reads, cache
        writes) when the provider reported them (else the prompt counted locally).  ``call`` is
        the call they came from when the effect is a race (the one that won), else its first;
        ``decided``, the race's other call once the race was decided (its bill counts too), and
        ``whole`` the winner's answer when it had come in full (billed as the provider reported)."""
        if self.done:
            return self.outcome
        effect, partial = self.effect, None
        if call is None and isinstance(effect, Race):  # the winner, once decided (a driver without stream states)
            call = (effect.first, effect.second)[decided.winner] if decided is not None else effect.first
        elif call is None:
            call = effect if isinstance(effect, Call) else None
        if whole is not None:
            partial = whole
        elif call is not None and (streamed or prompt_tokens):  # the prompt is billed once read
            partial = reported_part(streamed_part(call, streamed, latency_s), prompt_tokens)
        error = ClientDisconnected(partial=partial, deployment=call.deployment if call is not None else None)
        if isinstance(effect, Race):
            error.race = decided
        try:
            self._step(lambda: self.gen.throw(error))
        except ClientDisconnected:  # a pipeline that does not handle it: nothing to record
            self.done = True
        if not self.done:  # the pipeline asked for another effect: nobody is left to perform it
            with self.lock:
                self.gen.close()
            self.done = True
        return self.outcome


def _perform_now(perform: Callable[[Any], Any], effect: Any) -> Any:
    """``perform(effect)``, with the run loops' own effects answered here, never by a driver: a
    synchronous request is admitted at once (its caller's threads bound it; :func:`_admitting` is
    the async rule), and waits for an identical request's flight on its thread (:mod:`llmlab.coalescing`)."""
    if isinstance(effect, Admit):
        return None
    if isinstance(effect, JoinFlight):
        return effect.flight.wait(effect.wait_s)
    return perform(effect)


def drive(gen: Generator[Any, Any, Any], perform: Callable[[Any], Any],
          lock: ContextManager[Any] = nullcontext()) -> Any:
    """Run a pipeline generator to completion, performing each effect synchronously (a
    synchronous request is admitted at once: its caller's threads bound it).

    A KeyboardInterrupt (or SystemExit) while an effect is performed — Ctrl-C during a slow call —
    is the caller leaving, as a cancel is for :func:`adrive`: the request is recorded as
    ``ClientDisconnected`` and its holds and flight released now.  Left to the garbage collector,
    they stayed for as long as the traceback lived (IPython keeps the last one), and every
    identical request meanwhile waited ``max_wait_s`` on the dead flight (:mod:`llmlab.coalescing`)."""
    run = PipelineRun(gen, lock)
    while not run.done:
        try:
            value = _perform_now(perform, run.effect)
        except Exception as exc:
            run.fail(exc)
        except BaseException:
            run.abandon()
            raise
        else:
            run.send(value)
    return run.outcome


async def _on_the_loop(fn: Callable[..., T], *args: Any) -> T:
    """A pipeline step run where the caller is: on the event loop, with no await inside it."""
    return fn(*args)


class StepThreads:
    """Runs an async request's pipeline steps on worker threads, so that blocking I/O inside a
    stage — the Redis backends' round trips, ≈ 0.7 ms a request, or a Redis stalled up to its
    socket timeout — waits on a thread while the event loop goes on with other requests' streams.

    A step cannot be interrupted once running: a cancel that arrives meanwhile lets it finish
    (the request's state stays whole), then goes through, and the request is recorded as
    ``ClientDisconnected`` as on the loop.  Steps still take the pipeline's step lock, so they
    run one at a time, except while one waits for Redis (its link lets the lock go: see
    :func:`llmlab.steplock.outside_step_lock`): up to ``workers`` requests' round trips overlap.
    The pool also lets user code called from a step (a guard, a ledger sink) serve another
    request through the same gateway.
    """

    def __init__(self, workers: int = 8) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="llmlab-step")
        return self._pool

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        step = asyncio.get_running_loop().run_in_executor(self._executor(), contextvars.copy_context().run, fn,
                                                          *args)
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            await wait_out(step)  # a second cancel does not end the wait either; the cancel is what the caller gets
            raise


def _admitting(aperform: Callable[[Any], Awaitable[Any]], ticket: Ticket | None) -> Callable[[Any], Awaitable[Any]]:
    """``aperform`` with the run loops' own effects answered here, never by a driver: ADMIT by the
    request's ticket (:mod:`llmlab.admission`), or at once when the gateway has no admission; a
    wait for an identical request's flight on the event loop (:mod:`llmlab.coalescing`)."""
    async def perform(effect: Any) -> Any:
        if isinstance(effect, Admit):
            return None if ticket is None else await ticket.enter()
        if isinstance(effect, JoinFlight):
            return await effect.flight.await_landing(effect.wait_s)
        return await aperform(effect)
    return perform


async def _perform(run: PipelineRun, aperform: Callable[[Any], Awaitable[Any]],
                   step: Callable[..., Awaitable[Any]]) -> None:
    """Await the run's effect and step the pipeline with its result, or with its failure (a
    cancel is not a failure: it goes through to the drive loop)."""
    try:
        value = await aperform(run.effect)
    except Exception as exc:
        await step(run.fail, exc)
    else:
        await step(run.send, value)


async def adrive(gen: Generator[Any, Any, Any], aperform: Callable[[Any], Awaitable[Any]],
                 lock: ContextManager[Any] = nullcontext(), steps: StepThreads | None = None,
                 ticket: Ticket | None = None) -> Any:
    """Run a pipeline generator to completion, awaiting each effect (same failure rules as drive);
    with ``steps``, the pipeline's own steps run on its threads; with ``ticket``, its admission
    effect waits for a place (:mod:`llmlab.admission`), given back when the request is over."""
    step: Callable[..., Awaitable[Any]] = _on_the_loop if steps is None else steps
    aperform = _admitting(aperform, ticket)
    run = PipelineRun(gen, lock, start=False)
    try:
        await step(run.start)
        while not run.done:
            await _perform(run, aperform, step)
    except asyncio.CancelledError as exc:  # the caller cancelled: record the request, then let the cancel through
        await step(functools.partial(run.abandon, **_decided_race(run.effect, exc)))
        raise
    finally:
        if ticket is not None:
            ticket.leave()
    return run.outcome


def _decided_race(effect: Any, exc: BaseException) -> dict[str, Any]:
    """What :meth:`PipelineRun.abandon` bills of a race the caller's cancel came out of once it
    was decided (``raced``, :func:`~llmlab.live_race.arace`): the winner's whole answer, and the
    loser; nothing more for any other cancel."""
    raced = getattr(exc, "raced", None)
    won = raced.winner if isinstance(raced, RaceResult) and raced.second is not None else None
    if won is None or not isinstance(effect, Race):
        return {}
    results = (raced.first, raced.second)
    return {"call": (effect.first, effect.second)[won], "whole": results[won],
            "decided": RaceDecided(won, results[1 - won])}


class _Streamed:
    """What the current streamed call has sent, for the bill of a caller who leaves midway: the
    driver's :class:`_StreamState` when it yields one first (text, tool-call arguments, other
    choices), else the text pieces the caller received."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.pieces: list[str] = []
        self.state: _StreamState | None = None
        self.decided: RaceDecided | None = None  # a race's loser, once decided (before the winner's text)
        self.answered = False  # its first token came (see first_token)

    def took(self, item: Any) -> bool:
        """Note ``item``; True when it is text for the caller."""
        if isinstance(item, _StreamState):
            self.state = item
            return False
        if isinstance(item, RaceDecided):
            self.decided = item
            return False
        if isinstance(item, str):
            self.pieces.append(item)
            return True
        return False

    def text(self) -> str:
        return self.state.sent() if self.state is not None else "".join(self.pieces)

    def first_token(self, effect: Call | Race, item: Any) -> Callable[[float], None] | None:
        """The hook to call now that ``item`` is the stream's first token — text, or the driver's
        state once it answers (a tool call's token, thinking) — when its call carries one
        (``Call.on_first_token``: a half-open probe, judged then, see
        :meth:`llmlab.fallback.CircuitBreaker.first_token`); None for any other item."""
        if self.answered or not ((isinstance(item, str) and item)
                                 or (isinstance(item, _StreamState) and item.answering())):
            return None
        self.answered = True
        if self.state is not None:  # the call the text comes from (a race's winner), as the driver says
            return self.state.call.on_first_token
        if isinstance(effect, Race):
            return (effect.second if self.decided is not None and self.decided.winner == 1 else effect.first).on_first_token
        return effect.on_first_token

    def prompt(self) -> tuple[int, int, int] | None:
        """The prompt tokens the provider reported so far (see :meth:`_StreamState.reported_prompt`)."""
        return self.state.reported_prompt() if self.state is not None else None

    def call(self) -> Call | None:
        """The call the text came from, when the driver said (a race's winner); else the effect's."""
        return self.state.call if self.state is not None else None


#: the streams not yet done or closed: their pipeline run → the provider stream being read (None
#: between calls).  A stream its caller left unclosed in a reference cycle is closed by the garbage
#: collector, which finalises the objects of a cycle in no set order: the pipeline's generator
#: (made first) was closed before the stream's, with GeneratorExit, so the request left no ledger
#: record and its rate-limit take was never settled (its budget hold was: spend without a record);
#: and the provider stream's generator, closed on the collecting thread, closed its HTTP response
#: there.  Held from here, neither is garbage: only the stream's own generator is finalised.
_OPEN_STREAMS: dict[PipelineRun, Any] = {}


class _Collecting(threading.local):
    """Whether this thread is running a garbage collection (set by :func:`_note_collection`)."""

    active = False


_COLLECTING = _Collecting()


def _note_collection(phase: str, info: dict) -> None:
    _COLLECTING.active = phase == "start"


class _Closer:
    """Finishes, on a thread of its own, the sync streams the garbage collector closes.

    A collection runs on whichever thread allocates when it is due — inside httpcore's connection
    pool, holding the pool's lock (not re-entrant), or inside another request's pipeline step.
    Closing a left stream there closed its HTTP response, which takes that lock: the thread hung
    for good.  And recording the request there ran its pipeline nested inside another request's
    step.  The collector's thread only queues the work (``SimpleQueue.put`` is safe from a
    finaliser); this thread, started with the first sync stream, does it as a caller would."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:  # the collection hook too: importing llmlab changes nothing in gc
                    gc.callbacks.append(_note_collection)
                    self._thread = threading.Thread(target=self._work, name="llmlab-stream-closer", daemon=True)
                    self._thread.start()

    def put(self, job: Callable[[], Any]) -> None:
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # a failing close must not stop the closing of later streams
                log.exception("llmlab could not finish a stream the garbage collector closed")

    def wait(self, timeout: float | None = None) -> bool:
        """Whether every stream collected so far has been finished within ``timeout`` seconds."""
        if self._thread is None:
            return True
        done = threading.Event()
        self.put(done.set)
        return done.wait(timeout)


_CLOSER = _Closer()


def wait_for_collected_streams(timeout: float | None = None) -> bool:
    """Wait until the sync streams the garbage collector has closed so far are recorded (their
    requests in the ledger, their holds settled); False if ``timeout`` passed first."""
    return _CLOSER.wait(timeout)


def _leave(sub: Generator[Any, None, Any] | None, run: PipelineRun, response: StreamResponse, text: str,
           latency_s: float, prompt: tuple[int, int, int] | None, call: Call | None,
           decided: RaceDecided | None) -> None:
    """A caller left a sync stream: close the provider's stream (and its connection) now, not at
    garbage collection, and record the request with the streamed tokens charged."""
    if sub is not None:
        sub.close()
    response._done(run.abandon(text, latency_s, prompt, call, decided))


def _view(call: Call, response: StreamResponse) -> StreamRestorer | StreamGuard:
    """What the caller is shown of ``call``'s chunks: restored (``unmask_answers``), and with
    output guards held back until the guards have seen them (:mod:`llmlab.stream_guard`); the
    response then checks the text shown against the outcome's (``StreamResponse.guarded``)."""
    if call.guard is None:
        return StreamRestorer(call.restore)
    response.guarded = True
    return StreamGuard(call.guard, call.restore)


def iter_stream(gen: Generator[Any, Any, Any], driver: Driver, response: StreamResponse,
                lock: ContextManager[Any] = nullcontext()) -> Iterator[Any]:
    """Drive the pipeline, yielding the answer calls' chunks; the outcome lands on ``response``."""
    run = PipelineRun(gen, lock)
    streamed = _Streamed(driver.clock())  # what the current call has sent
    sub: Generator[Any, None, Any] | None = None
    _OPEN_STREAMS[run] = None  # see _OPEN_STREAMS: the pipeline outlives this generator's garbage
    _CLOSER.start()
    try:
        while not run.done:
            effect = run.effect
            if not (isinstance(effect, (Call, Race)) and effect.stream):
                try:
                    run.send(_perform_now(driver.perform, effect))
                except Exception as exc:
                    run.fail(exc)
                continue
            streamed = _Streamed(driver.clock())  # the last call's text is billed with its result already:
            reset = response.reset(effect.deployment.name)  # a caller who leaves at the reset owes nothing more
            if reset is not None:
                yield reset
            sub = _OPEN_STREAMS[run] = driver.stream_call(effect)
            shown = _view(effect, response)  # through the output guards, with the caller's own values
            streamed.started = driver.clock()
            while True:
                try:
                    piece = next(sub)
                except StopIteration as stop:
                    tail = response.show(shown.flush())
                    if tail:
                        yield tail
                    response.answer_streamed = bool(streamed.pieces) and getattr(stop.value, "ok", False) \
                        and not getattr(shown, "stopped", False)
                    run.send(stop.value)
                    break
                except Exception as exc:
                    run.fail(exc)
                    break
                hook = streamed.first_token(effect, piece)
                if hook is not None:
                    run.first_token(hook, driver.clock() - streamed.started)
                if streamed.took(piece):
                    text = response.show(shown.feed(piece))
                    if text:
                        yield text
    except (GeneratorExit, KeyboardInterrupt, SystemExit):  # the caller stopped iterating (or hit Ctrl-C
        # mid-stream: left to the collector, the request stayed open as long as the traceback, as in drive):
        # still one outcome, and the streamed tokens charged
        left = (sub, run, response, streamed.text(), driver.clock() - streamed.started, streamed.prompt(),
                streamed.call(), streamed.decided)
        if _COLLECTING.active:  # left unclosed in a cycle, collected on whatever thread: see _Closer
            _CLOSER.put(lambda: _leave(*left))
        else:
            _leave(*left)
        raise
    finally:
        _OPEN_STREAMS.pop(run, None)
    response._done(run.outcome)
    yield from response.whole_answer_chunk()


async def aiter_stream(gen: Generator[Any, Any, Any], driver: Driver, response: StreamResponse,
                       lock: ContextManager[Any] = nullcontext(), steps: StepThreads | None = None,
                       ticket: Ticket | None = None) -> AsyncIterator[Any]:
    """Async twin of :func:`iter_stream` (``steps`` and ``ticket`` as for :func:`adrive`)."""
    step: Callable[..., Awaitable[Any]] = _on_the_loop if steps is None else steps
    aperform = _admitting(driver.aperform, ticket)
    run = PipelineRun(gen, lock, start=False)
    streamed = _Streamed(driver.clock())
    sub: AsyncIterator[Any] | None = None
    _OPEN_STREAMS[run] = None  # as in iter_stream (a collected stream is closed by the loop's hook, on the loop)
    try:
        await step(run.start)
        while not run.done:
            effect = run.effect
            if not (isinstance(effect, (Call, Race)) and effect.stream):
                await _perform(run, aperform, step)
                continue
            streamed = _Streamed(driver.clock())  # as in iter_stream: leaving at the reset bills nothing more
            reset = response.reset(effect.deployment.name)
            if reset is not None:
                yield reset
            result: Any = None
            shown = _view(effect, response)  # as in iter_stream
            streamed.started = driver.clock()
            sub = _OPEN_STREAMS[run] = driver.astream_call(effect)
            try:
                async for item in sub:
                    hook = streamed.first_token(effect, item)
                    if hook is not None:
                        await step(run.first_token, hook, driver.clock() - streamed.started)
                    if isinstance(item, str):
                        streamed.took(item)
                        text = response.show(shown.feed(item))
                        if text:
                            yield text
                    elif not streamed.took(item) and not isinstance(item, RaceDecided):
                        result = item
            except Exception as exc:
                streamed = _Streamed(driver.clock())  # the call is over: a cancel during the step bills it no more
                await step(run.fail, exc)
                continue
            tail = response.show(shown.flush())
            if tail:
                yield tail
            response.answer_streamed = bool(streamed.pieces) and getattr(result, "ok", False) \
                and not getattr(shown, "stopped", False)
            streamed = _Streamed(driver.clock())  # as above: its bill is in ``result``
            await step(run.send, result)
    except (GeneratorExit, asyncio.CancelledError):  # the caller closed the stream or cancelled its task
        if sub is not None:  # ends the provider's stream (and its connection) now, as iter_stream does; a
            # second cancel meanwhile must not skip the record below (the close is seen through, then
            # the request recorded, then the cancel goes on)
            await wait_out(asyncio.ensure_future(_aclose(sub)))
        response._done(await step(run.abandon, streamed.text(), driver.clock() - streamed.started,
                                  streamed.prompt(), streamed.call(), streamed.decided))
        raise
    finally:
        _OPEN_STREAMS.pop(run, None)
        if ticket is not None:
            ticket.leave()
    response._done(run.outcome)
    for chunk in response.whole_answer_chunk():
        yield chunk
