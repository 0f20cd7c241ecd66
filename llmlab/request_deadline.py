"""One deadline over a whole request: its calls, retries, waits, fallbacks and cascade stages.

Each call has its deployment's ``timeout_s`` and each wait is bounded, but a request's chain may
add them up: (``max_retries`` + 1) × ``timeout_s`` plus the backoffs, per deployment.  A request
with a deadline (``Gateway(request_timeout_s=…)``, or ``request_timeout_s=`` on one request) is
held to it by the sans-I/O pipeline itself, so the live drivers and the simulator behave alike:

* the clock starts when the pipeline takes the request (``Outcome.started_at``): the input
  guardrails, an embedding, a wait for an identical request in flight (coalescing, bounded by the
  deadline), a wait for admission (bounded by the admission's own ``max_wait_s``, not cut) and a
  classifier's call all count;
* each call's timeout is the smaller of its deployment's ``timeout_s`` and the time left
  (:attr:`llmlab.effects.Call.timeout_s`) — for a streamed call, as ``timeout_s`` is, the wait
  for its first token: once the answer streams it is not cut;
* a backoff or ``Retry-After`` wait that would end past the deadline is not started (the chain
  moves on to its next deployment, which needs no wait), and no call — a retry, a fallback, a
  cascade stage, a hedge, a classification — starts once less than :data:`MIN_CALL_S` is left;
* a request the deadline ends still gets the last-resort cached answer (a local lookup), else the
  usual :class:`~llmlab.errors.AllProvidersFailed`, whose message and the ledger's reason say
  the request's deadline ran out;
* a call cut by the deadline before its deployment's own ``timeout_s`` is no verdict on that
  deployment's health: its breaker does not count it (:func:`llmlab.fallback.judge`).
"""
from __future__ import annotations

from typing import Any

from .errors import LLMLabError
from .provider_errors import MAX_WAIT_S

__all__ = ["MIN_CALL_S", "call_time_left", "check_request_timeout", "ran_out"]

#: a call with less time than this left is not sent: it could not answer (and in virtual time a
#: call cut at the deadline ends a rounding error before it, which must not start another call)
MIN_CALL_S = 0.001

_ALLOWED = f"a number of seconds in (0, {MAX_WAIT_S:g}], or None"


def check_request_timeout(field: str, value: Any, error: type[LLMLabError]) -> float | None:
    """``value`` as a deadline in seconds (None: none), else ``error`` (ConfigError for the
    gateway's default, InvalidRequest for one request's) naming ``field`` and the range."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_WAIT_S:
        raise error(field, value, _ALLOWED)  # NaN fails the comparison too
    return float(value)


def call_time_left(deadline: float, now: float) -> float | None:
    """What is left of a request's ``deadline`` at ``now`` for one more call, or None when that is
    less than :data:`MIN_CALL_S` and no call (a retry, a fallback, a classification, a flight
    taken over) may start: the one rule the chain and the pipeline hold every call to."""
    left = deadline - now
    return left if left >= MIN_CALL_S else None


def ran_out(limit_s: float) -> str:
    """What the ledger's reason and the error's message say of a request its deadline ended."""
    return f"the request's deadline ({limit_s:g} s) ran out"
