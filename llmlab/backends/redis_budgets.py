"""Monthly budgets in Redis: atomic reserve-then-settle shared by every gateway process.

Same contract as :class:`llmlab.budgets.MemoryBudgets`.  Per (tenant, month) one hash
``{prefix}:budget:{tenant}:{YYYY-MM}`` (on a Redis Cluster the tenant in a hash tag: see "Key
layout" below) holds ``spent`` and ``reserved`` in integer nano-USD
(exact sums, no float drift; a cap counts up to :data:`MAX_USD`, $1e8 a month: see there) and one
field ``r:{id}`` per open reservation; a sorted set
``…:open`` holds each open reservation's lease deadline, and a settled one's tombstone
(``t:{id}``) until that deadline, so that a settlement replayed after a lost reply is not
counted twice; a charge (spend with no reservation) carries an id of its own and leaves a
tombstone for ``lease_s`` too.  Expired leases and tombstones are swept by ``try_reserve`` and
by ``charge`` (a tenant with no cap only ever charges).  While a hold is open its process renews
its lease every ``lease_s / 3`` (:meth:`RedisBudgets.renew_leases`, on a daemon thread), so only
a process that died or lost Redis for a whole lease loses its holds.  ``lease_s`` is at most a day
(:data:`MAX_LEASE_S`).

* ``try_reserve`` is one Lua script: release expired leases (a gateway that crashed between
  reserve and settle), check ``spent + reserved + amount ≤ cap`` and reserve — no other
  client can interleave, so concurrent gateways never overshoot a cap together.
* ``settle`` moves the reservation to ``spent`` at its actual cost (a second script).
* The month being counted has no TTL, so a Redis whose ``maxmemory-policy`` is ``volatile-*``
  (the managed services' default) evicts cache entries, semantic streams and rate buckets
  under memory pressure but never a budget: an evicted hash would restart the tenant's month
  at zero spend.  A tenant's first reservation in a new month gives the previous month's keys
  their TTL (``retention_s`` after that month's end, relative to the caller's ``now``); a
  settlement that has to recreate a vanished hash gives it one too.

When Redis is unreachable (``on_error``):

* ``"closed"`` (default): ``try_reserve`` refuses (the request ends as ``BudgetExceeded``;
  nothing is spent that could not be accounted for);
* ``"open"``: the request proceeds on an unrecorded reservation.

Either way, settlements and charges that cannot be written are queued in the process and
replayed (in pipelined batches) once Redis answers again, so spend is not lost to an outage.  A
settlement or charge whose reply was lost (it may have been applied) is replayed too, and
recognised as applied by its tombstone when the replay comes within ``lease_s``.
Leases and tombstones are timed on Redis' clock (``TIME``), so replicas whose clocks disagree
still agree on when a hold lapses; the month a spend counts in is the caller's ``now``'s (a
replica whose clock runs ahead counts its spend in the next month that much early).

Key layout.  On one Redis, ``llmlab:budget:acme:2026-11`` and ``llmlab:budget:acme:2026-11:open``
(tenant percent-encoded), unchanged since the first release: an upgrade keeps every tenant's
month-to-date spend.  On a Redis Cluster (``redis+cluster://``) a script may only touch keys of
one hash slot, and the reserve script touches four (this month's hash and lease set, the
previous month's two), so the tenant is the hash tag: ``llmlab:budget:{acme}:2026-11`` and
``llmlab:budget:{acme}:2026-11:open``.  A tenant's keys share a slot (any month: the tag
holds only the tenant); tenants spread over the masters.  The percent-encoded tenant holds no
brace, and ``from_url`` refuses a prefix with one, so the tag is always the tenant's.
"""
from __future__ import annotations

import math
import os
import threading
import weakref
from collections import deque
from itertools import islice
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .. import _validate as v
from ..budgets import Reservation, month_of, next_month_start
from .redis_link import MAX_TTL_S, KeyedScript, RedisLink, RedisUnavailable, key_part, log

