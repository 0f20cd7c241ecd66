"""What a compressed trace replay keeps on the trace's own clock.

A trace replayed with ``traffic.speedup`` S runs S times faster in virtual time, so that the
providers, queues and rate limits see S times the load.  Things that are a matter of the calendar,
not of load, must still follow the log's own time, or the replay answers another question than
"what would this configuration have done with our month":

* **cache lifetimes**: an entry lives ``gateway.cache.ttl_s`` seconds of the log's time, so its
  TTL on the compressed clock is ``ttl_s / S``.  On the compressed clock a question repeated
  every two hours with a one-hour TTL missed every time at S = 1 and hit 83 % of the time at
  S = 10: the hit rate, the cost and ``savings_pct`` moved with S alone.
* **budget months**: a monthly cap resets when the log's month does.  On the compressed clock
  a trace of March 31 and April 1 replayed at S = 10 never reached April, so every April
  request was refused against March's spent cap.

Outages, incidents and hourly costs are put in the trace's time elsewhere
(:func:`~llmlab.sim.outages.scenario_windows`, :func:`~llmlab.sim.run.run_once`); breaker
cooldowns stay on the compressed clock, as documented.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..budgets import MemoryBudgets, Reservation

if TYPE_CHECKING:
    from .scenario import Scenario


def with_trace_ttl(scenario: "Scenario", scale: float) -> "Scenario":
    """``scenario`` with its caches' TTL on the clock of a replay ``scale`` times faster."""
    if scale == 1.0:
        return scenario
    gateway = scenario.gateway
    cache = gateway.cache.model_copy(update={"ttl_s": gateway.cache.ttl_s / scale})
    return scenario.model_copy(update={"gateway": gateway.model_copy(update={"cache": cache})})


class TraceMonthBudgets(MemoryBudgets):
    """In-memory budgets whose months are the trace's: the compressed clock's ``now`` is read
    as the log's time ``epoch0 + (now − epoch0) × scale`` before its month is taken.

    ``epoch0`` is the epoch second of the trace's first request, where both clocks agree.
    """

    def __init__(self, epoch0: float, scale: float) -> None:
        super().__init__()
        self.epoch0 = float(epoch0)
        self.scale = float(scale)

    def trace_time(self, now: float) -> float:
        """The log's epoch second that the compressed clock's ``now`` stands for."""
        return self.epoch0 + (now - self.epoch0) * self.scale

    def try_reserve(self, tenant: str, amount: float, cap: float | None, now: float) -> Reservation | None:
        return super().try_reserve(tenant, amount, cap, self.trace_time(now))

    def charge(self, tenant: str, amount: float, now: float) -> None:
        super().charge(tenant, amount, self.trace_time(now))

    def spent(self, tenant: str, now: float) -> float:
        return super().spent(tenant, self.trace_time(now))

    def reserved(self, tenant: str, now: float) -> float:
        return super().reserved(tenant, self.trace_time(now))
