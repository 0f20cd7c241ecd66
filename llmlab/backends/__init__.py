"""Shared state for several gateway replicas: the exact cache, budgets and rate limits in Redis.

The in-memory defaults serve one process.  Several replicas behind a load balancer need one
cache, one budget ledger and one set of rate-limit buckets; :func:`from_url` builds all three
on one Redis connection, ready to hand to the gateway::

    from llmlab.backends import from_url
    shared = from_url("redis://127.0.0.1:6379/0", prefix="llmlab")
    gw = Gateway(..., **shared.gateway_kwargs())      # cache_store, budget_backend, rate_limiter

A Redis Cluster (ElastiCache / MemoryStore in cluster mode) is named by its scheme,
``redis+cluster://[:password@]host:port`` or ``rediss+cluster://…`` (TLS): any one node's
address, the client discovers the rest (``redis.cluster.RedisCluster``).  A cluster has only
database 0.  Its key layout differs from one Redis' in one place, so that each multi-key
script finds its keys in one hash slot: the budget keys wrap the tenant in a hash tag
(``{prefix}:budget:{<tenant>}:{YYYY-MM}`` with literal braces around the tenant), so one
tenant's hashes and lease sets, this month's and the last, share a slot while tenants spread
over the masters; ``prefix`` may then hold no braces of its own.  The other keys are one key
per command and keep their names: cache entries and semantic streams spread over the masters
key by key (a tenant with most of the traffic does not fill one node).  On a single Redis
every name is as it always was (a budget hash renamed on upgrade would restart its tenant's
month at zero); moving a deployment from one Redis to a cluster therefore starts budgets
afresh unless their keys are copied under the tagged names (``RedisBudgets.keys`` gives both).

Failure policy, decided once here:

* Redis unreachable at start-up: ``on_unavailable="raise"`` (default) raises
  :class:`RedisUnavailable` naming the URL; ``"degrade"`` logs a warning and returns the
  in-memory defaults (``.degraded`` is True, ``.reason`` says why).  A Redis that answers but
  refuses the URL's settings (a wrong password or user, a database it does not have) is a
  :class:`~llmlab.errors.ConfigError` either way: degrading would hide a typo behind budgets
  that are no longer shared between replicas.
* Redis dying at run time never raises out of the gateway: the cache becomes a miss and drops
  writes (rate-limited warnings), budgets fail *closed* (``budgets_on_error="closed"``:
  refuse rather than spend what cannot be counted), rate limits fail *open*
  (``rate_limits_on_error="open"``); the client reconnects by itself once Redis is back.
* Memory: with ``maxmemory`` set, use ``volatile-lru`` (the managed services' default) or
  ``noeviction``.  Cache entries, semantic streams and rate buckets carry TTLs and are the
  ones a ``volatile-*`` policy evicts; the month being counted has none, so its budget
  hashes never are.  Under ``noeviction`` a full Redis drops cache writes (logged) and still
  records budgets (their scripts write first with a command that cannot grow memory, after
  which Redis lets a script finish).  ``allkeys-*`` evicts budget hashes like cache entries:
  the tenant's month restarts at zero spend and the cap no longer holds; :func:`from_url`
  warns about it at start-up.

``redis`` (the Python client) is an optional dependency: ``pip install 'llmlab[redis]'``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from .. import _validate as v
from ..budgets import MemoryBudgets
from ..cache.store import MemoryStore
from ..errors import ConfigError
from ..ratelimit import RateLimit, RateLimiter, check_limits
from .codec import CodecError, decode_entry, encode_entry
from .redis_budgets import MAX_LEASE_S
from .redis_link import MAX_TTL_S, RedisLink, RedisUnavailable, redact_url

if TYPE_CHECKING:  # what type checkers and IDEs see of the classes loaded on first use (else: Any)
    from .redis_budgets import RedisBudgets
    from .redis_cache import RedisStore
    from .redis_ratelimit import RedisRateLimiter
    from .redis_semantic import SharedSemanticCache

__all__ = ["Backends", "CodecError", "RedisBudgets", "RedisLink", "RedisRateLimiter", "RedisStore",
           "RedisUnavailable", "SharedSemanticCache", "decode_entry", "encode_entry", "from_url", "redact_url"]

log = logging.getLogger("llmlab.backends")

ON_UNAVAILABLE = ("raise", "degrade")
SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
CLUSTER_SUFFIX = "+cluster"
MAX_TIMEOUT_S = 60.0  # the longest one command may keep its request waiting
MAX_RETRY_INTERVAL_S = 3_600.0  # the link probes a dead Redis at least hourly, so it does reconnect
URL_FORMS = ("redis://[:password@]host[:port][/db], rediss://…, unix://… or, for a Redis Cluster, "
             "redis+cluster://[:password@]host[:port] or rediss+cluster://…")
CLUSTER_FORM = "a redis+cluster:// or rediss+cluster:// URL naming any node of a Redis Cluster, database 0 or none"
ENCODE_HINT = ("the URL does not parse as host and password: percent-encode the password's special characters "
               "(urllib.parse.quote(password, safe=''))")


def __getattr__(name: str) -> Any:  # the Redis classes import redis-py only when asked for
    if name == "RedisStore":
        from .redis_cache import RedisStore
        return RedisStore
    if name == "RedisBudgets":
        from .redis_budgets import RedisBudgets
        return RedisBudgets
    if name == "RedisRateLimiter":
        from .redis_ratelimit import RedisRateLimiter
        return RedisRateLimiter
    if name == "SharedSemanticCache":
        from .redis_semantic import SharedSemanticCache
        return SharedSemanticCache
    raise AttributeError(name)


@dataclass
class Backends:
    """The three shared backends (or their in-memory stand-ins when ``degraded``)."""

    url: str
    cache_store: Any
    budgets: Any
    rate_limiter: Any
    link: RedisLink | None = None
    degraded: bool = False
    reason: str | None = None
    semantic_cache: Any = field(default=None)

    def gateway_kwargs(self) -> dict[str, Any]:
        """``Gateway(**backends.gateway_kwargs())``: cache_store, budget_backend, rate_limiter
        (and semantic_cache when one was given to :func:`from_url`)."""
        out = {"cache_store": self.cache_store, "budget_backend": self.budgets, "rate_limiter": self.rate_limiter}
        if self.semantic_cache is not None:
            out["semantic_cache"] = self.semantic_cache
        return out

    @property
    def client(self) -> Any:
        return None if self.link is None else self.link.client

    def close(self) -> None:
        close = getattr(self.budgets, "close", None)
        if close is not None:  # stops its lease renewals
            close()
        if self.link is not None:
            self.link.close()

    def __enter__(self) -> "Backends":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_client(url: str, socket_timeout_s: float, connect_timeout_s: float) -> Any:
    """A ``redis.Redis``, or for a ``+cluster`` scheme a ``redis.cluster.RedisCluster``.

    The cluster client dials at construction (it reads the topology from a node): a cluster
    that cannot be reached raises :class:`RedisUnavailable` here, caused by what the node said,
    so that :func:`from_url` handles it as it handles a failed first ping."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("url", redact_url(url), "a Redis URL with the redis client installed",
                          hint="pip install 'llmlab[redis]'") from exc
    scheme, _, rest = url.partition("://")
    # no client-side retries: RedisLink decides, so a dead Redis costs one failed attempt
    options = dict(socket_timeout=socket_timeout_s, socket_connect_timeout=connect_timeout_s,
                   retry=Retry(NoBackoff(), 0), health_check_interval=0)
    try:
        if not scheme.endswith(CLUSTER_SUFFIX):
            return redis.Redis.from_url(url, **options)
        from redis.cluster import RedisCluster
        from redis.exceptions import RedisClusterException
        try:
            return RedisCluster.from_url(f"{scheme[:-len(CLUSTER_SUFFIX)]}://{rest}", **options)
        except (RedisClusterException, redis.RedisError) as exc:
            failure: BaseException = exc
    except ValueError as exc:
        if "@" not in url:
            raise ConfigError("url", redact_url(url), URL_FORMS, hint=str(exc)) from exc
        # redis-py's message quotes the piece it could not parse (a port, a db), which may be part
        # of the password: neither repeat it nor chain it
        raise ConfigError("url", redact_url(url), URL_FORMS, hint=ENCODE_HINT) from None
    _cluster_refused(url, failure)
    cause = failure.__cause__ or failure
    raise RedisUnavailable(url, f"{type(cause).__name__}: {cause}") from cause