NANO = 1_000_000_000
FAIL_MODES = ("closed", "open")
FLUSH_BATCH = 500  # queued settlements replayed per round trip
#: the longest ``lease_s`` (a day): the heartbeat renews every ``lease_s / 3``, and a hold whose process
#: died comes back to the budget a lease after its last renewal — an infinite lease killed the
#: renewal thread (OverflowError) and would have kept a dead process's holds for good
MAX_LEASE_S = 86_400.0
#: the largest cap, and the largest single amount, the counters are asked to hold (USD): they are
#: integer nano-USD, at most 18 digits (below 10¹⁸ nano-USD, $1e9: the scripts refuse a longer
#: value as not llmlab's, and Redis' HINCRBY stops at 2⁶³).  A cap above it, an infinite one
#: included, counts as this much — a hundred million dollars a tenant a month — which leaves the
#: counters ten times the room for spend past the holds; a larger amount is refused by the cap
#: check, never sent to a counter.  (A cap of 1e300 raised OverflowError on every request, and an
#: amount past 2⁶³ nano-USD made Redis refuse the script: "budget unavailable".)
MAX_USD = 1e8
MAX_NANO = int(MAX_USD * NANO)

# Leases and tombstones are timed on Redis' own clock (TIME), never on a caller's: every process
# sharing the Redis then agrees on when a hold lapses.  On the callers' clocks, a replica whose
# clock ran a lease ahead of the others (10 minutes by default) swept every other replica's live
# holds at its next reservation, and one whose clock ran that far behind had its own swept at
# once: the money went to other requests and the tenant past its cap.  (Scripts may call TIME and
# then write since Redis 5, which replicates a script's effects rather than the script itself.)
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# Release up to 100 leases and tombstones expired by now (a crashed gateway's holds go back to
# the budget).  Run by try_reserve, and by a charge: a tenant with no cap never reserves, and
# its charges' tombstones were never swept.
_SWEEP = """
local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  local a = redis.call('HGET', h, 'r:' .. id)
  if a then
    if a ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. a) end
    redis.call('HDEL', h, 'r:' .. id)
    redis.call('HINCRBY', h, 'reclaimed', 1)
  end
  redis.call('ZREM', z, id)
end
"""

# KEYS: this month's hash and lease set, then the previous month's (given their TTL, ARGV[4]);
# ARGV: amount, cap, the lease's length in seconds (from Redis' clock), that TTL
_RESERVE = """
local h, z = KEYS[1], KEYS[2]
local amount, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('PERSIST', h)
redis.call('PERSIST', z)
local existed = redis.call('EXISTS', h)
for _, k in ipairs({KEYS[3], KEYS[4]}) do
  if redis.call('TTL', k) == -1 then redis.call('EXPIRE', k, ARGV[4]) end
end
""" + _NOW + _SWEEP + """
local function counter(name)  -- a value llmlab did not write is an error, never a guess
  local raw = redis.call('HGET', h, name) or '0'
  if not string.match(raw, '^-?%d+$') or string.len(raw) > 18 then
    return redis.error_reply('llmlab budget hash ' .. h .. ' has a non-integer ' .. name .. ' (not written by llmlab)')
  end
  return tonumber(raw)
end
local spent, reserved = counter('spent'), counter('reserved')
if type(spent) == 'table' then return spent end
if type(reserved) == 'table' then return reserved end
if cap >= 0 and spent + reserved + amount > cap then
  return {0, redis.call('HGET', h, 'spent') or '0'}
end
local id = redis.call('HINCRBY', h, 'seq', 1)
redis.call('HINCRBY', h, 'reserved', ARGV[1])
redis.call('HSET', h, 'r:' .. id, ARGV[1])
redis.call('ZADD', z, string.format('%.17g', now + tonumber(ARGV[3])), id)
return {1, id, redis.call('HGET', h, 'spent') or '0', existed}
"""

# KEYS[1]: a lease set; ARGV[1]: the lease's length (seconds from Redis' clock); ARGV[2..]: ids
# of this process's open holds.  Only a lease still in the set is moved, and only later: a
# settled hold (its tombstone is another member) or one already swept is left alone.  It writes
# first with a ZREM of a member that never exists, as the other scripts do (see below), so a
# full Redis still renews.
_RENEW = """
redis.call('ZREM', KEYS[1], '')
""" + _NOW + """
local deadline = now + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) < deadline then
    redis.call('ZADD', KEYS[1], string.format('%.17g', deadline), ARGV[i])
    n = n + 1
  end
end
return n
"""

