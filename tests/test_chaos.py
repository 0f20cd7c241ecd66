"""Chaos and load through the live driver: litellm's real HTTP path against the fault-injecting
fake provider on loopback.  Bounded in count and time (the whole module runs in well under a minute).

* 2,000 concurrent requests, 30 % injected faults, a full outage of the primary midway:
  every request ends in exactly one typed outcome, none lost or duplicated, fallbacks carry the
  load, the primary recovers, nothing raises;
* budgets under real concurrency (in memory and in Redis): spend never exceeds the cap;
* tenant isolation under concurrency: no exact or semantic cache hit crosses tenants;
* streaming end to end: TTFT is recorded, a stream cut midway falls back with a StreamReset.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pytest

from llmlab import (BudgetExceeded, BudgetPolicy, CacheOutcome, Deployment, FixedRouter, Gateway, GatewayError,
                    Outcome, OutcomeKind, Request, RetryPolicy, StreamReset)
from llmlab.live import import_litellm
from llmlab.testing import FakeProvider, Fault, FaultPlan
from llmlab.tokens import count_tokens
from redis_fixtures import prefix, redis_server  # noqa: F401

MODELS = {"gpt-4o": ("openai/gpt-4o", None), "claude": ("openai/claude-sonnet-4-5", "claude-sonnet-4-5"),
          "mini": ("openai/gpt-4o-mini", None)}


def deployments(fp: FakeProvider, timeout_s: float = 2.0) -> list[Deployment]:
    params = {"api_base": fp.base_url, "api_key": "sk-test"}
    return [Deployment(name, model, params, timeout_s=timeout_s, price_model=price)
            for name, (model, price) in MODELS.items()]


def faulty_plan(seed: int = 11) -> FaultPlan:
    """30 % of calls to every model fail, in every way the HTTP layer can fail."""
    plan = FaultPlan(seed=seed)
    for served in ("gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini"):
        (plan.model(served).randomly(0.08, Fault.error(500)).randomly(0.05, Fault.unavailable())
         .randomly(0.05, Fault.overloaded()).randomly(0.05, Fault.rate_limited(None))
         .randomly(0.03, Fault.malformed()).randomly(0.02, Fault.cut_stream()).randomly(0.02, Fault.hang()))
    return plan


@pytest.fixture(scope="module", autouse=True)
def _litellm():
    import_litellm()  # pay the import once, outside the timed parts


def run_async(coro, loop_errors: list):
    """asyncio.run, recording anything the loop would report as an unhandled exception."""
    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        return await coro

    return asyncio.run(main())


def check_typed(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        assert isinstance(o, Outcome) and o.kind in OutcomeKind
        if o.ok:
            assert o.error is None and o.text
        else:
            assert isinstance(o.error, GatewayError) and o.error.code != "gateway_error", o.error


def test_2000_concurrent_requests_with_faults_and_a_primary_outage(caplog):
    n, in_flight = 2_000, 250
    loop_errors: list = []
    with FakeProvider(faulty_plan()) as fp:
        gw = Gateway(deployments(fp, timeout_s=1.0), router=FixedRouter("gpt-4o"),
                     fallbacks={"gpt-4o": ["claude", "mini"]}, retry=RetryPolicy(max_retries=1, base_s=0.01, cap_s=0.05),
                     # trips on the outage's unbroken failures, not on the 30 % background noise
                     breaker={"failure_threshold": 8, "failure_ratio": 0.8, "cooldown_s": 0.3}, seed=1)
        # as a server should before it takes traffic: a route's first call builds litellm's lazy parts
        # on the event loop (0.2-0.8 s each, more on a fresh clone's cold file cache); under 250 in
        # flight with 1 s timeouts such a stall times requests out and opens breakers (the likely
        # cause of one fresh-clone run's 1,017 errors of 2,000; local reruns: 2-23)
        gw.warm_up()
        requests = [Request.build(f"Question {i % 1_700}: where is my order?", tenant=f"tenant-{i % 1_700 % 7}")
                    for i in range(n)]  # the last 300 repeat earlier questions: cache hits under load
        phase: dict[str, int] = {}
        finished: list[str] = []

        async def one(i: int, sem: asyncio.Semaphore) -> Outcome:
            async with sem:
                if i == 400:
                    fp.set_outage("gpt-4o", True)  # the primary goes down completely ...
                    phase["outage_on"] = len(finished)
                if i == 900:
                    fp.set_outage("gpt-4o", False)  # ... and comes back
                    phase["outage_off"] = len(finished)
                out = await gw.acomplete(requests[i])
                finished.append(out.request_id)
                return out

        async def main():
            sem = asyncio.Semaphore(in_flight)
            return await asyncio.gather(*(one(i, sem) for i in range(n)))

        async def after_the_storm(wanted: int = 10, budget_s: float = 20.0) -> tuple[int, int]:
            """Requests one at a time until the primary has answered ``wanted`` of them (or the budget
            is spent): (primary answers, requests sent)."""
            primary = sent = 0
            deadline = time.monotonic() + budget_s
            while primary < wanted and time.monotonic() < deadline:
                out = await gw.acomplete(Request.build(f"Recovery check {sent}: is the primary back?", tenant="probe"))
                primary += out.deployment == "gpt-4o"
                sent += 1
            return primary, sent

        started = time.monotonic()
        with caplog.at_level(logging.ERROR, "llmlab"):
            outcomes = run_async(main(), loop_errors)
            elapsed = time.monotonic() - started
            ledger = list(gw.ledger)
            recovered, recovery_requests = run_async(after_the_storm(), loop_errors)
        served = fp.stats

    # exactly one typed outcome per request: none lost, none duplicated
    sent = [r.request_id for r in requests]
    assert [o.request_id for o in outcomes] == sent
    ledger_ids = Counter(o.request_id for o in ledger)
    assert len(ledger) == n and set(ledger_ids) == set(sent) and max(ledger_ids.values()) == 1
    check_typed(outcomes)
    assert not loop_errors and not [r for r in caplog.records if "internal error" in r.getMessage()]

    kinds = Counter(o.kind for o in outcomes)
    by_deployment = Counter(o.deployment for o in outcomes if o.kind is OutcomeKind.MODEL)
    # every deployment fails 30 % of its calls, and under 250 in flight the fake server's own latency
    # adds correlated timeouts that open fallback breakers too: some requests find the whole chain
    # failing. Repeated runs: 2-41 of 2,000, the same before and after 2026-11-30's changes; once 175,
    # on a fresh clone's first run (cold imports and .pyc writes). The bound leaves room for that tail;
    # exactness (one typed outcome per request, the ledger) is checked above, not here
    assert kinds[OutcomeKind.MODEL] + kinds[OutcomeKind.CACHE] >= 0.9 * n, kinds
    before_outage = sum(o.deployment == "gpt-4o" for o in outcomes[:150])  # most end before request 400 starts
    assert before_outage >= 90, by_deployment  # the primary served while it was up ...
    assert by_deployment["claude"] + by_deployment["mini"] >= 400, by_deployment  # ... fallbacks carried the outage
    assert by_deployment["mini"] > 0  # ... down to the last deployment of the chain
    assert served.outcomes.get("outage", 0) > 0 and served.outcomes.get("hang", 0) > 0
    assert sum(served.outcomes.get(k, 0) for k in ("500", "503", "529", "429", "malformed", "cut_stream")) > 200
    skipped = sum(1 for o in outcomes for a in o.attempts if a.error == "circuit_open")
    assert skipped > 100  # the breaker stopped calling the dead primary
    # after the outage the primary serves again: a half-open probe succeeded and closed the breaker.
    # Checked once the storm has passed: under 250 in flight a probe's verdict takes 2-3 s (event-loop
    # saturation, 1 s timeouts firing late) and fails more often than the 30 % background rate, so how
    # many of the run's last requests reach the primary depends on the machine's load (a loaded CI
    # machine saw 1 of 1,000); one request at a time, probes come every cooldown and recovery must
    # follow within a few of them
    assert recovered >= 10, (recovered, recovery_requests, phase)
    assert kinds[OutcomeKind.CACHE] >= 100  # repeats were served from cache while faults raged
    # bounded: the worst request meets hangs (1 s timeouts) on several attempts while 250 others share
    # the loop; ~20-30 s for the whole run on an idle 2-core machine, hard limits leave room for noise
    assert max(o.latency_s for o in outcomes) < 45
    assert elapsed < 90, elapsed


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_budgets_hold_under_concurrency(backend, request):
    cap, n = 0.03, 400
    extra = {}
    if backend == "redis":
        pytest.importorskip("redis")
        from llmlab.backends import from_url

        server = request.getfixturevalue("redis_server")
        extra = {"budget_backend": from_url(server.url, request.getfixturevalue("prefix")).budgets}
    plan = FaultPlan(seed=3)
    plan.model("*").latency(low=0.005, high=0.03)
    loop_errors: list = []
    with FakeProvider(plan, reply=lambda body: "word " * 60) as fp:
        gw = Gateway(deployments(fp)[:1], router=FixedRouter("gpt-4o"), fallbacks={}, cache=False,
                     budget=BudgetPolicy(caps={"acme": cap}), **extra)
        peak = []
        original = gw.budgets.try_reserve

        def tracking(*a, **kw):
            r = original(*a, **kw)
            peak.append(gw.budgets.reserved("acme", time.time()))
            return r

        gw.budgets.try_reserve = tracking

        async def main():
            sem = asyncio.Semaphore(200)

            async def one(i):
                async with sem:
                    return await gw.acomplete(f"question {i}", tenant="acme", params={"max_tokens": 100})

            return await asyncio.gather(*(one(i) for i in range(n)))

        outcomes = run_async(main(), loop_errors)
    check_typed(outcomes)
    spent = gw.budgets.spent("acme", time.time())
    ok = [o for o in outcomes if o.ok]
    assert spent <= cap + 1e-9
    assert spent == pytest.approx(sum(o.cost_usd for o in ok), abs=1e-8)
    assert len(ok) >= 20 and all(isinstance(o.error, BudgetExceeded) for o in outcomes if not o.ok)
    assert max(peak) > 0.3 * cap  # many reservations were open at the same time
    assert gw.budgets.reserved("acme", time.time()) == pytest.approx(0, abs=1e-12) and not loop_errors


def _semantic_cache():
    try:
        from llmlab.cache.embedders import HashedNgramEmbedder
        from llmlab.cache.semantic import SemanticCache
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"semantic cache not available: {exc}")
    return SemanticCache(HashedNgramEmbedder(), threshold=0.5, guard=None)  # permissive on purpose


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_no_cache_hit_crosses_tenants(backend, request):
    """Ten tenants ask the same and similar questions at once; every answer names its own tenant.
    With Redis both caches are shared: the exact store and the semantic cache's replication log."""
    semantic = _semantic_cache()
    extra = {"semantic_cache": semantic}
    if backend == "redis":
        pytest.importorskip("redis")
        from llmlab.backends import from_url

        server = request.getfixturevalue("redis_server")
        shared = from_url(server.url, request.getfixturevalue("prefix"), semantic_cache=semantic)
        extra = {"cache_store": shared.cache_store, "semantic_cache": shared.semantic_cache}
    plan = FaultPlan(seed=5)
    plan.model("*").latency(low=0.0, high=0.01)
    questions = ["How do I reset my password?", "how do I reset my password", "How can I reset my password?",
                 "How do I cancel my subscription?", "How do I cancel my subscription please?"]
    loop_errors: list = []
    with FakeProvider(plan, reply=lambda body: f"answer for {body.get('user')}: {body['messages'][-1]['content']}") as fp:
        gw = Gateway(deployments(fp)[:1], router=FixedRouter("gpt-4o"), fallbacks={}, **extra)

        async def main():
            sem = asyncio.Semaphore(100)

            async def one(tenant, q):
                async with sem:
                    return await gw.acomplete(q, tenant=tenant, params={"user": tenant})

            tenants = [f"tenant{t}" for t in range(10)]
            # phase 1: every tenant fills its own entries, all at once; phase 2: repeats and paraphrases
            first = await asyncio.gather(*(one(t, q) for q in (questions[0], questions[3]) for t in tenants))
            second = await asyncio.gather(*(one(t, q) for _ in range(2) for q in questions for t in tenants))
            return first + second

        outcomes = run_async(main(), loop_errors)
    check_typed(outcomes)
    hits = Counter(o.cache for o in outcomes)
    assert hits[CacheOutcome.EXACT_HIT] > 0 and hits[CacheOutcome.SEMANTIC_HIT] > 0, hits
    for o in outcomes:
        assert o.text.startswith(f"answer for {o.tenant}:"), (o.tenant, o.cache, o.text)
    assert not loop_errors