def _cluster_refused(url: str, exc: BaseException) -> None:
    """Raise :class:`ConfigError` when the cluster client refused the URL itself (a database
    other than 0), found a Redis without cluster mode behind it, or was refused the topology
    (``CLUSTER SLOTS``: an ACL that denies it).  redis-py reports the last two alike ("Cluster
    mode is not enabled on this node"), with the node's answer as the exception's context."""
    text = str(exc)
    if "db" in text and "cluster mode" in text:
        raise ConfigError("url", redact_url(url), CLUSTER_FORM, hint="a Redis Cluster has only database 0") from None
    inner = exc.__cause__ or exc
    if "Cluster mode is not enabled" not in str(inner):
        return
    answer = inner.__context__
    if answer is not None and "cluster support disabled" not in str(answer):
        raise ConfigError("url", redact_url(url), "a password and user this Redis Cluster accepts",
                          hint=f"Redis answered {type(answer).__name__}: {answer}") from None
    raise ConfigError("url", redact_url(url), CLUSTER_FORM,
                      hint="this Redis runs without cluster mode: name it with redis:// or rediss://") from None


def _refused_settings(exc: BaseException | None) -> bool:
    """Whether Redis answered the first ping by refusing the URL's settings (a wrong password or
    user, an ACL that denies it, a database number the server does not have): a configuration
    mistake, not an outage.  A Redis that is loading its data, failing over or busy running a
    script (``BUSY``) is an outage.  ``BUSY`` is a plain ResponseError like the refusals of a
    database (standalone: "DB index is out of range"; a cluster node: "SELECT is not allowed in
    cluster mode") or of a client setting: it is told apart by its code, not the others by
    their wording."""
    if exc is None:
        return False
    from redis import exceptions as rx

    return (isinstance(exc, (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError,
                             rx.AuthenticationWrongNumberOfArgsError))
            or (type(exc) is rx.ResponseError and not str(exc).startswith("BUSY")))


