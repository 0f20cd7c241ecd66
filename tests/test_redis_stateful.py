"""The stateful machines of ``test_stateful_*.py`` on a real redis-server: the Redis budgets and
rate limiter run every step next to the in-memory ones (they must decide alike, as the README
says: "in memory and in Redis alike"), and the Redis exact cache against the same reference as
the in-memory store (no LRU; stale reads end ``stale_grace_s`` after the TTL).  Each example
gets a key prefix of its own on one module-wide server."""
from __future__ import annotations

import uuid

import pytest
from hypothesis.stateful import run_state_machine_as_test

from llmlab.backends import from_url
from llmlab.backends.redis_budgets import RedisBudgets
from llmlab.backends.redis_cache import RedisStore
from llmlab.backends.redis_ratelimit import RedisRateLimiter
from llmlab.budgets import MemoryBudgets
from redis_fixtures import prefix, redis_server, redis_url  # noqa: F401
from test_stateful_budgets import SETTINGS as BUDGET_SETTINGS, BudgetMachine
from test_stateful_cache_store import SETTINGS as STORE_SETTINGS, TTL, StoreMachine
from test_stateful_ratelimit import DEFAULT, PER_PLAN, PER_TENANT, SETTINGS as LIMIT_SETTINGS
from test_stateful_ratelimit import RateLimiterMachine, memory_limiter

pytestmark = pytest.mark.redis
GRACE = 50.0


def fresh() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def link(redis_url, prefix):
    backends = from_url(redis_url, prefix)
    yield backends.link
    backends.close()


def test_redis_budgets_step_for_step_with_memory_and_the_reference(link):
    class OnRedis(BudgetMachine):
        make_backends = staticmethod(lambda: [MemoryBudgets(), RedisBudgets(link, prefix=fresh())])

    run_state_machine_as_test(OnRedis, settings=BUDGET_SETTINGS)


def test_redis_rate_limiter_step_for_step_with_memory_and_the_reference(link):
    class OnRedis(RateLimiterMachine):
        make_limiters = staticmethod(lambda: [memory_limiter(), RedisRateLimiter(link, PER_PLAN, PER_TENANT, DEFAULT,
                                                                                 prefix=fresh())])

    run_state_machine_as_test(OnRedis, settings=LIMIT_SETTINGS)


def test_redis_store_against_the_reference(link):
    class OnRedis(StoreMachine):
        make_store = staticmethod(lambda: RedisStore(link, prefix=fresh(), ttl_s=TTL, stale_grace_s=GRACE))
        capacity = None
        grace = GRACE

    run_state_machine_as_test(OnRedis, settings=STORE_SETTINGS)