# Returns 1, or 0 when the reservation was no longer held (its lease ran out and another
# request's try_reserve released it): all of this spend then went past the cap check; or 2, and
# changes nothing, when the reservation was settled already: a settlement whose reply was lost
# (a stalled Redis past the socket timeout) is queued and replayed, and its first copy may have
# been applied.  A settled reservation leaves a tombstone ('t:' .. id) in the lease set with its
# lease's expiry, so a replay within the lease is recognised; try_reserve's sweep of expired
# leases removes it then, as it removes the leases themselves.
# A charge (spend with no reservation) has an id of its own and ARGV[4], how long its tombstone
# lasts from Redis' clock ('' for a settlement): a replayed charge is recognised by that
# tombstone the same way.  A charge also sweeps what has expired, as try_reserve does.
# ARGV[3]: the TTL to give the hash if this settlement has to create it ('0': none, a charge
# to the month being counted).
# The reserve and settle scripts write first with a command that cannot grow memory (PERSIST, ZREM): Redis then
# lets the rest of the script write even when used memory is over maxmemory (a script is not
# stopped halfway), so a Redis that the cache filled under noeviction still records spend; it
# refused settlements as OOM, and their spend was lost.
_SETTLE = """
local h, z = KEYS[1], KEYS[2]
local charge = ARGV[4] ~= ''
local lease = false
if ARGV[1] ~= '' then
  if redis.call('ZSCORE', z, 't:' .. ARGV[1]) then return 2 end
  if not charge then lease = redis.call('ZSCORE', z, ARGV[1]) end
end
redis.call('ZREM', z, ARGV[1])
local held = 1
local existed = redis.call('EXISTS', h)
if charge then
""" + _NOW + _SWEEP + """
  redis.call('ZADD', z, string.format('%.17g', now + tonumber(ARGV[4])), 't:' .. ARGV[1])
elseif ARGV[1] ~= '' then
  if lease then redis.call('ZADD', z, lease, 't:' .. ARGV[1]) end
  local a = redis.call('HGET', h, 'r:' .. ARGV[1])
  if a then
    if a ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. a) end
    redis.call('HDEL', h, 'r:' .. ARGV[1])
    if tonumber(ARGV[2]) > tonumber(a) then
      redis.call('HINCRBY', h, 'overshoot', tonumber(ARGV[2]) - tonumber(a))
    end
  else
    held = 0
    if ARGV[2] ~= '0' then redis.call('HINCRBY', h, 'overshoot', ARGV[2]) end
  end
end
redis.call('HINCRBY', h, 'spent', ARGV[2])
if existed == 0 and ARGV[3] ~= '0' then redis.call('EXPIRE', h, ARGV[3]) end
return held
"""


class _Write(NamedTuple):
    """One settlement or charge for the settle script, as queued while Redis is unreachable."""

    hash: str
    zset: str
    id: str  # the reservation's id, a charge's own id, or '' (a reservation made while Redis was down)
    nano: int  # the spend, nano-USD
    ttl: int  # for the hash if the write has to create it (0: none)
    held: int  # nano-USD the reservation held (for the lost-hold check)
    charge_for: str = ""  # a charge: how long its tombstone lasts, seconds ('' for a settlement)

    def args(self) -> list[Any]:
        return [self.id, self.nano, self.ttl, self.charge_for]


@dataclass(frozen=True, slots=True)
class RedisReservation(Reservation):
    """A reservation plus what settling it needs (``recorded=False``: made while Redis was down)."""

    ttl_s: int = 0
    recorded: bool = True


