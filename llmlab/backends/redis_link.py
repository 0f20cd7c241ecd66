"""One Redis connection shared by the cache, budgets and rate limiter, and what it does when Redis dies.

The pipeline calls its backends synchronously, from inside the asyncio loop too, so a dead
Redis must cost microseconds, not a socket timeout per request.  :class:`RedisLink` is a tiny
circuit breaker around the client:

* a failing command marks the link *down* and drops the pooled connections;
* while down, commands fail at once with :class:`RedisUnavailable` (no network at all) until
  ``retry_interval_s`` has passed; then the next command is the probe;
* the first command that succeeds marks the link up again: the client has reconnected.

Each backend decides what "failed" means for it (the cache misses, budgets fail closed, rate
limits fail open by default).  Warnings are rate-limited: one line per ``log_interval_s`` per
kind of failure, with the number of similar messages suppressed in between.

The link's timers use the real monotonic clock on purpose: they time real sockets, while the
pipeline's ``now`` (possibly a simulated clock) decides policy.

A Redis Cluster client (``redis+cluster://``) is one link too, not one per node: a node that
dies marks the whole link down, so every tenant degrades (cache misses, budgets refuse) until
the probe, also those whose keys live on healthy nodes.  Coarse on purpose: a cluster that lost
a master without a replica to promote refuses every key after ``cluster-node-timeout`` anyway
(``cluster-require-full-coverage yes``, the default), and a promoted replica is found by the
probe (the client rediscovers the topology on the failed command).  The cluster's transient
states (``CLUSTERDOWN``, ``TRYAGAIN``, no reachable node, a slot not covered) count as *gone*,
like a dead socket: budgets queue their writes for replay instead of dropping them.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, TypeVar
from urllib.parse import quote, unquote

from ..errors import LLMLabError
from ..steplock import outside_step_lock

log = logging.getLogger("llmlab.backends")
T = TypeVar("T")


def key_part(text: object) -> str:
    """``text`` percent-encoded for a key segment: no ``:`` of its own, so tenant ``a:b`` never
    meets tenant ``a``'s keys.  A lone surrogate (JSON's ``"\\ud800"`` decodes to one, and the
    gateway accepts any tenant string) is encoded as its surrogate bytes, which no real character
    has, rather than raising inside the request."""
    return quote(str(text), safe="", errors="surrogatepass")


def redact_url(url: str) -> str:
    """The URL without its password (safe to log and to put in error messages).

    Split by hand rather than with ``urlsplit``: a generated password often holds ``/``,
    ``?`` or ``#`` that its owner did not percent-encode, and ``urlsplit`` then ends the
    user-info early and hands the rest of the password on as the path, query or fragment
    (it also raises on a bad port).  Everything before the *last* ``@`` is the user-info,
    as for ``urlsplit``; a ``password=`` query value (redis-py reads one, the usual way for
    ``unix://`` sockets) is hidden too.  Hiding too much is the safe direction.
    """
    if not isinstance(url, str):
        return "<not a url>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparseable url>" if "@" in url or "password" in url.lower() else url
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:***" if colon else user) + rest[at:]
    head, qsep, query = rest.partition("?")
    if qsep:
        query, hsep, fragment = query.partition("#")
        query = "&".join(f"{k}=***" if unquote(k).lower() == "password" else f"{k}={v}" if sep_ else k
                         for k, sep_, v in (item.partition("=") for item in query.split("&")))
        rest = f"{head}?{query}{hsep}{fragment}"
    return f"{scheme}://{rest}"


class RedisUnavailable(LLMLabError, ConnectionError):
    """Redis at ``url`` (password redacted) could not be reached or refused the command."""

    def __init__(self, url: str, reason: str, *, hint: str = "", gone: bool = True) -> None:
        self.url = redact_url(url)
        self.reason = reason
        self.gone = gone  # False: the server answered but refused the command (retrying will not help)
        message = f"Redis at {self.url} is unavailable: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class RateLimitedLog:
    """At most one record per ``interval_s`` per key; counts what it suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, msg: str, *args: Any) -> bool:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += f" ({suppressed} similar messages suppressed)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: str, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)


