"""Per-tenant token buckets for requests/min and tokens/min.

A bucket holds up to ``capacity`` units and refills continuously at ``capacity / 60`` per
second, so bursts up to the per-minute limit pass and a steady overload is shaped.  Both
buckets must admit a request; a request that does not fit is refused with the exact time until
it would (``retry_after_s``) and consumes nothing.  The clock is the caller's ``now``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from . import _validate as v


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Per-minute limits; ``None`` means unlimited."""

    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        v.positive("rate_limit.rpm", self.rpm, allow_none=True)
        v.positive("rate_limit.tpm", self.tpm, allow_none=True)


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: str  # "requests/min" or "tokens/min"
    retry_after_s: float


class RateLimiterBackend(Protocol):
    def acquire(self, tenant: str, plan: str, tokens: int, now: float) -> Refusal | None: ...


class _Bucket:
    __slots__ = ("capacity", "level", "updated")

    def __init__(self, capacity: float, now: float) -> None:
        self.capacity = capacity
        self.level = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
            self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` fits (0 if it fits now; inf if it never can)."""
        if amount <= self.level:
            return 0.0
        if amount > self.capacity:
            return float("inf")
        return (amount - self.level) * 60.0 / self.capacity


class RateLimiter:
    """In-memory token buckets keyed by tenant; limits chosen per tenant, else per plan."""

    def __init__(self, per_plan: Mapping[str, RateLimit] | None = None,
                 per_tenant: Mapping[str, RateLimit] | None = None,
                 default: RateLimit | None = None) -> None:
        self.per_plan = dict(per_plan or {})
        self.per_tenant = dict(per_tenant or {})
        self.default = default or RateLimit()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.refusals = 0

    def limit_for(self, tenant: str, plan: str) -> RateLimit:
        return self.per_tenant.get(tenant) or self.per_plan.get(plan) or self.default

    def _bucket(self, tenant: str, kind: str, capacity: float, now: float) -> _Bucket:
        bucket = self._buckets.get((tenant, kind))
        if bucket is None or bucket.capacity != capacity:
            bucket = self._buckets[(tenant, kind)] = _Bucket(capacity, now)
        bucket.refill(now)
        return bucket

    def acquire(self, tenant: str, plan: str, tokens: int, now: float) -> Refusal | None:
        limit = self.limit_for(tenant, plan)
        checks = []
        if limit.rpm is not None:
            checks.append(("requests/min", self._bucket(tenant, "rpm", limit.rpm, now), 1.0))
        if limit.tpm is not None:
            checks.append(("tokens/min", self._bucket(tenant, "tpm", limit.tpm, now), float(tokens)))
        for name, bucket, amount in checks:
            wait = bucket.wait_for(amount)
            if wait > 0.0:
                self.refusals += 1
                return Refusal(name, wait)
        for _, bucket, amount in checks:
            bucket.level -= amount
        return None
