"""Token buckets in Redis: the rpm/tpm limits of :class:`llmlab.ratelimit.RateLimiter`, shared.

Same semantics and the same :class:`~llmlab.ratelimit.Refusal`: a bucket holds up to
``capacity`` units and refills at ``capacity / 60`` per second of the caller's ``now``; both
buckets must admit a request; a refused request consumes nothing and learns how long to wait
(the longer of the two buckets' waits, rounded up as :func:`~llmlab.ratelimit.retry_margin_s` says).
One hash per tenant (``{prefix}:ratelimit:{tenant}``, the same name on a Redis Cluster: the
scripts touch that one key, so they need no hash tag) holds its buckets — one per limit, so a
tenant seen under two plans cannot refill a bucket by switching — and one Lua script
refills, checks and takes from them atomically, so every gateway sharing the Redis draws
from the same buckets.  An idle bucket is full after a minute, so the key expires after two
(``idle_expiry_s``); a bucket a request's settlement left in debt (tokens used beyond what it
took: retries, a cascade) keeps its key longer by as much as its refill takes beyond a minute,
as the in-memory limiter keeps such a bucket until it is full.

Time is the caller's ``now``, except that it never runs ahead of Redis' own clock by more than
:data:`AHEAD_S`: a replica whose clock ran minutes ahead stamped the buckets with its time, and
every other replica then saw no refill until its clock caught up — for minutes, while each
refusal said "retry in 1 s".  Redis' clock is the one every replica shares; a clock behind it
(a test's fake clock too) is used as it is, since it never stops the others' refills.

When Redis is unreachable (``on_error``): ``"open"`` (default) admits the request — a
limiter outage should not become a customer outage; ``"closed"`` refuses it with a
``Refusal`` whose ``retry_after_s`` is the reconnect interval.
"""
from __future__ import annotations

from typing import Mapping

from .. import _validate as v
from ..ratelimit import RETRY_MARGIN_S, RETRY_MARGIN_ULPS, RateLimit, Refusal, check_limits
from .redis_link import MAX_TTL_S, KeyedScript, RedisLink, RedisUnavailable, key_part

FAIL_MODES = ("open", "closed")
LIMIT_NAMES = {1: "requests/min", 2: "tokens/min"}
UNAVAILABLE = "rate limiter unavailable"
#: how far ahead of Redis' clock a caller's ``now`` may run before it counts as Redis' clock plus
#: this (seconds): NTP keeps hosts within milliseconds, a wrong clock is off by minutes
AHEAD_S = 1.0

# the caller's now (ARGV[@N@]), but at most AHEAD_S past Redis' own clock (see the module docstring)
_NOW = """
local clock = redis.call('TIME')
local now = math.min(tonumber(ARGV[@N@]), tonumber(clock[1]) + tonumber(clock[2]) / 1000000 + AHEAD)
""".replace("AHEAD", repr(AHEAD_S))

# PEXPIRE first: a write that cannot grow memory lets the script's later writes through when
# the cache has filled a noeviction Redis (see redis_budgets); it is set again at the end, to
# outlive a bucket in debt's refill by as much as a full one's (idle expiry − 60 s), never shortened.
_ACQUIRE = _NOW.replace("@N@", "1") + """
local k = KEYS[1]
local ttl = math.max(tonumber(ARGV[5]), redis.call('PTTL', k))
redis.call('PEXPIRE', k, ttl)
local checks = {}
if ARGV[2] ~= '' then checks[#checks + 1] = {'rpm@' .. ARGV[2], tonumber(ARGV[2]), 1.0, 1} end
if ARGV[3] ~= '' then checks[#checks + 1] = {'tpm@' .. ARGV[3], tonumber(ARGV[3]), tonumber(ARGV[4]), 2} end
for _, c in ipairs(checks) do
  local f = redis.call('HMGET', k, c[1] .. ':l', c[1] .. ':u', c[1] .. ':c')
  local level, updated, stored = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
  if level == nil or updated == nil or stored ~= c[2] then level = c[2]; updated = now end
  if now > updated then
    level = math.min(c[2], level + (now - updated) * c[2] / 60.0)
    updated = now
  end
  c[5], c[6] = level, updated
end
-- the longest wait (as the in-memory limiter: see llmlab.ratelimit), from the caller's now, rounded
-- up by retry_margin_s so that waiting exactly that long on a float clock is enough
local refused, longest = nil, 0
for _, c in ipairs(checks) do
  if c[3] > c[5] then
    local wait = math.huge
    if c[3] <= c[2] then wait = math.max(0, c[6] - now) + (c[3] - c[5]) * 60.0 / c[2] + (MARGIN_S + math.abs(now) * MARGIN_ULPS) end
    if refused == nil or wait > longest then refused, longest = c[4], wait end
  end
end
if refused then refused = {refused, longest == math.huge and 'inf' or string.format('%.17g', longest)} end
for _, c in ipairs(checks) do
  if refused == nil then c[5] = c[5] - c[3] end
  redis.call('HSET', k, c[1] .. ':l', string.format('%.17g', c[5]), c[1] .. ':u', string.format('%.17g', c[6]),
             c[1] .. ':c', string.format('%.17g', c[2]))
  ttl = math.max(ttl, math.ceil((c[2] - c[5]) * 60000 / c[2]) + tonumber(ARGV[5]) - 60000)
end
redis.call('PEXPIRE', k, ttl)
if refused then return refused end
return {0, ''}
""".replace("MARGIN_S", repr(RETRY_MARGIN_S)).replace("MARGIN_ULPS", repr(RETRY_MARGIN_ULPS))


