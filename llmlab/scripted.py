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

from .effects import Call, CallError, CallResult, Embed, EmbedResult, ErrorKind, Sleep, embedding_cost
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


@dataclass
class ScriptedDriver:
    """Answers each deployment from its script (a queue), else from ``default``.

    A reply may be text, a :class:`CallResult`, a :class:`CallError`, an :class:`ErrorKind`
    or a callable of the call.  ``latency_s`` advances the fake clock per call.
    """

    clock: FakeClock = field(default_factory=FakeClock)
    scripts: Mapping[str, Iterable[Reply]] = field(default_factory=dict)
    default: Reply = "ok: scripted answer that is long enough to accept"
    latency_s: float = 0.0
    embed_fn: Callable[[list[str]], Any] | None = None
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
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
        return reply

    def perform(self, effect: Any) -> Any:
        if isinstance(effect, Call):
            self.calls.append(effect)
            self.clock.advance(self.latency_s)
            return self._reply(effect)
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

    def stream_call(self, call: Call) -> Generator[str, None, CallResult | CallError]:  # same shape as LiteLLMDriver.stream_call
        result = self.perform(call)
        if isinstance(result, CallResult):
            step = max(1, math.ceil(len(result.text) / 4))
            for i in range(0, len(result.text), step):
                yield result.text[i:i + step]
        return result

    async def astream_call(self, call: Call) -> AsyncIterator[Any]:  # same shape as LiteLLMDriver.astream_call: the result comes last
        chunks = self.stream_call(call)
        while True:
            try:
                piece = next(chunks)
            except StopIteration as stop:
                yield stop.value
                return
            yield piece
