"""Hedged calls raced in virtual time (:mod:`llmlab.hedging`), for :class:`~llmlab.sim.driver.SimDriver`.

Each call of a race is a SimPy process of its own against its simulated provider.  The first
goes out at once; if it has not started answering after ``after_s`` — its first token when
streamed, its whole answer otherwise — the second goes out too.  The first to start answering
wins; the other is interrupted then, gives back its provider slot or queue place
(:meth:`~llmlab.sim.providers.SimProvider.cancel`) and is billed its prompt.  A call that fails
leaves the race to the other.  The same semantics as the live driver's (:mod:`llmlab.live_race`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generator

from ..effects import CallError, CallResult, Race, RaceResult
from ..hedging import lost, prompt_only
from .providers import Hold

if TYPE_CHECKING:
    from ..effects import Call
    from .providers import SimProvider


class _Contender:
    """One call of a race, served in a process of its own."""

    __slots__ = ("call", "provider", "hold", "process", "started")

    def __init__(self, env: Any, provider: "SimProvider", call: "Call", key: int) -> None:
        self.call = call
        self.provider = provider
        self.hold = Hold(env.event() if call.stream else None)
        self.started = env.now
        self.process = env.process(self._serve(key))

    def _serve(self, key: int) -> Generator[Any, Any, CallResult | CallError | None]:
        from simpy import Interrupt

        try:
            return (yield from self.provider.serve(self.call, key, self.hold))
        except Interrupt:  # the other call won
            self.provider.cancel(self.hold)
            return None

    @property
    def answering(self) -> bool:
        """Started answering: its first token came (streamed), or it ended with an answer."""
        first = self.hold.first
        if first is not None and first.triggered:
            return True
        return self.process.triggered and self.process.value.ok

    @property
    def out(self) -> bool:
        """Ended with a failure: the race is the other's."""
        return self.process.triggered and not self.process.value.ok

    def events(self) -> list[Any]:
        return [self.process] if self.hold.first is None else [self.process, self.hold.first]


def run_race(env: Any, race: Race, providers: tuple["SimProvider", "SimProvider"], key_of: Callable[["Call"], int]
             ) -> Generator[Any, Any, RaceResult]:
    """Perform ``race`` (see the module's docstring); ``key_of(call)`` is a call's random-draw
    key, asked for the second call only when it is sent (a hedge never sent takes no draw)."""
    contenders = [_Contender(env, providers[0], race.first, key_of(race.first))]
    yield env.any_of([*contenders[0].events(), env.timeout(race.after_s)])
    if not (contenders[0].answering or contenders[0].out) and race.second_due():
        contenders.append(_Contender(env, providers[1], race.second, key_of(race.second)))
        while not any(c.answering for c in contenders) and not all(c.out for c in contenders):
            yield env.any_of([e for c in contenders if not c.process.triggered for e in c.events()])
    winner = next((c for c in contenders if c.answering or len(contenders) == 1), None)
    results: list[CallResult | CallError | None] = [None, None]
    for k, c in enumerate(contenders):
        if c is winner:
            continue
        if c.out:
            results[k] = c.process.value
            continue
        if c.process.triggered:  # answered in the same moment: billed in full, not served
            results[k] = lost(winner.call.deployment, c.process.value)
        else:
            c.process.interrupt("hedge lost")
            results[k] = lost(winner.call.deployment, prompt_only(c.provider.prompt_tokens(c.call), env.now - c.started))
    if winner is not None:
        results[contenders.index(winner)] = yield winner.process  # a stream goes on to its end
    return RaceResult(results[0], results[1])

