"""Model-based (stateful) test of the budgets: hypothesis drives reserve / top-up / settle (below,
at or above the hold; at $0, a release) / charge / cap changes / time passing, month ends
included, against a reference written here: per (tenant, month) the spend and the holds, in
whole micro-dollars (exact), and the open requests' holds.

What :mod:`llmlab.budgets` promises, checked after every step: a hold is granted exactly when
``spent + reserved + amount ≤ cap``; a refused one changes nothing; a settlement moves its hold
to the spend at the actual cost and counts what went beyond the hold as ``overshoot_usd``;
a request's several holds (:class:`~llmlab.budgets.RequestHolds`) settle once, in order; caps
and spend are per UTC month; so the month's spend and holds never pass the highest cap a hold
was granted under by more than the overshoot and the charges (spend with no hold).  Every
backend ``make_backends`` returns runs the same steps and must agree with the reference and with
the others: in memory (with and without ``keep_months``), and on Redis
(``tests/test_redis_stateful.py``).
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from llmlab.errors import BudgetExceeded
from llmlab.budgets import BudgetPolicy, MemoryBudgets, RequestHolds, month_of, next_month_start

START = 1_700_000_000.0  # 2023-11-14, mid-month
PLANS = {"a": "pro", "b:c": "free", "d": "free", "e": "other"}  # "e" has no cap unless one is set
MICRO = 1e6

SETTINGS = settings(max_examples=60, stateful_step_count=40, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

micro = st.sampled_from([0, 1, 999, 1_000, 2_500, 5_000, 10_000, 33_333])
caps = st.sampled_from([None, 0, 1_000, 5_000, 10_000, 20_000, 100_000])


class BudgetMachine(RuleBasedStateMachine):
    """Each of ``make_backends()`` gets the same steps; ``close_backends`` runs at teardown."""

    make_backends = staticmethod(lambda: [MemoryBudgets(), MemoryBudgets(keep_months=1), MemoryBudgets(keep_months=2)])

    def __init__(self) -> None:
        super().__init__()
        self.backends = self.make_backends()
        self.now = START
        self.caps: dict[str, int | None] = {"a": 10_000}
        self.plan_caps: dict[str, int | None] = {"free": 5_000, "pro": 20_000}
        self.spent: dict[tuple[str, str], int] = {}
        self.reserved: dict[tuple[str, str], int] = {}
        self.allowance: dict[tuple[str, str], int] = {}  # overshoot + charges: spend no hold covered
        self.top_cap: dict[tuple[str, str], int] = {}  # the highest cap a hold was granted under
        self.overshoot = 0
        self.latest = month_of(START)  # the latest month a hold or charge was asked for
        # open requests: one RequestHolds per backend, the reference's [(tenant, month, micro-USD)], the cap
        self.open: list[tuple[list[RequestHolds], list[tuple[str, str, int]], int | None]] = []

    def teardown(self) -> None:
        for backend in self.backends:
            close = getattr(backend, "close", None)
            if close is not None:
                close()

    def cap(self, tenant: str) -> int | None:
        policy = BudgetPolicy(caps={t: c / MICRO for t, c in self.caps.items() if c is not None},
                              plan_caps={p: c / MICRO for p, c in self.plan_caps.items() if c is not None})
        cap = policy.cap_for(tenant, PLANS[tenant])
        return None if cap is None else round(cap * MICRO)

    def grants(self, tenant: str, amount: int, cap: int | None) -> bool:
        key = (tenant, month_of(self.now))
        self.latest = max(self.latest, key[1])  # asking for a hold is what starts a month
        ok = cap is None or self.spent.get(key, 0) + self.reserved.get(key, 0) + amount <= cap
        if ok:
            self.reserved[key] = self.reserved.get(key, 0) + amount
            self.top_cap[key] = max(self.top_cap.get(key, 0), math.inf if cap is None else cap)
        return ok

    # ------------------------------------------------------------------ steps
    @rule(seconds=st.sampled_from([0.0, 1.0, 3_600.0, 86_400.0 * 9]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(before=st.sampled_from([0.0, 0.5]))
    def month_ends(self, before: float) -> None:
        """To the next month's first instant, or half a second before it."""
        self.now = next_month_start(self.now) - before

    @rule(who=st.sampled_from(["a", "free", "pro"]), cap=caps)
    def change_cap(self, who: str, cap: int | None) -> None:
        (self.caps if who == "a" else self.plan_caps)[who] = cap

    @rule(tenant=st.sampled_from(sorted(PLANS)), amount=micro)
    def reserve(self, tenant: str, amount: int) -> None:
        cap = self.cap(tenant)
        got = [b.try_reserve(tenant, amount / MICRO, None if cap is None else cap / MICRO, self.now)
               for b in self.backends]
        want = self.grants(tenant, amount, cap)
        assert [r is not None for r in got] == [want] * len(got), (tenant, amount, cap, got)
        if not want:  # the refusal the gateway builds says "retry shortly" exactly when settling the holds at $0 frees room
            key = (tenant, month_of(self.now))
            frees = self.reserved.get(key, 0) > 0 and self.spent.get(key, 0) + amount <= cap
            for b in self.backends:
                refusal = BudgetExceeded(tenant, b.spent(tenant, self.now), cap / MICRO, next_month_start(self.now),
                                         amount / MICRO, reserved_usd=b.reserved(tenant, self.now))
                assert refusal.temporary == frees, (b, key, refusal)
        if want:
            self.open.append(([RequestHolds(b, r, None if cap is None else cap / MICRO)
                               for b, r in zip(self.backends, got)], [(tenant, month_of(self.now), amount)], cap))

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 99), extra=micro)
    def top_up(self, pick: int, extra: int) -> None:
        """A billed failure: the request's holds must now cover ``extra`` more (held + extra)."""
        holds, ref, cap = self.open[pick % len(self.open)]
        tenant = ref[0][0]
        got = [h.cover(h.held + extra / MICRO, self.now) for h in holds]
        want = extra == 0 or self.grants(tenant, extra, cap)  # the request's cap, as it was when it began
        assert got == [want] * len(got), (tenant, extra, got)
        if want and extra:
            ref.append((tenant, month_of(self.now), extra))

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 99), ratio=st.sampled_from([0.0, 0.3, 1.0, 1.7]))
    def settle(self, pick: int, ratio: float) -> None:
        """At $0 (a release), below, at or above what the request holds."""
        holds, ref, _ = self.open.pop(pick % len(self.open))
        actual = round(sum(amount for *_, amount in ref) * ratio)
        for h in holds:
            h.settle(actual / MICRO)
        left = actual
        for i, (tenant, month, amount) in enumerate(ref):  # each hold its share, the last the rest
            share = left if i == len(ref) - 1 else min(left, amount)
            left -= share
            key = (tenant, month)
            self.reserved[key] -= amount
            self.spent[key] = self.spent.get(key, 0) + share
            self.allowance[key] = self.allowance.get(key, 0) + max(0, share - amount)
            self.overshoot += max(0, share - amount)

    @rule(tenant=st.sampled_from(sorted(PLANS)), amount=micro)
    def charge(self, tenant: str, amount: int) -> None:
        for b in self.backends:
            b.charge(tenant, amount / MICRO, self.now)
        key = (tenant, month_of(self.now))
        self.latest = max(self.latest, key[1])
        self.spent[key] = self.spent.get(key, 0) + amount
        self.allowance[key] = self.allowance.get(key, 0) + amount

    # ------------------------------------------------------------------ invariants
    @invariant()
    def every_backend_counts_what_the_reference_counts(self) -> None:
        month = month_of(self.now)
        for tenant in PLANS:
            key = (tenant, month)
            for b in self.backends:
                assert b.spent(tenant, self.now) == pytest.approx(self.spent.get(key, 0) / MICRO, abs=1e-9), (b, key)
                assert b.reserved(tenant, self.now) == pytest.approx(self.reserved.get(key, 0) / MICRO, abs=1e-9), \
                    (b, key)
        for b in self.backends:
            assert b.overshoot_usd == pytest.approx(self.overshoot / MICRO, abs=1e-9), b

    @invariant()
    def memory_keeps_the_months_it_says(self) -> None:
        """``spend_by_month``: every month's whole spend, or with ``keep_months`` the last ones
        (counted back from the latest month a hold or a charge was asked for), none in part."""
        for b in self.backends:
            if not isinstance(b, MemoryBudgets):
                continue
            keep = math.inf if b.keep_months is None else b.keep_months
            want = {key: spent / MICRO for key, spent in self.spent.items() if _months(key[1], self.latest) < keep}
            assert b.spend_by_month() == pytest.approx(want, abs=1e-9), b

    @invariant()
    def spend_stays_within_the_cap_but_for_overshoot_and_charges(self) -> None:
        for key, top in self.top_cap.items():
            committed = self.spent.get(key, 0) + self.reserved.get(key, 0)
            assert committed <= top + self.allowance.get(key, 0), key


def _months(month: str, latest: str) -> int:
    """How many months ``month`` (``YYYY-MM``) is before ``latest``."""
    return (int(latest[:4]) - int(month[:4])) * 12 + int(latest[5:]) - int(month[5:])


def test_budgets_against_a_reference_model():
    run_state_machine_as_test(BudgetMachine, settings=SETTINGS)