# settle a request's tpm bucket as the in-memory one does: refilled to ARGV[4], given back what the
# request took but did not use (never above its capacity) or charged what it used beyond (its
# retries' and cascade stages' tokens); a missing bucket is full: it is made only for a charge
_REFUND = _NOW.replace("@N@", "4") + """
local k, cap = KEYS[1], tonumber(ARGV[1])
local name = 'tpm@' .. ARGV[1]
local f = redis.call('HMGET', k, name .. ':l', name .. ':u', name .. ':c')
local level, updated, stored = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if level == nil or updated == nil or stored ~= cap then
  if tonumber(ARGV[3]) <= tonumber(ARGV[2]) then return 0 end
  level = cap; updated = now
end
local ttl = math.max(tonumber(ARGV[5]), redis.call('PTTL', k))
redis.call('PEXPIRE', k, ttl)
if now > updated then
  level = math.min(cap, level + (now - updated) * cap / 60.0)
  updated = now
end
level = math.min(cap, level + tonumber(ARGV[2]) - tonumber(ARGV[3]))
redis.call('HSET', k, name .. ':l', string.format('%.17g', level), name .. ':u', string.format('%.17g', updated),
           name .. ':c', string.format('%.17g', cap))
redis.call('PEXPIRE', k, math.max(ttl, math.ceil((cap - level) * 60000 / cap) + tonumber(ARGV[5]) - 60000))
return 1
"""


def _num(x: float) -> str:
    return repr(float(x))


class RedisRateLimiter:
    """Implements ``RateLimiterBackend`` on Redis; limits per tenant, else per plan, else ``default``."""

    #: its calls wait on the network: a gateway using it runs async requests' steps on threads
    blocking_io = True

    def __init__(self, link: RedisLink, per_plan: Mapping[str, RateLimit] | None = None,
                 per_tenant: Mapping[str, RateLimit] | None = None, default: RateLimit | None = None, *,
                 prefix: str = "llmlab", on_error: str = "open", idle_expiry_s: float = 120.0) -> None:
        self.link = link
        self.prefix = prefix
        self.per_plan = check_limits("per_plan", per_plan)
        self.per_tenant = check_limits("per_tenant", per_tenant)
        self.default = default or RateLimit()
        if not isinstance(self.default, RateLimit):
            from ..errors import ConfigError
            raise ConfigError("rate_limiter.default", default, "a llmlab.RateLimit")
        self.on_error = v.choice("rate_limit_on_error", on_error, FAIL_MODES)
        self._expire_ms = int(v.number("rate_limit_idle_expiry_s", idle_expiry_s, lo=0.0, lo_open=True,
                                       hi=MAX_TTL_S) * 1000)
        self._script = KeyedScript(link.client, _ACQUIRE)
        self._refund = KeyedScript(link.client, _REFUND)
        self.refusals = 0
        self.unavailable = 0

    def limit_for(self, tenant: str, plan: str) -> RateLimit:
        return self.per_tenant.get(tenant) or self.per_plan.get(plan) or self.default

    def key(self, tenant: str) -> str:
        return f"{self.prefix}:ratelimit:{key_part(tenant)}"

    def acquire(self, tenant: str, plan: str, tokens: int, now: float) -> Refusal | None:
        limit = self.limit_for(tenant, plan)
        if limit.rpm is None and limit.tpm is None:
            return None
        args = [_num(now), "" if limit.rpm is None else _num(limit.rpm), "" if limit.tpm is None else _num(limit.tpm),
                _num(tokens), self._expire_ms]
        key = self.key(tenant)
        try:
            kind, wait = self.link.call("rate limit", lambda r: self._script(keys=[key], args=args, client=r), key=key)
        except RedisUnavailable as exc:
            self.unavailable += 1
            if self.on_error == "open":
                self.link.logs.warning("rl-open", "llmlab: rate limits fail open: Redis unavailable (%s)", exc.reason)
                return None
            self.refusals += 1
            self.link.logs.warning("rl-closed", "llmlab: rate limits fail closed: Redis unavailable (%s)", exc.reason)
            return Refusal(UNAVAILABLE, self.link.retry_interval_s)
        kind = int(kind)
        if kind == 0:
            return None
        self.refusals += 1
        return Refusal(LIMIT_NAMES[kind], float(wait))

    def settle(self, tenant: str, plan: str, reserved_tokens: float, used_tokens: float, now: float) -> None:
        """Give back tokens a request took but did not use, or take those it used beyond (as
        :meth:`llmlab.ratelimit.RateLimiter.settle`); a Redis outage only loses the settlement."""
        limit = self.limit_for(tenant, plan)
        if limit.tpm is None or reserved_tokens == used_tokens:
            return
        key = self.key(tenant)
        args = [_num(limit.tpm), _num(reserved_tokens), _num(used_tokens), _num(now), self._expire_ms]
        try:
            self.link.call("rate limit refund", lambda r: self._refund(keys=[key], args=args, client=r), key=key)
        except RedisUnavailable:
            self.unavailable += 1