def _check_userinfo(url: str) -> None:
    """Refuse a URL whose password holds an unencoded ``/``, ``?`` or ``#``.

    ``urlsplit`` (and redis-py with it) ends the host part at the first of those, so the rest
    of the password becomes the path, query or fragment and its first part the host or port:
    the client then dials a host named after the password and says so in its error.
    """
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = ""
    if "@" in url.partition("://")[2] and "@" not in netloc:
        raise ConfigError("url", redact_url(url), URL_FORMS, hint=ENCODE_HINT)


def _memory_infos(link: RedisLink) -> list[Mapping[str, Any]]:
    """``INFO memory`` of the Redis, or of every master of a cluster (each has its own policy)."""
    if not link.cluster:
        return [link.client.info("memory")]
    infos = link.client.info("memory", target_nodes=link.client.PRIMARIES)
    if infos and all(isinstance(one, Mapping) for one in infos.values()):
        return list(infos.values())  # node name -> that node's INFO
    return [infos]  # one master answered: its INFO itself


def _check_not_a_cluster(link: RedisLink, url: str) -> None:
    """Refuse a plain URL that names a Redis Cluster node: such a client sends every key to that
    node, which refuses the keys of other nodes' slots (``MOVED``) and every budget script
    (``CROSSSLOT``): cache misses and refused budgets that only look like an outage."""
    if link.cluster:
        return
    try:  # not through the link: a user whose ACL forbids INFO is not a cluster problem
        enabled = str(link.client.info("cluster").get("cluster_enabled", "0")) == "1"
    except Exception:  # noqa: BLE001 - INFO renamed away or forbidden: nothing to check against
        return
    if enabled:
        link.close()
        raise ConfigError("url", redact_url(url), "a redis:// or rediss:// URL of a Redis without cluster mode",
                          hint="this Redis is a cluster node: name it with redis+cluster:// or rediss+cluster://")


def _warn_if_evicting(link: RedisLink) -> str | None:
    """Warn when a full Redis would evict budget hashes; return the policy that does.

    ``allkeys-*`` picks among all keys: an evicted budget hash is a tenant's month spend gone,
    read back as zero.  ``volatile-*`` spares them (the month being counted has no TTL) and
    ``noeviction`` evicts nothing.  ``INFO memory`` is read because managed Redis often
    disables ``CONFIG``; on a cluster, every master's.
    """
    try:  # not through the link: a user whose ACL forbids INFO would get a warning about INFO
        infos = _memory_infos(link)
    except Exception:  # noqa: BLE001 - INFO renamed away or forbidden: nothing to check against
        return None
    evicting = [(str(info.get("maxmemory_policy", "noeviction")), int(info.get("maxmemory", 0) or 0))
                for info in infos]
    evicting = [(policy, maxmemory) for policy, maxmemory in evicting
                if maxmemory > 0 and policy.startswith("allkeys-")]
    if not evicting:
        return None
    policy, maxmemory = evicting[0]
    log.warning("llmlab: Redis at %s (maxmemory=%d bytes, maxmemory-policy=%s) evicts budget hashes like cache "
                "entries when full: an evicted one restarts a tenant's month at zero spend and its cap no longer "
                "holds; use maxmemory-policy volatile-lru (the cache, semantic streams and rate buckets have TTLs "
                "and are evicted instead) or noeviction", link.url, maxmemory, policy)
    return policy


