"""Per-tenant token buckets for requests/min and tokens/min.

A bucket holds up to ``capacity`` units and refills continuously at ``capacity / 60`` per
second, so bursts up to the per-minute limit pass and a steady overload is shaped.  Both
buckets must admit a request; a request that does not fit is refused with the exact time until
it would (``retry_after_s``) and consumes nothing.  The clock is the caller's ``now``.

Tokens are taken at the request's worst case (a bound of its prompt tokens + ``max_tokens``) and the
difference is given back by :meth:`RateLimiter.settle` when the request ends: a cache hit uses
no provider tokens, a short answer few.  A request larger than the whole tokens/min limit can
never fit: its refusal has ``retry_after_s = inf`` (the gateway reports it as too large, with
no retry hint).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from . import _validate as v
from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Per-minute limits; ``None`` means unlimited.

    ``rpm`` is at least 1: a bucket holds up to ``rpm`` requests and each request takes one, so
    with fewer no request could ever pass (each was refused as "larger than the whole limit;
    lower max_tokens", in memory and in Redis alike).  ``tpm`` is positive here; the gateway also
    refuses one below its ``default_max_tokens``, for the same reason.
    """

    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        v.number("rate_limit.rpm", self.rpm, lo=1.0, allow_none=True)
        v.positive("rate_limit.tpm", self.tpm, allow_none=True)


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: str  # "requests/min" or "tokens/min"
    retry_after_s: float


#: a retry hint's margin: this many seconds, plus this many times ``abs(now)`` (two units in the
#: last place of a double); the Redis script is written with the same two numbers
RETRY_MARGIN_S = 1e-6
#: how far a ``now`` may be behind a bucket's last update and still be a thread that read the clock
#: before another took from the bucket (the refill, and so the wait, counts from that update).
#: Further behind, the clock was stepped back (NTP, a VM resumed from a snapshot): the bucket's time
#: moves back to ``now``, its level kept.  Counted from the update, a tenant at its limit was refused
#: for the whole step (an hour back: "retry in 3003 s", and nothing refilled meanwhile).  A minute:
#: what refills any bucket, so a step shorter than that costs at most the minute a limit is about.
CLOCK_STEP_S = 60.0
RETRY_MARGIN_ULPS = 4.5e-16


def retry_margin_s(now: float) -> float:
    """What a retry hint is rounded up by: a microsecond, plus two units in the last place of ``now``.

    The exact wait is not enough on a float clock: ``now + wait`` rounds to a multiple of ``now``'s
    last place (0.24 µs in epoch seconds), and a caller who waited exactly the hint was refused
    again, told to retry in 5e-08 s, about one time in five.  The Redis script adds the same."""
    return RETRY_MARGIN_S + abs(now) * RETRY_MARGIN_ULPS


def check_limits(field: str, limits: Mapping[str, RateLimit] | None) -> dict[str, RateLimit]:
    """A mapping of name → RateLimit, else a ConfigError naming the entry."""
    if limits is None:
        return {}
    if not isinstance(limits, Mapping):
        raise ConfigError(f"rate_limiter.{field}", limits, "a mapping of name → llmlab.RateLimit")
    for name, limit in limits.items():
        v.key_name(f"rate_limiter.{field}", name, "a plan name" if field == "per_plan" else "a tenant id")
        if not isinstance(limit, RateLimit):
            raise ConfigError(f"rate_limiter.{field}[{name!r}]", limit, "a llmlab.RateLimit(rpm=…, tpm=…)")
    return dict(limits)


def configured_limits(limiter: object) -> list[tuple[str, RateLimit]]:
    """Every limit a limiter (in memory or Redis) applies, named as it was configured:
    ``per_tenant['acme']``, ``per_plan['free']``, ``default``."""
    named = [(f"{kind}[{name!r}]", limit) for kind in ("per_tenant", "per_plan")
             for name, limit in getattr(limiter, kind, {}).items()]
    default = getattr(limiter, "default", None)
    return named + ([("default", default)] if isinstance(default, RateLimit) else [])


class RateLimiterBackend(Protocol):
    """What a gateway's ``rate_limiter=`` provides: :class:`RateLimiter` in memory,
    :class:`~llmlab.backends.redis_ratelimit.RedisRateLimiter` shared.  A ``settle(tenant, plan,
    reserved_tokens, used_tokens, now)`` method, when it has one, gives back what a request did not use."""

    def acquire(self, tenant: str, plan: str, tokens: int, now: float) -> Refusal | None: ...


class _Bucket:
    __slots__ = ("capacity", "level", "updated")

    def __init__(self, capacity: float, now: float) -> None:
        self.capacity = capacity
        self.level = capacity
        self.updated = now

    def full_at(self, now: float) -> bool:
        """Would the bucket be full at ``now``?  Then it is the same as a new one."""
        return self.level + max(0.0, now - self.updated) * self.capacity / 60.0 >= self.capacity

    def refill(self, now: float) -> None:
        if self.updated - now > CLOCK_STEP_S:  # the clock was stepped back: its time starts again from now
            self.updated = now
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
            self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until ``amount`` fits (0 if it fits now; inf if it never can), with
        :func:`retry_margin_s`.  The refill counts from ``updated``, which is later than ``now``
        when the caller's clock is behind the one that last took from the bucket."""
        if amount <= self.level:
            return 0.0
        if amount > self.capacity:
            return float("inf")
        return max(0.0, self.updated - now) + (amount - self.level) * 60.0 / self.capacity + retry_margin_s(now)