def test_streaming_ttft_and_a_cut_stream_falls_back_with_a_reset():
    plan = FaultPlan(seed=9)
    plan.model("gpt-4o").stream_timing(ttft_s=0.15, chunk_delay_s=0.005)
    reply = "one two three four five six seven eight nine ten"
    with FakeProvider(plan, reply=reply) as fp:
        gw = Gateway(deployments(fp), router=FixedRouter("gpt-4o"), fallbacks={"gpt-4o": ["claude", "mini"]},
                     retry=RetryPolicy(max_retries=0), cache=False)
        healthy = gw.stream("count to ten")
        chunks = list(healthy)
        assert "".join(chunks) == reply and len(chunks) > 5
        assert healthy.outcome.ttft_s >= 0.15 and healthy.outcome.latency_s >= healthy.outcome.ttft_s

        plan.model("gpt-4o").then(Fault.cut_stream(after_chunks=4))  # role chunk + 3 words, then the socket dies
        cut = gw.stream("count to ten again")
        pieces = list(cut)
        resets = [i for i, p in enumerate(pieces) if isinstance(p, StreamReset)]
        assert len(resets) == 1 and pieces[resets[0]].deployment == "claude"
        before, after = pieces[:resets[0]], pieces[resets[0] + 1:]
        assert "".join(before) == "one two three " and "".join(after) == reply
        assert cut.outcome.deployment == "claude" and cut.outcome.ok
        assert cut.outcome.attempts[0].error.startswith("connection:"), cut.outcome.attempts[0].error
        # the provider billed what it sent before the cut: charged like a caller's disconnect
        first = cut.outcome.attempts[0]
        assert first.completion_tokens == count_tokens("one two three ") and first.prompt_tokens > 0
        assert first.cost_usd > 0 and cut.outcome.cost_usd == pytest.approx(sum(a.cost_usd for a in cut.outcome.attempts))

        plan.model("gpt-4o").then(Fault.cut_stream(after_chunks=3))

        async def consume():
            response = gw.astream("and once more, asynchronously")
            return [p async for p in response], response.outcome

        apieces, aout = asyncio.run(consume())
        assert [p.deployment for p in apieces if isinstance(p, StreamReset)] == ["claude"]
        assert "".join(p for p in apieces[apieces.index(StreamReset("claude")) + 1:]) == reply
        assert aout.deployment == "claude" and aout.ttft_s is not None


