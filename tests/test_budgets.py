from datetime import datetime, timezone

import pytest

from llmlab import BudgetExceeded, BudgetPolicy, ConfigError, MemoryBudgets
from llmlab.budgets import next_month_start


def test_reserve_then_settle_never_passes_the_cap():
    book = MemoryBudgets()
    r1 = book.try_reserve("t", 0.6, cap=1.0, now=0)
    assert r1 is not None
    assert book.try_reserve("t", 0.6, cap=1.0, now=0) is None        # 0.6 reserved + 0.6 > 1.0
    book.settle(r1, 0.1)                                              # actual was cheaper
    assert book.spent("t", 0) == pytest.approx(0.1) and book.reserved("t", 0) == 0
    assert book.try_reserve("t", 0.6, cap=1.0, now=0) is not None


def test_month_rollover_resets_spend():
    book = MemoryBudgets()
    jan = datetime(2026, 1, 31, 23, 0, tzinfo=timezone.utc).timestamp()
    r = book.try_reserve("t", 1.0, cap=1.0, now=jan)
    book.settle(r, 1.0)
    assert book.try_reserve("t", 0.5, cap=1.0, now=jan) is None
    assert next_month_start(jan) == datetime(2026, 2, 1, tzinfo=timezone.utc).timestamp()
    assert book.try_reserve("t", 0.5, cap=1.0, now=next_month_start(jan)) is not None


def test_policy_validation_names_the_field():
    with pytest.raises(ConfigError) as info:
        BudgetPolicy(caps={"acme": -1})
    assert info.value.field == "budget.caps['acme']"
    with pytest.raises(ConfigError) as info:
        BudgetPolicy(default_cap="ten")
    assert info.value.field == "budget.default_cap"
    with pytest.raises(ConfigError) as info:
        BudgetPolicy(on_exceed="ignore")
    assert "'reject'" in info.value.allowed
    with pytest.raises(ConfigError):
        BudgetPolicy(on_exceed="downgrade")  # needs downgrade_to


def test_gateway_rejects_with_spend_cap_and_reset_time(make_gateway, clock, driver):
    driver.default = "word " * 800  # 1,000 output tokens: $0.01 on gpt-4o
    gw = make_gateway(budget=BudgetPolicy(caps={"t": 0.05}), default_max_tokens=1000)
    out = gw.complete(gw.request("hello", tenant="t", params={"max_tokens": 1000}))
    assert out.ok  # worst case ~ $0.015 (claude, 1000 output tokens) fits
    spent = gw.budgets.spent("t", clock())
    assert 0 < spent < 0.05
    outcomes = [gw.complete(gw.request(f"question {i}", tenant="t", params={"max_tokens": 1000})) for i in range(10)]
    assert sum(o.ok for o in outcomes) == 3  # 4 × $0.01 settled + a $0.015 worst case would pass $0.05
    err = outcomes[-1].error
    assert isinstance(err, BudgetExceeded)
    assert err.cap_usd == 0.05 and err.spend_usd <= 0.05 and err.reset_at == next_month_start(clock())
    assert gw.budgets.spent("t", clock()) <= 0.05


def test_gateway_downgrades_to_a_cheaper_tier(make_gateway, clock):
    policy = BudgetPolicy(caps={"t": 0.002}, on_exceed="downgrade", downgrade_to="gpt-4o-mini")
    gw = make_gateway(budget=policy, fallbacks={"gpt-4o": ["claude"], "gpt-4o-mini": ["gpt-4o-mini"]})
    out = gw.complete(gw.request("hello", tenant="t", params={"max_tokens": 500}))
    assert out.ok and out.deployment == "gpt-4o-mini" and out.route_tier == "downgraded"
    assert "over budget" in out.route_reason