def _check_prefix(field: str, prefix: Any, cluster: bool) -> None:
    """A key prefix ``from_url`` can use: ``field`` names it in the error."""
    if not isinstance(prefix, str) or not prefix or any(c.isspace() or c in "*?[]\\" for c in prefix):
        # a glob character or backslash (Redis' glob escape) would make clear()'s SCAN pattern
        # match another prefix's keys: 'a\\' + ':cache:*' matches prefix 'a''s cache
        raise ConfigError(field, prefix, "a non-empty string without spaces, glob characters or backslashes")
    if cluster and any(c in "{}" for c in prefix):
        # a brace in the prefix would be the hash tag of every key: all of them in one slot
        raise ConfigError(field, prefix, "a prefix without braces on a Redis Cluster (llmlab places the "
                                         "hash tags: the tenant's, in the budget keys)")


def from_url(url: str, prefix: str = "llmlab", *, on_unavailable: str = "raise",
             cache_ttl_s: float = 3_600.0, stale_grace_s: float = 86_400.0,
             budgets_on_error: str = "closed", rate_limits_on_error: str = "open",
             per_plan: Mapping[str, RateLimit] | None = None, per_tenant: Mapping[str, RateLimit] | None = None,
             default_limit: RateLimit | None = None, budget_lease_s: float = 600.0,
             socket_timeout_s: float = 0.5, connect_timeout_s: float = 0.5, retry_interval_s: float = 1.0,
             log_interval_s: float = 10.0, cache_capacity: int = 10_000, semantic_cache: Any = None,
             cache_prefix: str | None = None) -> Backends:
    """Build Redis-backed ``cache_store``, ``budgets`` and ``rate_limiter`` sharing one connection.

    ``prefix`` namespaces every key (``{prefix}:cache:…``, ``{prefix}:budget:…``,
    ``{prefix}:ratelimit:…``, ``{prefix}:semantic:…``) so several deployments can share one Redis.
    ``cache_prefix`` (default: ``prefix``) namespaces the cached answers alone (exact and
    semantic): a cache key covers the request, not the gateway's configuration — which model a
    deployment calls, its parameters, the router — so gateways that would answer one request
    differently (a canary on a new model, staging) keep their answers apart under their own
    ``cache_prefix`` while sharing the tenants' budgets and rate limits under ``prefix``.  Rate limits are
    configured here (``per_plan``, ``per_tenant``, ``default_limit``) the way they are for
    :class:`~llmlab.ratelimit.RateLimiter`.  ``cache_capacity`` only sizes the in-memory
    stand-in when degraded (in Redis, entries expire by their TTL).  Pass a
    :class:`~llmlab.cache.semantic.SemanticCache` as ``semantic_cache`` to share it between
    replicas (:class:`~llmlab.backends.redis_semantic.SharedSemanticCache`).  Durations are
    finite: TTLs and ``log_interval_s`` up to 1e9 s, socket and connect timeouts up to 60 s,
    ``retry_interval_s`` up to an hour, ``budget_lease_s`` up to a day (a hold whose process
    died is released a lease after its last renewal; see
    :class:`~llmlab.backends.redis_budgets.RedisBudgets`).  Every argument is checked before
    connecting, so a bad one is the same ConfigError whether Redis is up, down or degraded.
    ``redis+cluster://`` or ``rediss+cluster://`` names a Redis Cluster (any one node); the key
    layout it implies is in this module's docstring.
    """
    if not isinstance(url, str) or url.split("://", 1)[0] not in SCHEMES or "://" not in url:
        # not repeated when no string: bytes would be shown as they are, password and all
        raise ConfigError("url", redact_url(url) if isinstance(url, str) else
                          url if url is None else f"<{type(url).__name__}>",
                          "a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL")
    cluster = url.split("://", 1)[0].endswith(CLUSTER_SUFFIX)
    _check_prefix("prefix", prefix, cluster)
    if cache_prefix is not None:
        _check_prefix("cache_prefix", cache_prefix, cluster)
    v.choice("on_unavailable", on_unavailable, ON_UNAVAILABLE)
    v.choice("budgets_on_error", budgets_on_error, ("closed", "open"))
    v.choice("rate_limits_on_error", rate_limits_on_error, ("open", "closed"))
    # finite on purpose: an infinite TTL or timeout raised OverflowError building the client or the
    # store, and an infinite retry interval silently never reconnected after the first failure
    v.number("cache_ttl_s", cache_ttl_s, lo=0.0, lo_open=True, hi=MAX_TTL_S)
    v.number("stale_grace_s", stale_grace_s, lo=0.0, hi=MAX_TTL_S)
    v.number("socket_timeout_s", socket_timeout_s, lo=0.0, lo_open=True, hi=MAX_TIMEOUT_S)
    v.number("connect_timeout_s", connect_timeout_s, lo=0.0, lo_open=True, hi=MAX_TIMEOUT_S)
    v.number("retry_interval_s", retry_interval_s, lo=0.0, hi=MAX_RETRY_INTERVAL_S)
    v.number("log_interval_s", log_interval_s, lo=0.0, lo_open=True, hi=MAX_TTL_S)
    # the rest as well, before connecting: these were checked only by the backends built on the
    # path taken (a lease of -1 or NaN passed while Redis was down, a capacity of 0 while it was up)
    v.number("budget_lease_s", budget_lease_s, lo=0.0, lo_open=True, hi=MAX_LEASE_S)
    v.integer("cache_capacity", cache_capacity, lo=1)
    check_limits("per_plan", per_plan)
    check_limits("per_tenant", per_tenant)
    if default_limit is not None and not isinstance(default_limit, RateLimit):
        raise ConfigError("rate_limiter.default", default_limit, "a llmlab.RateLimit")
    if semantic_cache is not None and not all(callable(getattr(semantic_cache, name, None))
                                              for name in ("lookup", "store", "lookup_last_resort")):
        raise ConfigError("semantic_cache", semantic_cache if isinstance(semantic_cache, (str, int, float))
                          else type(semantic_cache).__name__, "a llmlab.cache.semantic.SemanticCache, or None")

    _check_userinfo(url)
    link: RedisLink | None = None
    try:
        client = _make_client(url, socket_timeout_s, connect_timeout_s)
        link = RedisLink(client, url, retry_interval_s=retry_interval_s, log_interval_s=log_interval_s)
        link.call("ping", lambda r: r.ping())
    except RedisUnavailable as exc:
        if link is not None:
            link.close()
        if _refused_settings(exc.__cause__):  # no wait fixes these, and in-memory budgets would not be shared
            raise ConfigError("url", redact_url(url), "a password, user and database this Redis accepts",
                              hint=f"Redis answered {exc.reason}; on_unavailable='degrade' covers a Redis that "
                                   "cannot be reached, not one that refuses these settings") from exc
        if on_unavailable == "raise":
            raise RedisUnavailable(url, exc.reason, hint="start redis-server, fix the URL, or pass "
                                                         "on_unavailable='degrade' to run on in-memory backends") from exc
        log.warning("llmlab: Redis at %s is unavailable (%s); degrading to in-memory cache, budgets and rate "
                    "limits (not shared between replicas)", redact_url(url), exc.reason)
        return Backends(redact_url(url), MemoryStore(cache_capacity, cache_ttl_s), MemoryBudgets(),
                        RateLimiter(per_plan, per_tenant, default_limit), None, True, str(exc), semantic_cache)

    _check_not_a_cluster(link, url)
    _warn_if_evicting(link)
    from .redis_budgets import RedisBudgets
    from .redis_cache import RedisStore
    from .redis_ratelimit import RedisRateLimiter

    shared_semantic = None
    if semantic_cache is not None:
        from .redis_semantic import SharedSemanticCache
        shared_semantic = SharedSemanticCache(semantic_cache, link, prefix=cache_prefix or prefix,
                                              stale_grace_s=stale_grace_s, answers_only=True)
    return Backends(
        redact_url(url),
        RedisStore(link, prefix=cache_prefix or prefix, ttl_s=cache_ttl_s, stale_grace_s=stale_grace_s,
                   answers_only=True),
        RedisBudgets(link, prefix=prefix, on_error=budgets_on_error, lease_s=budget_lease_s),
        RedisRateLimiter(link, per_plan, per_tenant, default_limit, prefix=prefix, on_error=rate_limits_on_error),
        link, semantic_cache=shared_semantic,
    )