class RateLimiter:
    """In-memory token buckets keyed by tenant; limits chosen per tenant, else per plan.

    ``per_tenant`` and ``per_plan`` map a tenant id or a plan name to a :class:`RateLimit`;
    ``default`` applies to everyone else (unlimited when None).

    Memory stays bounded by the tenants of the last minute, not every tenant ever seen: a bucket
    left alone for a minute has refilled, and a full bucket is exactly what a new one would be,
    so full buckets are dropped whenever the table has doubled since the last sweep (at least
    :attr:`SWEEP_MIN` buckets; amortised O(1) per new bucket, nothing on the per-request path).
    """

    SWEEP_MIN = 1_024

    def __init__(self, per_plan: Mapping[str, RateLimit] | None = None,
                 per_tenant: Mapping[str, RateLimit] | None = None,
                 default: RateLimit | None = None) -> None:
        self.per_plan = check_limits("per_plan", per_plan)
        self.per_tenant = check_limits("per_tenant", per_tenant)
        self.default = default or RateLimit()
        if not isinstance(self.default, RateLimit):
            raise ConfigError("rate_limiter.default", default, "a llmlab.RateLimit")
        # keyed by capacity too: a tenant seen under two plans keeps one bucket per limit, so
        # interleaving its plans cannot refill a bucket by rebuilding it
        self._buckets: dict[tuple[str, str, float], _Bucket] = {}
        self._sweep_at = self.SWEEP_MIN
        self.refusals = 0

    def __repr__(self) -> str:
        parts = [f"{name}={getattr(self, name)!r}" for name in ("per_plan", "per_tenant") if getattr(self, name)]
        if self.default != RateLimit():
            parts.append(f"default={self.default!r}")
        return f"RateLimiter({', '.join(parts)})"

    def limit_for(self, tenant: str, plan: str) -> RateLimit:
        return self.per_tenant.get(tenant) or self.per_plan.get(plan) or self.default

    def _bucket(self, tenant: str, kind: str, capacity: float, now: float) -> _Bucket:
        bucket = self._buckets.get((tenant, kind, capacity))
        if bucket is None:
            bucket = self._buckets[(tenant, kind, capacity)] = _Bucket(capacity, now)
        bucket.refill(now)
        return bucket

    def _sweep(self, now: float) -> None:
        """Drop the buckets that are full by ``now`` (idle tenants): without it a service seeing
        new tenants, or a tenant under several plans, kept two buckets each for good.  Run before a
        request takes its buckets: run between them, it dropped the requests/min bucket just made
        (full) and the request was counted on a bucket no longer in the table."""
        for key in [k for k, b in self._buckets.items() if b.full_at(now)]:
            del self._buckets[key]
        self._sweep_at = max(self.SWEEP_MIN, 2 * len(self._buckets))

    def settle(self, tenant: str, plan: str, reserved_tokens: float, used_tokens: float, now: float) -> None:
        """Give back the tokens a request took but did not use (a cache hit gives back all of them),
        or take those it used beyond (its retries', a cascade's second call): the level may go
        below zero, and the tenant waits until it has refilled."""
        limit = self.limit_for(tenant, plan)
        if limit.tpm is None:
            return
        bucket = self._buckets.get((tenant, "tpm", limit.tpm))
        if bucket is None and used_tokens > reserved_tokens:  # swept meanwhile (full): the overuse still counts
            bucket = self._buckets[(tenant, "tpm", limit.tpm)] = _Bucket(limit.tpm, now)
        if bucket is not None:
            bucket.refill(now)
            bucket.level = min(bucket.capacity, bucket.level + reserved_tokens - used_tokens)

    def acquire(self, tenant: str, plan: str, tokens: int, now: float) -> Refusal | None:
        if len(self._buckets) >= self._sweep_at:
            self._sweep(now)
        limit = self.limit_for(tenant, plan)
        checks = []
        if limit.rpm is not None:
            checks.append(("requests/min", self._bucket(tenant, "rpm", limit.rpm, now), 1.0))
        if limit.tpm is not None:
            checks.append(("tokens/min", self._bucket(tenant, "tpm", limit.tpm, now), float(tokens)))
        # the longest wait, not the first bucket's: a request the requests/min bucket refused for
        # 20 s while the tokens/min one needed 24 (or could never fit) was told "retry in 20 s"
        refusal = None
        for name, bucket, amount in checks:
            wait = bucket.wait_for(amount, now)
            if wait > 0.0 and (refusal is None or wait > refusal.retry_after_s):
                refusal = Refusal(name, wait)
        if refusal is not None:
            self.refusals += 1
            return refusal
        for _, bucket, amount in checks:
            bucket.level -= amount
        return None