def test_cache_hits_still_served_when_tenant_is_at_cap(make_gateway):
    gw = make_gateway(budget=BudgetPolicy(caps={"t": 0.02}))
    gw.complete(gw.request("hello", tenant="t", params={"max_tokens": 500}))
    for i in range(20):
        gw.complete(gw.request(f"q{i}", tenant="t", params={"max_tokens": 500}))
    assert gw.complete(gw.request("hello", tenant="t", params={"max_tokens": 500})).cache.value == "exact_hit"


def _month(year: int, month: int) -> float:
    return datetime(year, month, 15, tzinfo=timezone.utc).timestamp()


def test_settled_holds_are_forgotten_so_tenants_leave_no_entry_behind():
    book = MemoryBudgets()
    for i in range(2_000):  # one request each from many tenants over two months
        r = book.try_reserve(f"t{i}", 0.01, cap=1.0, now=_month(2026, 1 + i % 2))
        book.settle(r, 0.005)
    assert book._reserved == {}
    assert book.spent("t0", _month(2026, 1)) == pytest.approx(0.005)


def test_keep_months_bounds_the_spend_history_and_never_touches_the_current_month():
    book = MemoryBudgets(keep_months=2)
    for month in range(1, 13):  # a year of 300 tenants
        for i in range(300):
            book.settle(book.try_reserve(f"t{i}", 0.02, cap=1.0, now=_month(2026, month)), 0.01)
    assert {m for _, m in book.spend_by_month()} == {"2026-11", "2026-12"}
    assert len(book._spent) == 600
    assert book.spent("t7", _month(2026, 12)) == pytest.approx(0.01)
    book.charge("t7", 0.5, now=_month(2027, 1))  # a charge opens a month too
    assert {m for _, m in book.spend_by_month()} == {"2026-12", "2027-01"}
    unbounded = MemoryBudgets()
    for month in (1, 6, 12):
        unbounded.charge("t", 1.0, now=_month(2026, month))
    assert unbounded.spend_by_tenant() == {"t": 3.0}  # the default keeps every month (the simulator's reports)
    for bad in (0, -1, 1.5, "3", True):
        with pytest.raises(ConfigError) as info:
            MemoryBudgets(keep_months=bad)
        assert info.value.field == "keep_months"


def test_a_hold_settled_after_its_month_was_dropped_does_not_bring_the_month_back():
    """With keep_months=1, a request held over the month's end and settled after it brought the
    dropped month back in spend_by_month holding that request's cost alone ($0.01 of $5.01)."""
    book = MemoryBudgets(keep_months=1)
    book.charge("t", 5.0, now=_month(2026, 11))
    late = book.try_reserve("t", 0.02, cap=10.0, now=_month(2026, 11))
    book.charge("t", 1.0, now=_month(2026, 12))  # December begins: November is dropped
    book.settle(late, 0.01)
    assert book.spend_by_month() == {("t", "2026-12"): 1.0}
    assert book.reserved("t", _month(2026, 11)) == 0.0  # the hold itself is released


def test_settling_a_reservation_twice_applies_it_once():
    """A caller that settles again after an error it could not place (as a retry does) counted
    the spend twice and released the hold twice, freeing another request's hold under the cap.
    Redis' tombstones already made the second settlement a no-op; memory now does the same."""
    book = MemoryBudgets()
    first = book.try_reserve("t", 0.4, cap=1.0, now=0)
    other = book.try_reserve("t", 0.4, cap=1.0, now=0)
    assert first is not None and other is not None
    book.settle(first, 0.3)
    book.settle(first, 0.3)
    assert book.spent("t", 0) == pytest.approx(0.3)
    assert book.reserved("t", 0) == pytest.approx(0.4)  # the other request's hold is still held
    assert book.try_reserve("t", 0.4, cap=1.0, now=0) is None  # 0.3 + 0.4 + 0.4 > 1.0
    book.settle(other, 0.1)
    assert book.spent("t", 0) == pytest.approx(0.4) and book.reserved("t", 0) == 0
