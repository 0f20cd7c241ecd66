"""Monthly per-tenant budget caps with reserve-then-settle accounting.

Existing gateways check spend *after* a call, so a burst of concurrent requests all pass the
check and push a tenant past its cap together.  Here a request reserves its worst-case cost
(prompt estimate + ``max_tokens`` on the most expensive deployment it may use) before any call
and settles the actual cost afterwards.  Check-and-reserve is one step with no yield in
between, so no interleaving of concurrent requests can overshoot a cap; the Redis backend does
the same step atomically in a Lua script for several gateway processes.  A failure the provider
billed (a cut stream) spends part of a hold without answering: the request tops its hold up before
the call that follows, or stops there (:class:`RequestHolds`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Protocol

from . import _validate as v
from ._fastinit import fast_frozen_init

POLICIES = ("reject", "downgrade")


_MONTH: list = [0.0, -1.0, ""]  # [start, end, label] of the month seen last: most calls fall inside it


def month_of(now: float) -> str:
    """The UTC month of ``now`` as ``YYYY-MM`` (memoised for the current month: it is on the hot path)."""
    start, end, label = _MONTH
    if start <= now < end:
        return label
    d = datetime.fromtimestamp(now, tz=timezone.utc)
    first = datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()
    _MONTH[:] = [first, next_month_start(now), d.strftime("%Y-%m")]
    return _MONTH[2]


def next_month_start(now: float) -> float:
    """Epoch seconds of the first instant of the next UTC month (when caps reset)."""
    d = datetime.fromtimestamp(now, tz=timezone.utc)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """Monthly caps in USD: per tenant (``caps``), else per plan (``plan_caps``), else
    ``default_cap`` (None = no cap).

    ``on_exceed="downgrade"`` retries the request on ``downgrade_to`` (a cheaper deployment)
    before refusing it.
    """

    caps: Mapping[str, float] | None = None
    plan_caps: Mapping[str, float] | None = None
    default_cap: float | None = None
    on_exceed: str = "reject"
    downgrade_to: str | None = None

    def __post_init__(self) -> None:
        from .errors import ConfigError
        for field, what, caps in (("caps", "a tenant id", self.caps), ("plan_caps", "a plan name", self.plan_caps)):
            if caps is not None and not isinstance(caps, Mapping):
                raise ConfigError(f"budget.{field}", caps, f"a mapping of {what} → monthly cap in USD, or None")
            for key, cap in (caps or {}).items():
                v.key_name(f"budget.{field}", key, what)
                v.non_negative(f"budget.{field}[{key!r}]", cap)
        v.non_negative("budget.default_cap", self.default_cap, allow_none=True)
        v.choice("budget.on_exceed", self.on_exceed, POLICIES)
        if self.on_exceed == "downgrade" and not self.downgrade_to:
            raise ConfigError("budget.downgrade_to", self.downgrade_to, "a deployment name when on_exceed='downgrade'")

    def cap_for(self, tenant: str, plan: str) -> float | None:
        if self.caps and tenant in self.caps:
            return self.caps[tenant]
        if self.plan_caps and plan in self.plan_caps:
            return self.plan_caps[plan]
        return self.default_cap


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Reservation:
    tenant: str
    month: str
    amount: float
    id: int


class BudgetBackend(Protocol):
    def try_reserve(self, tenant: str, amount: float, cap: float | None, now: float) -> Reservation | None: ...

    def settle(self, reservation: Reservation, actual: float) -> None: ...

    def charge(self, tenant: str, amount: float, now: float) -> None: ...

    def spent(self, tenant: str, now: float) -> float: ...


class MemoryBudgets:
    """In-process ledger of spend and open reservations per (tenant, month).

    Holds are forgotten once settled.  Spend is kept per (tenant, month) for
    :meth:`spend_by_month` and :meth:`spend_by_tenant` (the simulator's reports): one number per
    tenant and month, for good by default.  A gateway that stays up for months can bound it with
    ``keep_months``: when a new month starts, the spend of months before the last ``keep_months``
    (the current one included) is dropped; caps only ever read the current month.  Spend that
    arrives for a dropped month later (a request held across the month's end, settled after) is
    not recorded: it brought the month back holding that request's cost alone, which
    :meth:`spend_by_month` reported as the month's spend.

    A reservation is settled once: settling it again (a caller's retry after an error it could
    not place) changes nothing, as the Redis backend's tombstones make it there; before, the
    second settlement released the hold again and counted the spend twice.
    """

    def __init__(self, keep_months: int | None = None) -> None:
        if keep_months is not None:
            v.integer("keep_months", keep_months, lo=1)
        self.keep_months = keep_months
        self._spent: dict[tuple[str, str], float] = {}
        self._reserved: dict[tuple[str, str], float] = {}
        self._ids = itertools.count(1)
        self._open: set[int] = set()  # ids of the reservations not settled yet
        self._month = ""  # the latest month seen: spend of months too far before it is dropped
        self._oldest = ""  # the oldest month whose spend is kept ("" with keep_months=None: every one)
        self.overshoot_usd = 0.0  # actual cost above the reservation (should stay 0)

    def __repr__(self) -> str:
        """What it holds (``gw.budgets`` showed ``<… object at 0x…>``): tenants, spend, open holds."""
        # copies first: a repr asked for from another thread while requests settle must not see a
        # dict change size under its iteration
        spent, reserved = list(self._spent.items()), list(self._reserved.items())
        tenants = len({tenant for (tenant, _), _ in spent} | {tenant for (tenant, _), _ in reserved})
        keep = "" if self.keep_months is None else f", keep_months={self.keep_months}"
        return (f"MemoryBudgets(tenants={tenants}, spent_usd={sum(v for _, v in spent):.6f}, "
                f"reserved_usd={sum(v for _, v in reserved):.6f}{keep})")

    def _new_month(self, month: str) -> None:
        """``month`` is later than any seen: drop the spend of months ``keep_months`` or more before it."""
        self._month = month
        if self.keep_months is None:
            return
        year, mon = int(month[:4]), int(month[5:7]) - (self.keep_months - 1)
        while mon < 1:
            year, mon = year - 1, mon + 12
        oldest = self._oldest = f"{year:04d}-{mon:02d}"
        for key in [k for k in self._spent if k[1] < oldest]:
            del self._spent[key]

    def try_reserve(self, tenant: str, amount: float, cap: float | None, now: float) -> Reservation | None:
        key = (tenant, month_of(now))
        if key[1] > self._month:
            self._new_month(key[1])
        committed = self._spent.get(key, 0.0) + self._reserved.get(key, 0.0)
        if cap is not None and committed + amount > cap + 1e-12:
            return None
        self._reserved[key] = self._reserved.get(key, 0.0) + amount
        reservation = Reservation(tenant, key[1], amount, next(self._ids))
        self._open.add(reservation.id)
        return reservation

    def settle(self, reservation: Reservation, actual: float) -> None:
        if reservation.id not in self._open:  # settled already (or never this ledger's): applied once
            return
        self._open.discard(reservation.id)
        key = (reservation.tenant, reservation.month)
        left = self._reserved.get(key, 0.0) - reservation.amount
        if left > 1e-12:
            self._reserved[key] = left
        else:  # every hold settled: forgotten (no float dust, and no entry per tenant and month for good)
            self._reserved.pop(key, None)
        self._add_spend(key, actual)
        if actual > reservation.amount + 1e-12:
            self.overshoot_usd += actual - reservation.amount

    def charge(self, tenant: str, amount: float, now: float) -> None:
        """Record spend that had no reservation (for example an embedding)."""
        key = (tenant, month_of(now))
        if key[1] > self._month:
            self._new_month(key[1])
        self._add_spend(key, amount)

    def _add_spend(self, key: tuple[str, str], amount: float) -> None:
        if key[1] >= self._oldest:  # else a month keep_months dropped: it stays dropped
            self._spent[key] = self._spent.get(key, 0.0) + amount

    def spent(self, tenant: str, now: float) -> float:
        return self._spent.get((tenant, month_of(now)), 0.0)

    def reserved(self, tenant: str, now: float) -> float:
        return self._reserved.get((tenant, month_of(now)), 0.0)

    def spend_by_month(self) -> dict[tuple[str, str], float]:
        """Spend per (tenant, month): what each monthly cap is compared with."""
        return dict(self._spent)

    def spend_by_tenant(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (tenant, _), amount in self._spent.items():
            out[tenant] = out.get(tenant, 0.0) + amount
        return out


class RequestHolds:
    """One request's reservations: the first (every stage's worst case, taken before any call)
    and the top-ups taken after failures the provider billed.

    A reservation covers one answer per stage, but a stream the provider cut, or an answer it
    billed and that could not be used (a malformed body whose usage it reported), is
    charged too: a retry or a fallback after it could bill past the hold, and so past the cap.
    Before each further call the pipeline asks :meth:`cover` for what was billed so far plus the
    worst case still to come; the difference is reserved with the backend's own ``try_reserve``
    (the same atomic check-and-reserve as the first hold, in memory or in Redis), and refused
    when the cap cannot take it.  Every reservation is settled once, by :meth:`settle`.
    """

    __slots__ = ("budgets", "tenant", "cap", "reservations", "held", "unavailable")

    def __init__(self, budgets: BudgetBackend, reservation: Reservation, cap: float | None) -> None:
        self.budgets = budgets
        self.tenant = reservation.tenant
        self.cap = cap
        self.reservations = [reservation]
        self.held = reservation.amount
        #: the last refusal was the backend's being unreachable (Redis failing closed), not the cap
        self.unavailable = False

    def cover(self, total: float, now: float) -> bool:
        """Make the holds at least ``total``; False (nothing reserved) when the budget refuses."""
        short = total - self.held
        if short <= 1e-12:  # float dust: the backends' cap checks allow as much
            return True
        reservation = self.budgets.try_reserve(self.tenant, short, self.cap, now)
        if reservation is None:
            self.unavailable = bool(getattr(self.budgets, "last_refusal_unavailable", False))
            return False
        self.reservations.append(reservation)
        self.held += reservation.amount
        return True

    def settle(self, actual: float) -> None:
        """Settle every hold once with the request's ``actual`` cost: each takes its share up to
        its amount, in order, and the last one what is left beyond them all (counted as overshoot
        by the backend, as a single hold settled above its amount is).  A backend that raises
        does not keep the other holds open: the first error is raised after all were tried."""
        reservations, self.reservations = self.reservations, []
        if len(reservations) == 1:  # no top-up (nearly always): as a single hold is settled
            self.budgets.settle(reservations[0], actual)
            return
        failure: BaseException | None = None
        left = actual
        for i, reservation in enumerate(reservations):
            share = left if i == len(reservations) - 1 else min(left, reservation.amount)
            left -= share
            try:
                self.budgets.settle(reservation, share)
            except Exception as exc:  # noqa: BLE001 - re-raised below, once the others are settled
                failure = failure or exc
        if failure is not None:
            raise failure