#: the cluster client's ``RedisClusterException`` (not a ``RedisError``) is raised both for an
#: outage and for a command it refuses to send (keys in two slots, a command cluster mode lacks);
#: these are the outages, told apart by redis-py's wording as nothing else tells them
_CLUSTER_OUTAGES = ("Redis Cluster cannot be connected", "All slots are not covered", "No targets were found")


def _redis_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(errors that mean the server is gone, all errors a command may raise).

    Cluster states that pass count as gone: ``ClusterError`` (``CLUSTERDOWN``, ``MASTERDOWN``,
    redirections that ran out), ``TRYAGAIN`` (a slot migrating), a slot not covered."""
    from redis import exceptions as rx

    gone = (rx.ConnectionError, rx.TimeoutError, OSError, rx.ClusterError, rx.TryAgainError,
            rx.SlotNotCoveredError)
    return gone, (rx.RedisError, OSError, rx.RedisClusterException)


def _is_gone(exc: BaseException, gone: tuple[type[BaseException], ...]) -> bool:
    if isinstance(exc, gone):
        return True
    from redis import exceptions as rx

    return isinstance(exc, rx.RedisClusterException) and str(exc).startswith(_CLUSTER_OUTAGES)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a ``redis.cluster.RedisCluster`` (it then gets the tagged key layout)."""
    try:
        from redis.cluster import RedisCluster
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    return isinstance(client, RedisCluster)


class RedisLink:
    """A Redis client plus up/down state; see the module docstring."""

    def __init__(self, client: Any, url: str, *, retry_interval_s: float = 1.0, log_interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.url = redact_url(url)
        self.retry_interval_s = retry_interval_s
        self.clock = clock
        self.logs = RateLimitedLog(log, log_interval_s, clock)
        self._down_reason: str | None = None
        self._next_probe = 0.0
        self._lock = threading.Lock()
        self._gone, self._errors = _redis_errors()
        self.cluster = is_cluster(client)
        self.failures = 0
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        return self._down_reason is None

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)``; raise :class:`RedisUnavailable` fast while the link is down.

        ``fn`` runs with the calling thread's step lock let go (:func:`~llmlab.steplock.outside_step_lock`):
        other requests' stages go on while this one waits for Redis.  So ``fn`` talks to Redis
        and touches nothing else of the process."""
        reason = self._down_reason
        if reason is not None and self.clock() < self._next_probe:
            raise RedisUnavailable(self.url, reason)
        try:
            result = outside_step_lock(fn, self.client)
        except self._errors as exc:
            self._failed(what, exc)
            raise RedisUnavailable(self.url, f"{type(exc).__name__}: {exc}",
                                   gone=_is_gone(exc, self._gone)) from exc
        if reason is not None:
            self._recovered()
        return result

    def _failed(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        if not _is_gone(exc, self._gone):  # the server answered (e.g. OOM, READONLY): keep the link up
            self.logs.warning(f"error:{what}", "llmlab: Redis at %s refused %s: %s: %s", self.url, what,
                              type(exc).__name__, exc)
            return
        with self._lock:
            was_up = self._down_reason is None
            self._down_reason = f"{type(exc).__name__}: {exc}"
            self._next_probe = self.clock() + self.retry_interval_s
        try:  # pooled connections to a dead server are stale: reconnect from scratch next time
            if self.cluster:  # one pool per node; the topology is rediscovered by the client itself
                self.client.disconnect_connection_pools()
            else:
                self.client.connection_pool.disconnect()
        except Exception:  # pragma: no cover - best effort
            pass
        if was_up:
            self.logs.warning("down", "llmlab: Redis at %s is unreachable (%s during %s); degrading and retrying "
                                      "every %.1f s", self.url, type(exc).__name__, what, self.retry_interval_s)

    def _recovered(self) -> None:
        with self._lock:
            if self._down_reason is None:
                return
            self._down_reason = None
        self.reconnects += 1
        log.warning("llmlab: reconnected to Redis at %s", self.url)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover - best effort
            pass