def test_a_half_open_probe_ending_in_a_fatal_error_does_not_wedge_the_breaker():
    from llmlab import ErrorKind
    from llmlab.scripted import FakeClock, ScriptedDriver

    clock = FakeClock()
    driver = ScriptedDriver(clock=clock)
    gw = Gateway([Deployment("a", "gpt-4o"), Deployment("b", "gpt-4o-mini")], router=FixedRouter("a"),
                 fallbacks={"a": ["b"]}, clock=clock, driver=driver, retry=RetryPolicy(max_retries=0),
                 breaker={"failure_threshold": 1, "cooldown_s": 10}, cache=False)
    driver.script("a", ErrorKind.SERVER)
    gw.complete("open the breaker")
    clock.advance(11)
    driver.script("a", ErrorKind.BAD_REQUEST)  # the half-open probe: the provider answers 400
    gw.complete("probe")
    clock.advance(100)
    assert gw.complete("much later").attempts[0].error != "circuit_open"


LEAVE_STREAMS_EARLY = """
import os, sys
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
from llmlab import Deployment, FixedRouter, Gateway
from llmlab.testing import FakeProvider, FaultPlan
with FakeProvider(FaultPlan(latency_s=0.002, chunk_delay_s=0.002), reply=lambda body: "word " * 40) as fp:
    dep = Deployment("a", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test"}, timeout_s=5)
    gw = Gateway([dep], router=FixedRouter("a"), fallbacks={}, cache=False, input_guards=())
    for i in range(int(sys.argv[1])):
        for chunk in gw.stream("hello"):
            break  # the caller leaves after the first chunk
        assert gw.complete("hello").ok
    outcomes = [o.error.code if o.error else "ok" for o in gw.ledger]
    print(outcomes.count("client_disconnected"), outcomes.count("ok"))
"""


