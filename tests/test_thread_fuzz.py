"""The sync API as a whole under threads: ``complete()`` and ``stream()`` called from many threads
at once, as a WSGI server or a thread pool calls them.

Those threads share one gateway's in-memory state under its step lock (llmlab/steplock.py), held
while the pipeline runs between effects and let go around provider calls and user code.  A seeded
fuzz serves a few hundred requests from a pool of threads through litellm against the
fault-injecting fake provider, with every stage on (tests/gateway_fuzz.py, shared with the async
fuzz), callers that leave a stream midway (``break``, ``close()``, a ``with`` block, an iterator
dropped, an iterator left in a reference cycle for the garbage collector), streams whose chunks
are pulled from a different thread each time (as Starlette iterates a sync generator in its
thread pool) and a guard that serves a request of its own on its thread or another one.  Then it
checks what the async fuzz checks, and that every thread finished, no thread or connection was
left behind and nothing warned.  The regressions it found are pinned by the tests before it.
"""
from __future__ import annotations

import gc
import logging
import random
import sys
import threading
import time
import traceback
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from gateway_fuzz import (TENANTS, Records, Watch, answer_number, check, draw_caps, earlier_objects_frozen, fault_plan,
                          fuzz_gateway, fuzz_request, replier)

from llmlab import BudgetPolicy, Deployment, FixedRouter, Gateway, RateLimit, RateLimiter, Request, RetryPolicy
from llmlab.guardrails import PIIMaskingGuard
from llmlab.guardrails.base import InputVerdict
from llmlab.live import import_litellm
from llmlab.runloop import wait_for_collected_streams
from llmlab.scripted import FakeClock, ScriptedDriver
from llmlab.testing import FakeProvider
from redis_fixtures import prefix, redis_server, redis_url  # noqa: F401

FUZZ_SEED = 72  # any seed must pass; this one mixes every fault and way of leaving (≈ 6–12 s); it failed on the unfixed runloop before questions about images joined the draws
THREADS = 12
#: how long every thread may take to finish its requests before the run counts as deadlocked
#: (generous: a run takes ≈ 10 s; a hang is for good)
DEADLINE_S = 120.0
#: process-wide threads started by the first calls, alive as long as the process: litellm's logging
#: pool, and the thread llmlab finishes collected streams on (llmlab.runloop._Closer)
PROCESS_THREADS = ("litellm-", "llmlab-stream-closer", "llmlab-deadlines")  # one each per process, on first use
KINDS = ("complete", "complete", "stream", "stream", "stream_break", "stream_close", "stream_with", "stream_drop",
         "stream_hop", "stream_cycle")


@pytest.fixture(scope="module", autouse=True)
def _litellm():
    import_litellm()  # paid once, outside the timed parts


def test_a_stream_left_in_a_reference_cycle_is_still_recorded_once_the_collector_closes_it(make_gateway):
    """A stream whose caller left it unclosed inside a reference cycle (an iterator kept on an
    object that refers to itself, a frame kept by a stored exception) is closed by the garbage
    collector, which finalises the objects of a cycle in no set order: the pipeline's generator,
    made first, was closed first.  The request then had no ledger record and its rate-limit take
    was never settled, while its budget hold was (spend without a record).  The pipeline of a
    stream being read is now held from outside the cycle until the stream is done or closed."""
    gw = make_gateway(budget=BudgetPolicy(caps={"acme": 1.0}),
                      rate_limiter=RateLimiter(default=RateLimit(tpm=10_000)), default_max_tokens=200)
    response = gw.stream("Where is my order 1234?", tenant="acme", request_id="left", max_tokens=50)
    held: dict = {"chunks": iter(response)}
    held["self"] = held
    assert isinstance(next(held["chunks"]), str)
    del held, response
    gc.collect()
    assert wait_for_collected_streams(timeout=10)
    [outcome] = list(gw.ledger)
    assert outcome.request_id == "left" and outcome.error.code == "client_disconnected"
    now = gw.clock()
    assert gw.budgets.spent("acme", now) == pytest.approx(outcome.cost_usd) and outcome.cost_usd > 0
    assert gw.budgets.reserved("acme", now) == 0
    bucket = gw.pipeline.rate_limiter._buckets[("acme", "tpm", 10_000)]
    used = sum(a.prompt_tokens + a.completion_tokens for a in outcome.attempts)
    assert bucket.level == pytest.approx(10_000 - used)  # the take was settled to what the call used


