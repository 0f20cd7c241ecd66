"""An in-process driver with scripted provider behaviour and a fake clock.

Used by the unit tests, the overhead benchmark and the teaching notebooks: it performs the
pipeline's effects instantly (or advancing a fake clock), so retries, backoff and circuit
breakers can be exercised without real providers and without real waiting.
"""
from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Callable, Generator, Iterable, Mapping

from .effects import (Call, CallError, CallResult, Embed, EmbedResult, ErrorKind, Race, RaceDecided, RaceResult, Sleep,
                      embedding_cost)
from .hedging import answering_after, lost, prompt_only
from .tokens import estimate_message_tokens, estimate_tokens


class FakeClock:
    """A clock that only moves when told: ``clock()`` reads it, ``sleep(s)`` advances it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


Reply = CallResult | CallError | str | ErrorKind | Callable[[Call], Any]


def error(kind: ErrorKind, retry_after_s: float | None = None, message: str = "scripted failure") -> CallError:
    return CallError(kind, message, retry_after_s=retry_after_s)


def _prompt_of(call: Call, reply: CallResult | CallError) -> int:
    """The prompt a cancelled race loser is billed: its scripted reply's, else estimated."""
    return reply.prompt_tokens if reply.ok else estimate_message_tokens(call.messages)


@dataclass
class ScriptedDriver:
    """Answers each deployment from its script (a queue), else from ``default``.

    A reply may be text, a :class:`CallResult`, a :class:`CallError`, an :class:`ErrorKind`
    or a callable of the call.  ``latency_s`` advances the fake clock per call.  A reply slower
    than the call's timeout (``Call.timeout_s``: its first token when streamed, else its whole
    answer) is a timeout at that time, as the live and simulated drivers cut it.

    A hedged call (:class:`~llmlab.effects.Race`) is decided on the replies' own times: the
    first's ``ttft_s`` when streamed, else its ``latency_s``; the hedge's reply is taken from
    its deployment's script only when the first has not answered within ``after_s``.
    """

    races = True  # performs Race effects (llmlab.hedging)

    clock: FakeClock = field(default_factory=FakeClock)
    scripts: Mapping[str, Iterable[Reply]] = field(default_factory=dict)
    default: Reply = "ok: scripted answer that is long enough to accept"
    latency_s: float = 0.0
    embed_fn: Callable[[list[str]], Any] | None = None
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
        self._cut: CallError | None = None  # the last reply cut at its call's timeout
        for name, replies in self.scripts.items():
            self._queues[name].extend(replies)

    def script(self, deployment: str, *replies: Reply) -> None:
        self._queues[deployment].extend(replies)

    def _reply(self, call: Call) -> CallResult | CallError:
        queue = self._queues.get(call.deployment.name)
        reply = queue.popleft() if queue else self.default
        if callable(reply) and not isinstance(reply, (CallResult, CallError, ErrorKind)):
            reply = reply(call)
        if isinstance(reply, ErrorKind):
            reply = error(reply)
        if isinstance(reply, CallError) and reply.latency_s == 0.0 and self.latency_s:
            reply = replace(reply, latency_s=self.latency_s)  # a failed call took the clock's time too
        if isinstance(reply, str):
            reply = CallResult(reply, estimate_message_tokens(call.messages),
                               min(estimate_tokens(reply), int(call.params.get("max_tokens") or 1 << 30)),
                               self.latency_s, self.latency_s)
        limit = call.timeout_s
        if answering_after(call, reply) > limit:  # as a live or simulated call is cut: at its timeout
            reply = CallError(ErrorKind.TIMEOUT, f"{call.deployment.name}: no response within {limit:g} s",
                              latency_s=limit)
            self._cut = reply
        return reply

    def race(self, race: Race) -> RaceResult:
        """Perform a hedged call on the fake clock (see the class's docstring)."""
        first_call, second_call, after = race.first, race.second, race.after_s
        self.calls.append(first_call)
        first = self._reply(first_call)
        t1 = answering_after(first_call, first)
        if t1 <= after or not race.second_due():  # answered, or failed, before the hedge was due: no hedge
            self.clock.advance(first.latency_s)
            return RaceResult(first)
        self.calls.append(second_call)
        second = self._reply(second_call)
        t2 = after + answering_after(second_call, second)
        if first.ok and (not second.ok or t1 <= t2):
            if second.ok or t2 > t1:  # still going when the first started answering: cancelled then
                second = lost(first_call.deployment, prompt_only(_prompt_of(second_call, second), t1 - after))
        elif second.ok and (first.ok or t1 > t2):
            first = lost(second_call.deployment, prompt_only(_prompt_of(first_call, first), t2))
        # (else both failed, each on its own)
        self.clock.advance(max(first.latency_s, after + second.latency_s))  # the race ends with its last call
        return RaceResult(first, second)

    def perform(self, effect: Any) -> Any:
        if isinstance(effect, Race):
            return self.race(effect)
        if isinstance(effect, Call):
            self.calls.append(effect)
            self.clock.advance(self.latency_s)
            reply = self._reply(effect)
            if reply is self._cut:  # the call took its timeout, not latency_s
                self.clock.advance(reply.latency_s - self.latency_s)
            return reply
        if isinstance(effect, Sleep):
            self.clock.sleep(effect.seconds)
            return None
        if isinstance(effect, Embed):
            texts = list(effect.texts)
            vectors = self.embed_fn(texts) if self.embed_fn else effect.embedder.embed(texts)
            return EmbedResult(vectors, embedding_cost(effect.embedder, texts), 0.0)
        raise TypeError(f"unknown effect {effect!r}")

    async def aperform(self, effect: Any) -> Any:
        return self.perform(effect)

    def stream_call(self, call: Call | Race) -> Generator[str | RaceDecided, None, Any]:  # same shape as LiteLLMDriver.stream_call
        result = self.perform(call)
        answer = result
        if isinstance(result, RaceResult):  # the winner's chunks, after the race's decision (as live)
            won = result.winner or 0  # the first's failure when neither answered
            answer = result.second if won else result.first
            if result.second is not None and answer.ok:
                yield RaceDecided(won, result.first if won else result.second)
        if isinstance(answer, CallResult):
            step = max(1, math.ceil(len(answer.text) / 4))
            for i in range(0, len(answer.text), step):
                yield answer.text[i:i + step]
        return result

    async def astream_call(self, call: Call | Race) -> AsyncIterator[Any]:  # same shape as LiteLLMDriver.astream_call: the result comes last
        chunks = self.stream_call(call)
        while True:
            try:
                piece = next(chunks)
            except StopIteration as stop:
                yield stop.value
                return
            yield piece
