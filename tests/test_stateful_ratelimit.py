"""Model-based (stateful) test of the rate limiter: hypothesis drives acquire / settle / time
passing against an exact token-bucket reference written here (Fractions, a few dict operations).

What the module docstring of :mod:`llmlab.ratelimit` promises, checked after every step:
a bucket of ``capacity`` refills at ``capacity / 60`` per second; both buckets must admit; a
refusal consumes nothing and says how long until the request would fit (``retry_after_s``:
waiting that long then admits it); a request larger than the whole tokens/min limit is refused
with ``inf``; in any window of ``w`` seconds a tenant is admitted at most ``rpm · (1 + w / 60)``
requests.  The Redis limiter runs the same machine next to the in-memory one
(``tests/test_redis_stateful.py``): the two must decide every step alike.
"""
from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from llmlab.ratelimit import RateLimit, RateLimiter

START = 1_700_000_000.0  # epoch seconds (2023): the float clock a live gateway passes, behind Redis' own
PER_PLAN = {"free": RateLimit(rpm=3, tpm=300), "paid": RateLimit(rpm=7)}
PER_TENANT = {"vip": RateLimit(tpm=500)}
DEFAULT = RateLimit(rpm=2, tpm=120)
WHO = [("a", "free"), ("a", "paid"), ("vip", "free"), ("b", "other"), ("b", "free")]
EPS = Fraction(1, 10**6)  # the reference's exact levels vs the limiter's floats: closer than this is a tie

SETTINGS = settings(max_examples=60, stateful_step_count=40, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def memory_limiter() -> RateLimiter:
    limiter = RateLimiter(PER_PLAN, PER_TENANT, DEFAULT)
    limiter.SWEEP_MIN = limiter._sweep_at = 2  # sweep full buckets often: a swept bucket must act as a new one
    return limiter


class RateLimiterMachine(RuleBasedStateMachine):
    """Every limiter ``make_limiters`` returns gets the same steps and must agree with the reference."""

    make_limiters = staticmethod(lambda: [memory_limiter()])

    def __init__(self) -> None:
        super().__init__()
        self.limiters = self.make_limiters()
        self.now = START
        self.buckets: dict[tuple[str, str, float], tuple[Fraction, Fraction]] = {}  # → (level, updated)
        self.admitted: dict[tuple[str, float], list[float]] = {}  # (tenant, rpm) → admission times
        self.open: list[tuple[str, str, int]] = []  # admitted requests not yet settled

    # ------------------------------------------------------------------ the reference
    def level(self, tenant: str, kind: str, cap: float) -> Fraction:
        level, updated = self.buckets.get((tenant, kind, cap), (Fraction(cap), Fraction(self.now)))
        now = Fraction(self.now)
        return min(Fraction(cap), level + max(Fraction(0), now - updated) * Fraction(cap) / 60)

    def set_level(self, tenant: str, kind: str, cap: float, level: Fraction) -> None:
        self.buckets[(tenant, kind, cap)] = (level, Fraction(self.now))

    def needs(self, tenant: str, plan: str, tokens: int) -> list[tuple[str, float, Fraction, Fraction]]:
        limit = self.limiters[0].limit_for(tenant, plan)
        out = []
        if limit.rpm is not None:
            out.append(("rpm", limit.rpm, Fraction(1), self.level(tenant, "rpm", limit.rpm)))
        if limit.tpm is not None:
            out.append(("tpm", limit.tpm, Fraction(tokens), self.level(tenant, "tpm", limit.tpm)))
        return out

    def wait(self, cap: float, amount: Fraction, level: Fraction) -> Fraction | float:
        if amount > cap:
            return math.inf
        return max(Fraction(0), (amount - level) * 60 / Fraction(cap))

    # ------------------------------------------------------------------ steps
    @rule(ms=st.integers(0, 90_000))
    def time_passes(self, ms: int) -> None:
        self.now += ms / 1000

    @rule(who=st.sampled_from(WHO), tokens=st.sampled_from([1, 40, 119, 120, 121, 299, 300, 450, 501]),
          retry=st.booleans())
    def acquire(self, who: tuple[str, str], tokens: int, retry: bool) -> None:
        tenant, plan = who
        needs = self.needs(tenant, plan, tokens)
        got = [limiter.acquire(tenant, plan, tokens, self.now) for limiter in self.limiters]
        assert all((g is None) == (got[0] is None) for g in got), f"the limiters disagree: {got}"
        for g in got[1:]:
            assert g is None or (g.limit == got[0].limit and g.retry_after_s == _approx(got[0].retry_after_s)), got
        waits = [self.wait(cap, amount, level) for _, cap, amount, level in needs]
        longest = max(waits, default=Fraction(0))
        if got[0] is None:
            assert longest <= EPS, f"admitted, but the reference says it fits in {float(longest)} s"
            self.take(tenant, plan, needs)
            return
        refusal = got[0]
        assert longest > -EPS, "refused although it fits"
        # the reference's levels are untouched: a refusal consumes nothing
        if math.isinf(longest):
            assert math.isinf(refusal.retry_after_s), f"too large for tokens/min, yet told to retry: {refusal}"
            return
        assert refusal.retry_after_s == _approx(float(longest)), (refusal, float(longest))
        if retry:  # waiting exactly what it was told admits it
            self.now += refusal.retry_after_s
            again = [limiter.acquire(tenant, plan, tokens, self.now) for limiter in self.limiters]
            assert again == [None] * len(again), f"waited retry_after_s={refusal.retry_after_s!r}, refused again: {again}"
            self.take(tenant, plan, self.needs(tenant, plan, tokens))

    def take(self, tenant: str, plan: str, needs: list[tuple[str, float, Fraction, Fraction]]) -> None:
        for kind, cap, amount, level in needs:
            self.set_level(tenant, kind, cap, level - amount)
            if kind == "rpm":
                self.admitted.setdefault((tenant, cap), []).append(self.now)
        tokens = next((int(amount) for kind, _, amount, _ in needs if kind == "tpm"), 0)
        self.open.append((tenant, plan, tokens))

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 10**6), used=st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0]))
    def settle(self, pick: int, used: float) -> None:
        """Give back what the request did not use, or take what it used beyond."""
        tenant, plan, reserved = self.open.pop(pick % len(self.open))
        used_tokens = int(reserved * used)
        for limiter in self.limiters:
            limiter.settle(tenant, plan, reserved, used_tokens, self.now)
        limit = self.limiters[0].limit_for(tenant, plan)
        if limit.tpm is not None:
            level = self.level(tenant, "tpm", limit.tpm)
            self.set_level(tenant, "tpm", limit.tpm, min(Fraction(limit.tpm), level + reserved - used_tokens))

    # ------------------------------------------------------------------ invariants
    @invariant()
    def requests_in_any_window_stay_within_rpm_and_its_refill(self) -> None:
        for (tenant, rpm), times in self.admitted.items():
            last = times[-1]
            for i, first in enumerate(times):
                allowed = rpm * (1 + (last - first) / 60) + 1e-6
                assert len(times) - i <= allowed, (tenant, rpm, times[i:])


def _approx(x: float):
    import pytest
    return pytest.approx(x, rel=1e-9, abs=1e-5)


def test_rate_limiter_against_a_token_bucket_reference():
    run_state_machine_as_test(RateLimiterMachine, settings=SETTINGS)