def month_start(now: float) -> float:
    """Epoch seconds of the first instant of ``now``'s UTC month."""
    d = datetime.fromtimestamp(now, tz=timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


def _is_month(text: str) -> bool:
    """``YYYY-MM``, as :func:`~llmlab.budgets.month_of` writes it."""
    return len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit() and 1 <= int(text[5:]) <= 12


def _nano(usd: float) -> int:
    """USD as integer nano-USD, at most :data:`MAX_NANO` (a spend past what the counters hold is
    counted as that much: see :data:`MAX_USD`)."""
    if usd <= MAX_USD:
        return int(round(usd * NANO))
    return MAX_NANO if usd > MAX_USD else 0  # else NaN: no number to count


def _nano_up(usd: float) -> int:
    """Round a reservation *up* (never reserve less than asked), ignoring float noise; an amount
    past :data:`MAX_USD` (or not a number) is twice what any cap can be, so the cap check refuses
    it (the script compares in doubles: one nano-USD more would round to the cap itself)."""
    if not usd <= MAX_USD:
        return 2 * MAX_NANO
    return max(0, math.ceil(usd * NANO - 1e-3))


class RedisBudgets:
    """Implements ``BudgetBackend`` on Redis; see the module docstring."""

    #: its calls wait on the network: a gateway using it runs async requests' steps on threads
    blocking_io = True

    def __init__(self, link: RedisLink, *, prefix: str = "llmlab", on_error: str = "closed",
                 lease_s: float = 600.0, retention_s: float = 35 * 86_400.0, max_pending: int = 100_000) -> None:
        self.link = link
        self.prefix = prefix
        self.on_error = v.choice("budgets_on_error", on_error, FAIL_MODES)
        self.lease_s = v.number("budget_lease_s", lease_s, lo=0.0, lo_open=True, hi=MAX_LEASE_S)
        self.retention_s = v.number("budget_retention_s", retention_s, lo=0.0, hi=MAX_TTL_S)
        self.max_pending = v.integer("budget_max_pending", max_pending, lo=0)
        self._reserve = KeyedScript(link.client, _RESERVE)
        self._settle = KeyedScript(link.client, _SETTLE)
        self._renew = KeyedScript(link.client, _RENEW)
        #: this process's open holds, (lease set, id), their leases renewed while they are open
        self._held: set[tuple[str, str]] = set()
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()
        self.renewed_leases = 0
        self._pending: deque[_Write] = deque()
        self._lock = threading.Lock()
        #: per thread: gateways sharing these budgets from other threads must not relabel each
        #: other's refusals (a BudgetExceeded read as BudgetUnavailable, or the reverse)
        self._refusal = threading.local()
        self._flushing = threading.Lock()  # held by the one thread replaying the queue
        #: the month's spend last read per tenant, what spent() answers while Redis is down; only
        #: the latest month's is kept (every tenant and month for good was a process's slow leak)
        self._last_spent: dict[tuple[str, str], float] = {}
        self._last_month = ""
        self.overshoot_usd = 0.0
        self.refused_unavailable = 0
        self.admitted_unavailable = 0
        self.dropped_settlements = 0
        self.lost_holds = 0  # settlements whose reservation had been released (see _settled)

    # ------------------------------------------------------------------ keys
    def keys(self, tenant: str, month: str, *, tagged: bool | None = None) -> tuple[str, str]:
        """(hash, lease set) of ``tenant``'s ``month``: the tenant in a hash tag on a cluster
        (``tagged=None``: as this link needs; True or False: that layout, e.g. to copy keys
        from one Redis into a cluster)."""
        part = key_part(tenant)
        if self.link.cluster if tagged is None else tagged:
            part = "{" + part + "}"
        h = f"{self.prefix}:budget:{part}:{month}"
        return h, h + ":open"

    def _ttl(self, now: float) -> int:
        """Seconds from ``now`` until this month's keys may go: ``retention_s`` after it ends."""
        return max(1, int(math.ceil(next_month_start(now) - now + self.retention_s)))

    def _previous(self, tenant: str, now: float) -> tuple[str, str, int]:
        """The previous month's keys and their TTL from ``now`` (``retention_s`` after its end)."""
        start = month_start(now)
        h, z = self.keys(tenant, month_of(start - 1.0))
        return h, z, max(1, int(math.ceil(start + self.retention_s - now)))

    # ------------------------------------------------------------------ pending writes
    def _queue(self, item: _Write) -> None:
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self.dropped_settlements += 1
                self.link.logs.warning("budget-drop", "llmlab: budget settlement queue full (%d); dropping one",
                                       self.max_pending)
                return
            self._pending.append(item)

    def _flush(self) -> None:
        """Replay settlements/charges queued while Redis was down (called before each command).

        ``FLUSH_BATCH`` of them per round trip (one pipeline): after a long outage in fail-open
        mode the queue holds one item per request served meanwhile, and replaying them one round
        trip each stalled the first request after the reconnect (and every request queued behind
        it) for seconds.  One thread replays at a time; the others go on with their own command.
        On a cluster the batch is split by master, one pipeline each (see :meth:`_replay`); what
        a master that failed did not apply stays queued, what the others applied does not, and the
        command this flush runs before goes on: a master down holds up only its own tenants.
        """
        if not self._pending or not self._flushing.acquire(blocking=False):
            return
        try:
            stuck = False
            while self._pending and not stuck:
                with self._lock:
                    batch = list(islice(self._pending, FLUSH_BATCH))
                done = [False] * len(batch)
                try:
                    groups = [list(range(len(batch)))]
                    if self.link.cluster:
                        groups, unplaced = self._groups(self.link.client, batch)
                        stuck = unplaced  # those whose slot has no master stay queued
                    for indices in groups:
                        part = [batch[i] for i in indices]
                        try:
                            results = self.link.call("budget settle", lambda r, part=part: self._replay(r, part),
                                                     key=part[0].hash)  # one master's (see _groups)
                        except RedisUnavailable:  # that master's stay queued for a later command to replay
                            stuck = True
                            continue
                        for i, item, result in zip(indices, part, results):
                            if isinstance(result, Exception):  # refused by the server (not gone): replaying cannot help
                                self.dropped_settlements += 1
                            else:
                                self._settled(result, item.held)
                            done[i] = True
                finally:
                    with self._lock:  # the batch is the queue's head: only this thread takes from it
                        for _ in batch:
                            self._pending.popleft()
                        self._pending.extendleft(reversed([item for item, ok in zip(batch, done) if not ok]))
        finally:
            self._flushing.release()

    def _groups(self, r: Any, batch: list[_Write]) -> tuple[list[list[int]], bool]:
        """Indices of ``batch`` per master of a cluster (a cluster pipeline refuses scripts, so
        each master gets a plain pipeline), read from the client's slot table (no I/O), and
        whether some item's slot has no master there: those are left out, to stay queued (a
        slot without a master used to fail the whole replay, and the command it ran before)."""
        by_node: dict[str, list[int]] = {}
        unplaced = False
        for i, item in enumerate(batch):
            try:
                node = r.get_node_from_key(item.hash).name
            except Exception:  # SlotNotCoveredError: no master serves that slot now
                unplaced = True
                continue
            by_node.setdefault(node, []).append(i)
        return list(by_node.values()), unplaced

    def _replay(self, r: Any, part: list[_Write]) -> list[Any]:
        """Run the settle script for each of ``part`` in one pipeline; per item its result or the
        error the server answered.  On a cluster, ``part`` is one master's (:meth:`_groups`): its
        pipeline goes to that master's own client, which loads the script as a plain pipeline
        does; an item whose slot moved since (a resharding: ``MOVED``/``ASK``/``TRYAGAIN``) is
        replayed alone through the cluster client, which follows the redirection."""
        if not self.link.cluster:
            pipe = r.pipeline(transaction=False)
        else:
            pipe = r.get_redis_connection(r.get_node_from_key(part[0].hash)).pipeline(transaction=False)
        for item in part:
            self._settle(keys=[item.hash, item.zset], args=item.args(), client=pipe)
        results = pipe.execute(raise_on_error=False)
        if not self.link.cluster:
            return results
        from redis.exceptions import AskError, ResponseError, TryAgainError

        out: list[Any] = []
        for item, result in zip(part, results):
            if isinstance(result, (AskError, TryAgainError)):  # MovedError is an AskError
                try:
                    result = self._settle(keys=[item.hash, item.zset], args=item.args(), client=r)
                except ResponseError as exc:
                    result = exc
            out.append(result)
        return out

    def _pending_for(self, h: str) -> float:
        with self._lock:
            return sum(item.nano for item in self._pending if item.hash == h) / NANO

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def last_refusal_unavailable(self) -> bool:
        """Whether this thread's last refused reservation was refused because Redis was
        unavailable (fail closed), not because the cap was reached: read by the pipeline right
        after a refusal."""
        return getattr(self._refusal, "unavailable", False)

    # ------------------------------------------------------------------ BudgetBackend
    def try_reserve(self, tenant: str, amount: float, cap: float | None, now: float) -> Reservation | None:
        self._refusal.unavailable = False
        month = month_of(now)
        h, z = self.keys(tenant, month)
        ttl = self._ttl(now)
        prev_h, prev_z, prev_ttl = self._previous(tenant, now)
        want = _nano_up(amount)
        cap_nano = -1 if cap is None else self._cap_nano(cap)
        try:
            self._flush()
            ok, value, *known = self.link.call("budget reserve", lambda r: self._reserve(
                keys=[h, z, prev_h, prev_z], args=[want, cap_nano, repr(self.lease_s), prev_ttl], client=r), key=h)
        except RedisUnavailable as exc:
            if self.on_error == "open":
                self.admitted_unavailable += 1
                self.link.logs.warning("budget-open", "llmlab: budgets fail open: Redis unavailable (%s)",
                                       exc.reason)
                return RedisReservation(tenant, month, amount, 0, ttl, False)
            self.refused_unavailable += 1
            self._refusal.unavailable = True
            self.link.logs.warning("budget-closed", "llmlab: budgets fail closed: refusing while Redis is "
                                                    "unavailable (%s)", exc.reason)
            return None
        if int(ok) != 1:
            self._remember_spent(tenant, month, int(value) / NANO)
            return None
        if known:  # the spend the hold was checked against, and whether Redis still had the month
            self._check_not_forgotten(tenant, month, h, int(known[0]) / NANO, bool(int(known[1])))
        with self._lock:
            self._held.add((z, str(int(value))))
        if self._heartbeat is None:
            self._start_heartbeat()
        return RedisReservation(tenant, month, amount, int(value), ttl, True)

    def _cap_nano(self, cap: float) -> int:
        """``cap`` in nano-USD; one above :data:`MAX_USD` counts as that — said once in a while for
        a finite one (the tenant's cap is lower here than configured), silently for an infinite
        one (no cap: $1e8 a month is none in practice)."""
        if cap <= MAX_USD:
            return _nano(cap)
        if not math.isinf(cap):
            self.link.logs.warning("budget-cap-max", "llmlab: a monthly budget cap of $%g is more than the Redis "
                                                     "budgets count; it counts as $%g (llmlab.backends."
                                                     "redis_budgets.MAX_USD)", cap, MAX_USD)
        return MAX_NANO

    # ------------------------------------------------------------------ lease renewal
    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is not None or self._stop.is_set():
                return
            self._heartbeat = threading.Thread(target=_renew_while_alive, args=(weakref.ref(self), self._stop,
                                                                                 self.lease_s / 3),
                                               name="llmlab-budget-leases", daemon=True)
        self._heartbeat.start()

    def renew_leases(self) -> int:
        """Move the lease of every hold this process still has open to ``lease_s`` from now (on
        Redis' clock); run every ``lease_s / 3`` by a daemon thread, so that a request that
        runs longer than the lease (a long stream, a reasoning model thinking for minutes) keeps
        its hold while its process lives.  A process that died renews nothing: its holds go back
        to the budget a lease after its last renewal.  Returns how many leases moved."""
        with self._lock:
            held = sorted(self._held)
        if not held:
            return 0
        lease = repr(self.lease_s)
        by_set: dict[str, list[str]] = {}
        for z, rid in held:
            by_set.setdefault(z, []).append(rid)
        moved = 0
        for z, ids in by_set.items():
            try:
                moved += int(self.link.call("budget lease renewal",
                                            lambda r, z=z, ids=ids: self._renew(keys=[z], args=[lease, *ids],
                                                                                client=r), key=z))
            except RedisUnavailable:  # the next round tries again (a lease outlives two missed rounds); the
                continue  # other masters of a cluster are renewed meanwhile
        self.renewed_leases += moved
        return moved

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop renewing leases (the open holds then lapse a lease later, as a dead process's), and
        wait up to ``timeout_s`` for the renewal thread to end (a round in progress finishes).

        Settlements and charges still queued from a Redis outage are written first: they were
        replayed only before a later command, so a process shut down after Redis came back but
        before its next budget command lost them (the tenants' spend undercounted in Redis for
        every replica, with no word).  The replay does not wait out ``retry_interval_s`` (a
        closing process has no later); what Redis still cannot take is lost with the process,
        and a warning says how much."""
        self._stop.set()
        thread = self._heartbeat
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        if self._pending:
            self.link.probe_now()
            self._flush()
        with self._lock:
            left, usd = len(self._pending), sum(item.nano for item in self._pending) / NANO
        if left:
            log.warning("llmlab: closing the Redis budgets with %d settlement(s) or charge(s) of $%.6f not "
                        "written (Redis at %s unreachable): that spend is not counted in Redis", left, usd,
                        self.link.url)

    def settle(self, reservation: Reservation, actual: float) -> None:
        h, z = self.keys(reservation.tenant, reservation.month)
        recorded = getattr(reservation, "recorded", True)
        rid = str(reservation.id) if recorded else ""
        if recorded:
            with self._lock:
                self._held.discard((z, rid))
        ttl = getattr(reservation, "ttl_s", 0) or max(1, int(self.retention_s))
        nano = _nano(max(0.0, actual))
        if actual > reservation.amount + 1e-12:
            self.overshoot_usd += actual - reservation.amount
        self._write(_Write(h, z, rid, nano, ttl, min(nano, _nano(reservation.amount)) if recorded else 0))

    def charge(self, tenant: str, amount: float, now: float) -> None:
        """Record spend that had no reservation (for example a classifier call).

        The charge gets an id of its own, so that a replay after a lost reply is recognised
        (within ``lease_s``) rather than counted twice."""
        h, z = self.keys(tenant, month_of(now))
        self._write(_Write(h, z, "c" + os.urandom(8).hex(), _nano(max(0.0, amount)), 0, 0,  # this month: no TTL
                           repr(self.lease_s)))

    def _write(self, item: _Write) -> None:
        try:
            self._flush()
            result = self.link.call("budget settle", lambda r: self._settle(keys=[item.hash, item.zset],
                                                                          args=item.args(), client=r), key=item.hash)
        except RedisUnavailable as exc:
            if exc.gone:
                self._queue(item)
            else:
                self.dropped_settlements += 1
            return
        self._settled(result, item.held)

    def _settled(self, result: Any, held_nano: int) -> None:
        """What the settle script said (see ``_SETTLE``).  0 — the settlement found its reservation
        released: its lease lapsed unrenewed (the process hung or lost Redis for ``lease_s``), or
        a replay came after the lease of a settlement whose first copy was applied, so the spend
        its hold covered went past the cap check too.  Counted as overshoot, like spend above a
        hold, and said once in a while; a released hold settled at $0 (a failed request) spent
        nothing past it."""
        if int(result) != 0 or held_nano <= 0:
            return
        self.lost_holds += 1
        self.overshoot_usd += held_nano / NANO
        self.link.logs.warning("budget-lease", "llmlab: a request settled after its budget hold had been released "
                                               "(its lease of budget_lease_s=%g s lapsed unrenewed: the process "
                                               "stalled or lost Redis that long; or a settlement replayed after a "
                                               "lost reply): its spend went past the cap check", self.lease_s)

    def _read(self, tenant: str, now: float, field: str) -> float:
        month = month_of(now)
        h, _ = self.keys(tenant, month)
        try:
            self._flush()
            raw = self.link.call("budget read", lambda r: r.hget(h, field), key=h)
        except RedisUnavailable:
            return self._last_spent.get((tenant, month), 0.0) + self._pending_for(h) if field == "spent" else 0.0
        try:
            nano = int(raw or 0)
            if len(str(nano)) > 18:  # as the scripts judge it: beyond a billion dollars is not a sum we wrote
                raise ValueError(field)
            value = nano / NANO
        except ValueError:  # not written by llmlab; try_reserve refuses on it (fail closed)
            self.link.logs.warning("budget-corrupt", "llmlab: budget hash %s has a non-integer %s (not written by "
                                                     "llmlab)", h, field)
            return self._last_spent.get((tenant, month), 0.0) if field == "spent" else 0.0
        if field == "spent":
            self._remember_spent(tenant, month, value)
        return value

    def _check_not_forgotten(self, tenant: str, month: str, h: str, spent: float, existed: bool) -> None:
        """Warn when Redis no longer has a month this process saw spend in: a Redis restarted
        without persistence (or flushed, or evicting under ``allkeys-*``) restarts every tenant's
        month at zero spend, and the caps count from there; nothing else said so.  Only the
        replicas that had read or reserved for the tenant this month can tell."""
        seen = self._last_spent.get((tenant, month), 0.0)
        if not existed and seen > 0:
            self.link.logs.warning("budget-forgotten", "llmlab: Redis has lost the budget hash %s, whose month-to-date "
                                                       "spend this process last saw at $%.6f: Redis restarted without "
                                                       "persistence, was flushed, or evicted it; the tenant's cap "
                                                       "counts from $0 again (run Redis with appendonly yes)",
                                   h, seen)
        self._remember_spent(tenant, month, spent)

    def _remember_spent(self, tenant: str, month: str, value: float) -> None:
        if month != self._last_month:
            if month < self._last_month:  # a read of a past month: nothing to fall back on later
                return
            self._last_spent.clear()
            self._last_month = month
        self._last_spent[(tenant, month)] = value

    def spent(self, tenant: str, now: float) -> float:
        """Spend this month (while Redis is down: the last value seen plus what is queued)."""
        return self._read(tenant, now, "spent")

    def reserved(self, tenant: str, now: float) -> float:
        return self._read(tenant, now, "reserved")

    def expire_past_months(self, now: float) -> int:
        """Give every budget key of a month before ``now``'s that has no TTL its TTL (``retention_s``
        after that month's end, counted from ``now``; 1 s when that is past); returns how many.

        A tenant's keys get their TTL at its first reservation of the next month, so a tenant
        that never came back kept its last month's hash and lease set for good: run this once a
        month (a scheduled job) to let them go.  One SCAN over this prefix's budget keys, TTLs
        read and set in pipelined batches; the month being counted is never touched.
        """
        current = month_of(now)

        def run(r: Any) -> int:
            done = 0
            batch: list[tuple[bytes, int]] = []

            def flush() -> int:
                pipe = r.pipeline(transaction=False)
                for key, _ in batch:
                    pipe.ttl(key)
                ttls = pipe.execute()
                pipe = r.pipeline(transaction=False)
                n = 0
                for (key, ttl), left in zip(batch, ttls):
                    if left == -1:
                        pipe.expire(key, ttl)
                        n += 1
                pipe.execute()
                batch.clear()
                return n

            for key in r.scan_iter(match=f"{self.prefix}:budget:*", count=500):
                text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
                month = (text[:-5] if text.endswith(":open") else text)[-7:]
                if not _is_month(month) or month >= current:
                    continue
                end = next_month_start(datetime(int(month[:4]), int(month[5:]), 1, tzinfo=timezone.utc).timestamp())
                batch.append((key, max(1, int(math.ceil(end + self.retention_s - now)))))
                if len(batch) >= 500:
                    done += flush()
            return done + (flush() if batch else 0)

        return self.link.call("budget expire", run)

    def stats(self, tenant: str, now: float) -> dict[str, Any]:
        h, z = self.keys(tenant, month_of(now))
        fields = self.link.call("budget stats", lambda r: r.hgetall(h), key=h)
        out = {k.decode(): int(val) for k, val in fields.items() if not k.startswith(b"r:")}
        out["open"] = sum(1 for k in fields if k.startswith(b"r:"))
        return out


def _renew_while_alive(budgets: "weakref.ref[RedisBudgets]", stop: threading.Event, interval_s: float) -> None:
    """The heartbeat thread: renew the leases every ``interval_s`` until stopped or the budgets
    are garbage (it holds them weakly, so they can be)."""
    while not stop.wait(interval_s):
        owner = budgets()
        if owner is None:
            return
        try:
            owner.renew_leases()
        except Exception as exc:  # a failing round must not end the heartbeat: the next one tries again
            owner.link.logs.warning("lease-renewal", "llmlab: could not renew budget leases: %s: %s",
                                    type(exc).__name__, exc)
        del owner
