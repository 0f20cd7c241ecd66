"""Hedged calls: a second call raced against a first one that is slow to start answering.

A fallback chain moves on only once a call has failed or timed out, so a provider that is slow
but answering (a degraded region, a long queue) sets the tail of time to first token: with a
1.5 s first-token timeout, a user waits at least 1.5 s before the fallback is even asked.  A hedge
sends the same request to the next deployment of the chain once the first has not started
answering after ``after_s`` — set near the first deployment's usual P95 time to first token —
and takes whichever starts answering first (Dean and Barroso, "The Tail at Scale", CACM 2013).

What it costs: the call that lost is cancelled, and billed its prompt (a provider has read it by
then; conservative for budgets) and whatever it had streamed; the budget hold covers both calls
at their worst (two calls that start answering together are both billed in full) before the
first is sent, and the second goes out only to a deployment whose breaker is closed (when the
first goes out, and still when the hedge is due).  The live sync API sends no hedge: a call
blocked on a thread cannot be cancelled when the other wins.
Only a request's first answering call is hedged (not retries, a cascade's cheap stages or a
classifier's call): a hedge is a bet on the tail, not a retry policy.  The simulator shows what
it buys and costs before production (``gateway.hedge.after_s``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from . import _validate as v
from .effects import Call, CallError, CallResult, Deployment, ErrorKind

#: the longest wait before a hedge that is accepted: past it a timeout and fallback are the tool
MAX_AFTER_S = 600.0


@dataclass(frozen=True, slots=True)
class Hedge:
    """``Gateway(hedge=Hedge(after_s=0.8))``: race the next deployment of the chain against a
    request's first answering call when it has not started answering after ``after_s`` seconds —
    its first token when streamed.  A call that is not streamed starts answering only with its
    whole answer, which takes longer the longer the answer: ``unstreamed_after_s`` is its own
    wait (None: ``after_s``; ``math.inf``: such calls are never hedged)."""

    after_s: float
    unstreamed_after_s: float | None = None

    def __post_init__(self) -> None:
        v.number("hedge.after_s", self.after_s, lo=0.0, hi=MAX_AFTER_S, lo_open=True)
        if self.unstreamed_after_s is not None and self.unstreamed_after_s != math.inf:
            v.number("hedge.unstreamed_after_s", self.unstreamed_after_s, lo=0.0, hi=MAX_AFTER_S, lo_open=True)

    def wait_for(self, call: Call) -> float:
        """How long ``call`` may go without answering before its hedge is sent (inf: never)."""
        if call.stream or self.unstreamed_after_s is None:
            return self.after_s
        return self.unstreamed_after_s


def hedge_target(chain: Sequence[Deployment], start: int, is_closed: Callable[[str], bool],
                 min_window: int) -> Deployment | None:
    """The deployment a hedge of ``chain[start]`` goes to: the next one after it whose breaker is
    closed (a hedge does not spend a recovering deployment's half-open probe) and whose context
    window is above ``min_window`` (one the chain already found too small); None when there is none."""
    for dep in chain[start + 1:]:
        if dep.context_window > min_window and is_closed(dep.name):
            return dep
    return None


def answering_after(call: Call, result: CallResult | CallError) -> float:
    """Seconds from sending until ``call`` started answering — its first token when streamed, its
    whole answer otherwise — or until it failed: the moment a race is decided on."""
    if result.ok and call.stream and result.ttft_s is not None:
        return result.ttft_s
    return result.latency_s


def lost(winner: Deployment, part: CallResult) -> CallError:
    """The result of a call cancelled because ``winner`` started answering first, billed ``part``
    (its prompt — as the provider reported it, else counted — and whatever it had streamed)."""
    return CallError(ErrorKind.CANCELLED, f"{winner.name} started answering first (hedge)", part.latency_s,
                     billed=(part.prompt_tokens, part.completion_tokens, part.cached_tokens, part.cache_write_tokens))


def prompt_only(prompt_tokens: int, latency_s: float) -> CallResult:
    """The bill of a race loser that had streamed nothing: its prompt."""
    return CallResult("", prompt_tokens, 0, latency_s)
