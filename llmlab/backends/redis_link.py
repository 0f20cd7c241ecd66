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

A Redis Cluster client (``redis+cluster://``) is one link with a down state per master: a
command about one key (``call(..., key=…)``, as every per-request command is) that finds its
master gone marks that master down, and only the keys it serves degrade — the tenants whose
budget hashes live there are refused, their cache reads miss — while the other masters' keys
are served as usual.  Between a master's death and its replica's promotion
(``cluster-node-timeout``, 15 s by default, plus the election) one link for the whole cluster
refused every tenant's budget.  The promoted replica is a new master: the client finds it on
the failed command (it rediscovers the topology) and the next command about those keys goes
there.  A key whose slot no master serves in the client's slot table (a master lost with no
replica, the table not yet refreshed) is down by its slot (``slot 1234``) the same way, so
that only the keys of that slot fail fast.  A command about no one key (a scan over every
master: ``cache_store.clear()``, ``expire_past_months``) that fails raises to its caller and
marks nothing down: there is no master to blame, and one master's death must not refuse every
tenant for a probe interval (on one Redis the one server is the link, and it goes down).  The
cluster's transient states (``CLUSTERDOWN``, ``TRYAGAIN``, no reachable node, a slot not
covered) count as *gone*, like a dead socket: budgets queue their writes for replay instead of
dropping them.  A cluster that lost a master
with no replica to promote refuses every key after ``cluster-node-timeout`` anyway
(``cluster-require-full-coverage yes``, the default): each master is then marked down in turn.
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