class PooledDriver(ScriptedDriver):
    """A scripted driver whose streams close their response under a lock that is not re-entrant,
    as httpcore's connection pool does; a close that cannot get it in time is noted as stuck."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.pool = threading.Lock()
        self.stuck: list[str] = []

    def stream_call(self, call):
        try:
            return (yield from super().stream_call(call))
        finally:
            if self.pool.acquire(timeout=2):
                self.pool.release()
            else:
                self.stuck.append(call.deployment.name)


def test_a_stream_the_collector_closes_inside_the_connection_pool_does_not_hang_that_thread(clock):
    """The garbage collector runs on whichever thread allocates when a collection is due — also
    inside httpcore's connection pool, with the pool's lock held.  A stream left unclosed in a
    reference cycle was closed right there: its HTTP response's close took the same lock, and the
    thread hung for good (the threaded fuzz's deadlock).  Now the collector only queues it, and
    the stream is closed and recorded on a thread of its own once the lock is free."""
    driver = PooledDriver(clock)
    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock,
                 driver=driver, budget=BudgetPolicy(caps={"acme": 1.0}))
    response = gw.stream("Where is my order 1234?", tenant="acme", request_id="left", max_tokens=50)
    held: dict = {"chunks": iter(response)}
    held["self"] = held
    assert isinstance(next(held["chunks"]), str)
    del held, response
    with driver.pool:  # as a thread inside the pool is when a collection starts
        gc.collect()
    assert wait_for_collected_streams(timeout=10)
    assert driver.stuck == []
    [outcome] = list(gw.ledger)
    assert outcome.request_id == "left" and outcome.error.code == "client_disconnected"
    assert gw.budgets.reserved("acme", clock()) == 0


@dataclass(frozen=True)
class Job:
    """One request of the run: how its caller reads it, when it starts, after how many chunks it leaves."""

    kind: str
    request: Request
    start_s: float
    leave: int


def jobs(rng: random.Random, n: int) -> list[Job]:
    """The run's requests, in start order, all drawn from the seed before any thread starts."""
    out = []
    for i in range(n):
        kind = rng.choice(KINDS)
        request = fuzz_request(rng, rng.choice(TENANTS), f"r{i}-{kind}")
        out.append(Job(kind, request, rng.uniform(0, 3.0), rng.randint(1, 6)))
    return sorted(out, key=lambda job: job.start_s)


def graded(text: str, request: Request) -> bool:
    """The cascade's acceptance check: decided by the answer alone, whichever thread asks."""
    return (answer_number(text) or 0) % 2 == 0


class Relay:
    """An input guard that serves a request of its own through the same gateway before passing a
    question about Busan on: on its own thread (re-entering the step lock it let go) or on
    another thread it waits for (which must get the lock meanwhile), as the answer decides."""

    name = "relay"

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self.gw: Gateway | None = None

    def check_input(self, messages):
        text = str(messages[-1].get("content", ""))
        if "Busan" in text and self.gw is not None:
            tenant = TENANTS[len(text) % len(TENANTS)]
            if zlib.crc32(text.encode()) % 2:
                self.gw.complete("What are your opening hours?", tenant=tenant)
            else:
                self.pool.submit(self.gw.complete, "What are your opening hours?", tenant=tenant).result()
        return InputVerdict(tuple(messages))


class Callers:
    """The callers of the run: each job read as its kind says, what each stream reader received."""

    def __init__(self, gw: Gateway, hop: ThreadPoolExecutor) -> None:
        self.gw = gw
        self.hop = hop
        self.received: dict[str, list] = {}
        self.finished: set[str] = set()

    def run(self, job: Job) -> None:
        rid, kind = job.request.request_id, job.kind
        if kind == "complete":
            self.gw.complete(job.request)
            return
        pieces = self.received.setdefault(rid, [])
        response = self.gw.stream(job.request)
        if kind == "stream":
            pieces.extend(response)
            self.finished.add(rid)
        elif kind == "stream_break":
            for piece in response:
                pieces.append(piece)
                if len(pieces) >= job.leave:
                    break
            else:
                self.finished.add(rid)
        elif kind == "stream_with":
            with response:
                self._take(iter(response), job, pieces)
        elif kind == "stream_close":
            self._take(iter(response), job, pieces)
            response.close()
        elif kind == "stream_drop":  # left unclosed: dropping the last reference closes it
            self._take(iter(response), job, pieces)
        elif kind == "stream_cycle":  # left unclosed in a reference cycle: a collection on any thread closes it
            held: dict = {"chunks": iter(response)}
            held["self"] = held
            self._take(held["chunks"], job, pieces)
        else:  # stream_hop: every chunk pulled on whichever pool thread is free
            chunks = iter(response)
            while len(pieces) < job.leave:
                piece = self.hop.submit(next, chunks, None).result()
                if piece is None:
                    self.finished.add(rid)
                    break
                pieces.append(piece)

    def _take(self, chunks, job: Job, pieces: list) -> None:
        for piece in chunks:
            pieces.append(piece)
            if len(pieces) >= job.leave:
                return
        self.finished.add(job.request.request_id)


def serve(todo: list[Job], callers: Callers, t0: float, errors: list[str]) -> None:
    """A worker thread: take the next job, wait for its start, serve it; a raise is a problem."""
    while True:
        try:
            job = todo.pop(0)
        except IndexError:
            return
        time.sleep(max(0.0, t0 + job.start_s - time.monotonic()))
        try:
            callers.run(job)
        except BaseException:  # noqa: BLE001 - nothing may escape complete() or a stream
            errors.append(f"{job.request.request_id} raised:\n{traceback.format_exc()}")


def run_threads(todo: list[Job], callers: Callers) -> list[str]:
    """Serve ``todo`` from :data:`THREADS` threads; a thread still running at the deadline is a deadlock."""
    errors: list[str] = []
    t0 = time.monotonic()
    workers = [threading.Thread(target=serve, args=(todo, callers, t0, errors), name=f"fuzz-{i}", daemon=True)
               for i in range(THREADS)]
    for w in workers:
        w.start()
    deadline = t0 + DEADLINE_S
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    stuck = [w for w in workers if w.is_alive()]
    if stuck:
        frames = sys._current_frames()
        errors += [f"{w.name} still running after {DEADLINE_S} s (deadlock?):\n"
                   + "".join(traceback.format_stack(frames[w.ident])) for w in stuck]
    return errors


def held_connections() -> list[int]:
    """Per sync HTTP client litellm keeps, how many requests still hold a pooled connection."""
    cache = getattr(import_litellm(), "in_memory_llm_clients_cache", None)
    held = []
    for client in list(getattr(cache, "cache_dict", {}).values()):
        http = getattr(client, "_client", None) or getattr(client, "client", None)
        pool = getattr(getattr(http, "_transport", None), "_pool", None)
        held.append(len(getattr(pool, "_requests", ()) or ()))
    return held


def connect_clients(gw: Gateway) -> None:
    """One call per deployment, one at a time, before the threads start: litellm caches its HTTP
    client per deployment without a lock, so threads whose first calls overlap each build one and
    all but the last cached are dropped with a pooled connection open (a ResourceWarning at the
    next collection).  That is litellm's race (see the report), not what this fuzz is after."""
    warm = Gateway(list(gw.deployments.values()), router=FixedRouter(next(iter(gw.deployments))), fallbacks={},
                   cache=False, input_guards=(), retry=RetryPolicy(max_retries=0))
    for name in gw.deployments:
        warm.complete("Hello", model=name)


def fuzz(seed: int, n: int = 300, redis: tuple[str, str] | None = None) -> list[str]:
    """Serve ``n`` requests from threads as the seed decides, then return every broken invariant
    (``redis``: a Redis URL and key prefix to share the cache, budgets and rate limits through)."""
    backends = None
    rng = random.Random(seed)
    caps = draw_caps(rng)
    records = Records()
    logging.getLogger("llmlab").addHandler(records)
    hop = ThreadPoolExecutor(4, thread_name_prefix="fuzz-hop")
    relays = ThreadPoolExecutor(4, thread_name_prefix="fuzz-relay")
    problems = ["the run did not finish"]
    try:
        with FakeProvider(fault_plan(rng), reply=replier(random.Random(seed))) as fp:
            relay = Relay(relays)
            gw = fuzz_gateway(rng, fp.base_url, caps, seed, graded, input_guards=(PIIMaskingGuard(), relay),
                              redis=redis)
            backends = gw.fuzz_backends
            relay.gw = gw
            connect_clients(gw)
            watch = Watch(gw)
            callers = Callers(gw, hop)
            problems = run_threads(jobs(rng, n), callers)
            gc.collect()  # streams left in cycles: the collector hands them to llmlab's closer thread
            if not wait_for_collected_streams(timeout=DEADLINE_S):
                problems.append("streams the collector closed were not finished")
            problems += check(gw, caps, watch, callers.received, callers.finished, records.lines)
            problems += [f"connections still held: {held}" for held in held_connections() if held]
    finally:
        logging.getLogger("llmlab").removeHandler(records)
        for pool in (hop, relays):  # a stuck pool thread is reported; waiting for it would hang the test
            pool.shutdown(wait=not any("deadlock" in p for p in problems))
        if backends is not None:
            backends.close()  # its lease-renewal thread ends with it
    return problems


def run_fuzz(seed: int, n: int = 300, redis: tuple[str, str] | None = None) -> list[str]:
    """:func:`fuzz`, with every warning, unraisable exception, uncaught thread exception and
    thread left running counted as a problem."""
    before = set(threading.enumerate())
    unraisable: list = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    thread_hook, threading.excepthook = threading.excepthook, unraisable.append
    try:
        # earlier tests' garbage (expired litellm clients, unclosed loops) is not this run's
        with earlier_objects_frozen(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            problems = fuzz(seed, n, redis)
            gc.collect()
    finally:
        sys.unraisablehook, threading.excepthook = hook, thread_hook
    problems += [f"{w.category.__name__}: {w.message}" for w in caught
                 if issubclass(w.category, (RuntimeWarning, ResourceWarning))]
    problems += [f"unraisable {u.exc_type.__name__}: {u.exc_value}" for u in unraisable]
    problems += [f"thread left running: {t.name}" for t in set(threading.enumerate()) - before
                 if t.is_alive() and not t.name.startswith(PROCESS_THREADS)]
    return problems


def test_hundreds_of_requests_from_threads_with_faults_and_left_streams_keep_every_invariant():
    """The seeded fuzz: 300 complete()/stream() calls from 12 threads and 10 tenants, streams read
    to the end, left (break, close, a with block, dropped) or pulled from a different thread per
    chunk, with every stage on (exact + priced semantic cache, small caps, rate limits, retries,
    breakers, a classifier router and a cascade) against 429s with Retry-After, 5xx, hangs, cut
    streams, malformed bodies and slow first tokens.  Afterwards: every thread finished; one
    ledger record per request that ran; no hold, probe slot, rate-limit take, thread or
    connection left; spend is the ledger's and within caps; caches hold only whole answers of
    their own tenant; no PII in cache keys, entries or logs; no warning from the run."""
    problems = run_fuzz(FUZZ_SEED)
    assert not problems, "\n".join(problems[:20])


def test_the_fuzz_on_redis_backends_whose_round_trips_let_the_step_lock_go(redis_url, prefix):
    """The same fuzz with the exact cache, budgets, rate limits and semantic entries in Redis.
    Their round trips (cache reads and writes, rate-limit takes and refunds, reservations,
    top-ups, settlements, charges, semantic syncs) are made with the step lock let go, so other
    threads' stages run in the middle of a stage; every invariant above still holds, caps,
    spend and cache entries now kept by Redis."""
    problems = run_fuzz(FUZZ_SEED, redis=(redis_url, prefix))
    assert not problems, "\n".join(problems[:20])


def test_an_earlier_tests_expired_async_client_is_not_this_runs_warning():
    """An async litellm client an earlier test built, its loop closed since, expires after litellm's
    ten-minute TTL and is evicted when a later run caches a client: its connection was reported as
    an unclosed transport inside that run's capture (both fuzzes failed so on a loaded CI run,
    fifteen minutes in).  earlier_objects_frozen() keeps the collector off them while a fuzz counts."""
    import asyncio
    import heapq

    litellm = import_litellm()
    cache = litellm.in_memory_llm_clients_cache
    cache.flush_cache()  # only this test's client in the cache: the eviction below is of it alone
    gc.collect()
    message = [{"role": "user", "content": "hi"}]
    with FakeProvider() as fp:
        asyncio.run(litellm.acompletion(model="openai/m", api_base=fp.base_url, api_key="x", messages=message))
        expired = time.time() - 1  # as if ten minutes had passed: the next client cached evicts them
        for key in list(cache.ttl_dict):
            cache.ttl_dict[key] = expired
        cache.expiration_heap = [(expired, key) for key in cache.ttl_dict]
        heapq.heapify(cache.expiration_heap)
        with earlier_objects_frozen(), FakeProvider() as later, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            litellm.completion(model="openai/m2", api_base=later.base_url, api_key="y", messages=message)
            gc.collect()
    assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