def test_callers_who_leave_streams_early_never_hang_the_next_request():
    """The provider's stream used to be left to the garbage collector, which closed it inside a later
    request holding httpcore's pool lock: the thread waited on itself (after 14-86 rounds)."""
    import subprocess
    import sys

    rounds = 300
    proc = subprocess.run([sys.executable, "-c", LEAVE_STREAMS_EARLY, str(rounds)], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(rounds), str(rounds)]


def test_leaving_an_async_stream_closes_the_providers_stream_at_once(monkeypatch):
    """The async twin of the sync path: the provider's stream is closed before ``async with`` exits,
    not when the event loop later finalises the generator."""
    import llmlab.live as live

    closed: list[str] = []
    original = live._aclose

    async def recording(response):
        await original(response)
        closed.append(type(response).__name__)

    monkeypatch.setattr(live, "_aclose", recording)
    plan = FaultPlan(seed=3)
    plan.model("gpt-4o").stream_timing(ttft_s=0.01, chunk_delay_s=0.05)
    with FakeProvider(plan, reply="word " * 100) as fp:
        gw = Gateway(deployments(fp), router=FixedRouter("gpt-4o"), fallbacks={}, cache=False)

        async def leave_early():
            async with gw.astream("count slowly") as response:
                async for chunk in response:
                    break
            return list(closed), response.outcome

        seen, outcome = asyncio.run(leave_early())
    assert outcome.error.code == "client_disconnected"
    assert "CustomStreamWrapper" in seen  # litellm's stream, closed inside the block