#: the longest TTL or interval the Redis backends take (≈ 32 years: "keep it", still a number Redis'
#: PX and the clocks can hold; an infinite one raised OverflowError building a backend)
MAX_TTL_S = 1e9


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
    as for ``urlsplit``: ``user:password`` keeps the user (``user:***``); user-info without a
    colon is hidden whole (``redis://***@host``), since a password written without its leading
    colon (``redis://S3cr3t@host``) is one too.  A ``password=`` query value (redis-py reads one,
    the usual way for ``unix://`` sockets) is hidden too.  Hiding too much is the safe direction.
    """
    if not isinstance(url, str):
        return "<not a url>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparseable url>" if "@" in url or "password" in url.lower() else url
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:***" if colon else "***") + rest[at:]
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


class KeyedScript:
    """A Lua script (redis-py's ``Script``) that, on a cluster, is only ever sent to its keys' master.

    redis-py loads a script the server does not know with ``SCRIPT LOAD``, which a cluster client
    broadcasts to every master: with one master dead, a script a healthy master had not run yet
    failed there too (a tenant's first lease renewal after an outage began, say).  Here a script
    unknown to its keys' master is sent whole (``EVAL``, which also caches it there) to that
    master alone.  A pipeline or a single Redis gets redis-py's own handling."""

    def __init__(self, client: Any, body: str) -> None:
        self.script = client.register_script(body)
        self._cluster = client if is_cluster(client) else None

    def __call__(self, keys: list[str], args: list[Any], client: Any) -> Any:
        if client is not self._cluster:
            return self.script(keys=keys, args=args, client=client)
        from redis.exceptions import NoScriptError

        try:
            return client.evalsha(self.script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.script.script, len(keys), *keys, *args)


#: how :class:`RedisLink` names the down state of a key's slot that no master serves
SLOT = "slot "


def _described(node: str) -> str:
    """A down-state name for a log line: ``master 10.0.0.1:6379`` or ``slot 1234``."""
    return node if node.startswith(SLOT) else f"master {node}"


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
        #: a cluster's masters found gone by a command about one of their keys: name → (why, next
        #: probe); a key's slot with no master in the client's slot table is there as ``slot N``
        self._nodes_down: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._gone, self._errors = _redis_errors()
        self.cluster = is_cluster(client)
        self.failures = 0
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        """Whether every command may go out: no Redis, and no master of a cluster, known gone.
        A master replaced by its promoted replica is no longer the cluster's: forgotten here."""
        if self._nodes_down:
            try:
                masters = {node.name for node in self.client.get_primaries()}
            except Exception:  # pragma: no cover - the client's own view; nothing to prune by
                masters = set(self._nodes_down)
            with self._lock:  # a slot's entry stays until a command about it goes through
                for name in [n for n in self._nodes_down if n not in masters and not n.startswith(SLOT)]:
                    del self._nodes_down[name]
        return self._down_reason is None and not self._nodes_down

    def call(self, what: str, fn: Callable[[Any], T], *, key: str | None = None) -> T:
        """Run ``fn(client)``; raise :class:`RedisUnavailable` fast while the link is down, or on a
        cluster while the master serving ``key`` (the one key ``fn`` is about) is.

        ``fn`` runs with the calling thread's step lock let go (:func:`~llmlab.steplock.outside_step_lock`):
        other requests' stages go on while this one waits for Redis.  So ``fn`` talks to Redis
        and touches nothing else of the process."""
        reason = self._down_reason
        if reason is not None and self.clock() < self._next_probe:
            raise RedisUnavailable(self.url, reason)
        node = self._node_of(key) if self.cluster and key is not None else None
        if node is not None:
            down = self._nodes_down.get(node)
            if down is not None and self.clock() < down[1]:
                raise RedisUnavailable(self.url, down[0])
        try:
            result = outside_step_lock(fn, self.client)
        except self._errors as exc:
            self._failed(what, exc, node)
            raise RedisUnavailable(self.url, f"{type(exc).__name__}: {exc}",
                                   gone=_is_gone(exc, self._gone)) from exc
        if reason is not None or (node is not None and node in self._nodes_down):
            self._recovered(node)
        return result

    def probe_now(self) -> None:
        """Let the next command through to a Redis (or cluster master) known down, without
        waiting out ``retry_interval_s``: for a last write before the process goes, which has
        no later probe to wait for."""
        with self._lock:
            self._next_probe = 0.0
            self._nodes_down = {node: (why, 0.0) for node, (why, _) in self._nodes_down.items()}

    def _node_of(self, key: str) -> str | None:
        """The name of the master the cluster client sends ``key``'s commands to, or ``slot N``
        when its slot table has no master for the key (the command itself will say why); None
        only when the client cannot even hash the key."""
        try:
            return self.client.get_node_from_key(key).name
        except Exception:  # a slot not covered
            try:
                return f"{SLOT}{self.client.keyslot(key)}"
            except Exception:  # pragma: no cover - a key the client cannot encode: the command says so
                return None

    def _failed(self, what: str, exc: BaseException, node: str | None = None) -> None:
        self.failures += 1
        if not _is_gone(exc, self._gone):  # the server answered (e.g. OOM, READONLY): keep the link up
            self.logs.warning(f"error:{what}", "llmlab: Redis at %s refused %s: %s: %s", self.url, what,
                              type(exc).__name__, exc)
            return
        if self.cluster and node is None:  # about no one key: raised to the caller, no master to mark
            self.logs.warning(f"keyless:{what}", "llmlab: Redis Cluster %s could not complete %s (%s: %s); "
                                                 "the masters' state is left to the commands about their keys",
                              self.url, what, type(exc).__name__, exc)
            return
        down = (f"{type(exc).__name__}: {exc}", self.clock() + self.retry_interval_s)
        with self._lock:
            if node is None:
                was_up = self._down_reason is None
                self._down_reason, self._next_probe = down
            else:
                was_up = node not in self._nodes_down
                self._nodes_down[node] = down
        self._drop_connections(node)
        if not was_up:
            return
        if node is None:
            self.logs.warning("down", "llmlab: Redis at %s is unreachable (%s during %s); degrading and retrying "
                                      "every %.1f s", self.url, type(exc).__name__, what, self.retry_interval_s)
        else:
            self.logs.warning(f"down:{node}", "llmlab: Redis Cluster %s of %s is unreachable (%s during %s); "
                                              "the keys it serves degrade, retrying every %.1f s", _described(node),
                              self.url, type(exc).__name__, what, self.retry_interval_s)

    def _drop_connections(self, node: str | None) -> None:
        """Pooled connections to a dead server are stale: reconnect from scratch next time (the
        dead master's only, on a cluster; the client rediscovers the topology by itself)."""
        try:
            if not self.cluster:
                self.client.connection_pool.disconnect()
            elif node is None:
                self.client.disconnect_connection_pools()
            elif not node.startswith(SLOT):  # a slot without a master has no connections of its own
                found = self.client.get_node(node_name=node)
                if found is not None and found.redis_connection is not None:
                    found.redis_connection.connection_pool.disconnect()
        except Exception:  # pragma: no cover - best effort
            pass

    def _recovered(self, node: str | None = None) -> None:
        with self._lock:
            link_was_down = self._down_reason is not None
            self._down_reason = None  # a command went through: the link is up, whichever key it was about
            node_was_down = node is not None and self._nodes_down.pop(node, None) is not None
        if link_was_down or node_was_down:
            self.reconnects += 1
        if link_was_down:
            log.warning("llmlab: reconnected to Redis at %s", self.url)
        if node_was_down:
            log.warning("llmlab: reconnected to Redis Cluster %s of %s", _described(node), self.url)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover - best effort
            pass
