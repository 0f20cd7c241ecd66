"""The async API as a whole under concurrency and cancellation, and what fuzzing it found.

A seeded fuzz runs hundreds of concurrent ``acomplete`` / ``astream`` requests from many tenants
through litellm against the fault-injecting fake provider, with every stage on, cancels a random
subset at random moments, and checks the invariants that must hold once everything settled.
The regressions it found are pinned by the small deterministic tests before it.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import random
import re
import sys
import warnings

import pytest
from gateway_fuzz import (TENANTS, Records, Watch, check, draw_caps, earlier_objects_frozen, fault_plan, fuzz_gateway, fuzz_request, replier,
                          shown_text)
from llmlab import BudgetPolicy, CascadeRouter, Deployment, FixedRouter, Gateway, OutcomeKind, RetryPolicy, StreamReset
from llmlab.live import import_litellm
from llmlab.scripted import FakeClock
from llmlab.testing import FakeProvider, Fault, FaultPlan
from redis_fixtures import prefix, redis_server, redis_url  # noqa: F401

QUESTION = "Where is my order 1234?"


@pytest.fixture(scope="module", autouse=True)
def _litellm():
    import_litellm()  # paid once, outside the timed parts


def read(gw: Gateway, how: str, prompt: str = QUESTION) -> tuple[list, object]:
    """Every chunk a caller of ``stream`` / ``astream`` receives, and the response."""
    if how == "stream":
        response = gw.stream(prompt)
        return list(response), response

    async def consume():
        response = gw.astream(prompt)
        return [c async for c in response], response

    return asyncio.run(consume())


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_cut_stream_answered_from_the_last_resort_cache_is_reset_first(how):
    """A stream the provider cut midway, with no attempt after it, ends in the last-resort cached
    answer: it came straight behind the cut text, so the caller showed "Fake answer Fake answer
    from …".  Now a StreamReset comes first, as when another attempt starts over."""
    plan = FaultPlan()
    plan.model("gpt-4o").then(None, Fault.cut_stream(3))
    clock = FakeClock()
    with FakeProvider(plan) as fp:
        gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test"})],
                     router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock, cache_ttl_s=60,
                     retry=RetryPolicy(max_retries=0))
        first, _ = read(gw, how)
        clock.advance(120)  # stale: served only when every provider failed
        chunks, response = read(gw, how)
    out = response.outcome
    assert out.kind is OutcomeKind.LAST_RESORT and out.text == "".join(first)
    cut = chunks[:chunks.index(StreamReset("cache"))]
    assert cut and "".join(cut) != out.text  # the cut text was shown, then taken back
    assert shown_text(chunks) == out.text


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_cascade_whose_last_stage_is_cut_sends_the_earlier_stages_answer(how):
    """A cascade escalated to a streamed last stage that the provider cut; the request is served
    the earlier stage's answer ("escalation failed") — which never reached a streaming caller:
    it got the cut text only, and ``outcome.text`` said something else."""
    plan = FaultPlan()
    plan.model("gpt-4o").then(Fault.cut_stream(3))
    with FakeProvider(plan) as fp:
        params = {"api_base": fp.base_url, "api_key": "sk-test"}
        gw = Gateway([Deployment("mini", "openai/gpt-4o-mini", params), Deployment("gpt-4o", "openai/gpt-4o", params)],
                     router=CascadeRouter(["mini", "gpt-4o"], accept=lambda text, request: False), fallbacks={},
                     retry=RetryPolicy(max_retries=0))
        chunks, response = read(gw, how)
    out = response.outcome
    assert out.kind is OutcomeKind.MODEL and out.deployment == "mini"
    assert StreamReset("mini") in chunks and shown_text(chunks) == out.text


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_one_reset_takes_back_the_cut_text_however_many_attempts_follow(how):
    """A cut stream, two retries that fail before any text, then the fallback's answer: the caller
    got a StreamReset before every attempt after the cut (three in a row, nothing between them).
    One reset takes the shown text back; another comes only after more text was shown."""
    plan = FaultPlan()
    plan.model("gpt-4o").then(Fault.cut_stream(3), Fault.server_error(), Fault.server_error())
    with FakeProvider(plan) as fp:
        params = {"api_base": fp.base_url, "api_key": "sk-test"}
        gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", params), Deployment("mini", "openai/gpt-4o-mini", params)],
                     router=FixedRouter("gpt-4o"), fallbacks={"gpt-4o": ["mini"]}, cache=False,
                     retry=RetryPolicy(max_retries=2, base_s=0.0, cap_s=0.0))
        chunks, response = read(gw, how)
    out = response.outcome
    assert out.ok and out.deployment == "mini", out.attempts
    assert [c for c in chunks if isinstance(c, StreamReset)] == [StreamReset("gpt-4o")], chunks
    assert shown_text(chunks) == out.text


def test_an_async_stream_left_in_a_reference_cycle_is_still_recorded_once_collected():
    """The async twin of test_thread_fuzz's cycle test: an ``astream`` left unclosed in a reference
    cycle is collected, and the pipeline's generator was finalised before the loop's hook closed
    the stream: no ledger record, nothing charged for the text it had streamed."""
    async def leave_in_a_cycle():
        async with FakeProvider() as fp:
            gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test"})],
                         router=FixedRouter("gpt-4o"), fallbacks={}, budget=BudgetPolicy(caps={"acme": 1.0}))
            response = gw.astream(QUESTION, tenant="acme", request_id="left", max_tokens=50)
            held: dict = {"chunks": response.__aiter__()}
            held["self"] = held
            assert isinstance(await held["chunks"].__anext__(), str)
            del held, response
            gc.collect()
            for _ in range(10):  # the loop's hook schedules the stream's aclose()
                await asyncio.sleep(0.01)
            return gw

    gw = asyncio.run(leave_in_a_cycle())
    [outcome] = list(gw.ledger)
    assert outcome.request_id == "left" and outcome.error.code == "client_disconnected" and outcome.cost_usd > 0
    assert gw.budgets.spent("acme", gw.clock()) == pytest.approx(outcome.cost_usd)


# ------------------------------------------------------------------ the fuzz
FUZZ_SEED = 58  # any seed must pass; this one mixes every fault and cancellation in about 10 s
#: litellm runs ``completion()`` in a thread pool and awaits the coroutine it returns; a task
#: cancelled while it waits for that thread never awaits the coroutine (which sent nothing)
LITELLM_UNAWAITED = re.compile(r"coroutine 'OpenAIChatCompletion\.(acompletion|async_streaming)' was never awaited")
KINDS = ("complete", "complete_wait_for", "complete_cancel", "complete_cancel_twice", "stream", "stream_leave_close",
         "stream_leave_drop", "stream_cancel", "stream_wait_for", "stream_leave_close_cancel_twice")


async def fuzz(seed: int, n: int = 300, step_threads: bool = False, redis: tuple[str, str] | None = None
               ) -> list[str]:
    """Serve ``n`` requests as the seed decides, then return every broken invariant (``redis``: a
    Redis URL and key prefix to share the cache, budgets and rate limits through)."""
    rng = random.Random(seed)
    loop_errors: list = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
    caps = draw_caps(rng)
    records = Records()
    logging.getLogger("llmlab").addHandler(records)
    async with FakeProvider(fault_plan(rng), reply=replier(rng)) as fp:
        accept = lambda text, request: rng.random() < 0.5  # noqa: E731
        gw = fuzz_gateway(rng, fp.base_url, caps, seed, accept, step_threads=step_threads, redis=redis)
        watch = Watch(gw)
        received: dict[str, list] = {}
        finished: set[str] = set()

        async def read_stream(request, leave_after=None, close=True):
            pieces = received.setdefault(request.request_id, [])
            chunks = gw.astream(request).__aiter__()
            try:
                while leave_after is None or len(pieces) < leave_after:
                    pieces.append(await chunks.__anext__())
            except StopAsyncIteration:
                finished.add(request.request_id)
                return
            if close:
                await chunks.aclose()  # else dropped unclosed: the garbage collector's hook closes it

        async def cancel_later(coro, delay: float, twice: bool = False):
            task = asyncio.ensure_future(coro)
            await asyncio.sleep(delay)
            task.cancel()
            if twice:
                await asyncio.sleep(rng.uniform(0, 0.01))
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        async def one(i: int) -> None:
            kind = rng.choice(KINDS)
            request = fuzz_request(rng, rng.choice(TENANTS), f"r{i}-{kind}")
            await asyncio.sleep(rng.uniform(0, 3.0))
            delay, leave = rng.uniform(0, 1.0), rng.randint(1, 6)
            try:
                if kind == "complete":
                    await gw.acomplete(request)
                elif kind == "complete_wait_for":
                    await asyncio.wait_for(gw.acomplete(request), delay)
                elif kind.startswith("complete_cancel"):
                    await cancel_later(gw.acomplete(request), delay, twice=kind.endswith("twice"))
                elif kind == "stream":
                    await read_stream(request)
                elif kind == "stream_leave_close":
                    await read_stream(request, leave)
                elif kind == "stream_leave_drop":
                    await read_stream(request, leave, close=False)
                elif kind == "stream_cancel":
                    await cancel_later(read_stream(request), delay)
                elif kind == "stream_wait_for":
                    await asyncio.wait_for(read_stream(request), delay)
                else:
                    await cancel_later(read_stream(request, leave), delay, twice=True)
            except asyncio.TimeoutError:
                pass

        await asyncio.gather(*(one(i) for i in range(n)))
        for _ in range(5):  # dropped streams are closed by tasks the loop schedules at collection
            gc.collect()
            await asyncio.sleep(0.05)
        problems = check(gw, caps, watch, received, finished, records.lines)
        problems += [f"task left pending: {t.get_coro()}" for t in asyncio.all_tasks() if ours(t)]
        problems += [f"connections still held: {len(held)}" for held in held_connections() if held]
        if gw.fuzz_backends is not None:
            gw.fuzz_backends.close()
    logging.getLogger("llmlab").removeHandler(records)
    return problems + [f"event loop: {c.get('message')} {c.get('exception')!r}" for c in loop_errors]


def ours(task: asyncio.Task) -> bool:
    """A task the run left behind: not this one, litellm's logging worker (it lives as long as the
    loop) or the fake provider waiting on an idle keep-alive connection."""
    if task is asyncio.current_task():
        return False
    frames = [f.f_code.co_name for f in task.get_stack()]
    return "_worker_loop" not in frames and not ("_on_connection" in frames and "_handle" not in frames)


def held_connections() -> list[set]:
    """The connections litellm's async clients hold (acquired, not back in their pool)."""
    cache = getattr(import_litellm(), "in_memory_llm_clients_cache", None)
    held = []
    for client in list(getattr(cache, "cache_dict", {}).values()):
        http = getattr(client, "_client", None) or getattr(client, "client", None)
        connector = getattr(getattr(getattr(http, "_transport", None), "client", None), "connector", None)
        held.append(set(getattr(connector, "_acquired", ()) or ()))
    return held


@pytest.mark.parametrize("step_threads, on_redis", [(False, False), (True, False), (True, True)],
                         ids=["steps-on-the-loop", "steps-on-threads", "steps-on-threads-redis-backends"])
def test_hundreds_of_concurrent_requests_with_faults_and_cancellations_keep_every_invariant(step_threads,
                                                                                          on_redis, request):
    """The seeded fuzz: 300 acomplete/astream requests from 10 tenants, some cancelled (wait_for,
    task.cancel once or twice, streams left and closed or dropped unclosed), with every stage on
    (exact + priced semantic cache, caps, rate limits, retries, breakers, a classifier router and
    a cascade) against 429s with Retry-After, 5xx, hangs, cut streams, slow first tokens.
    Afterwards: one ledger record per request that ran; no hold, probe slot, rate-limit take,
    task or connection left; spend is the ledger's and within caps; caches hold only whole
    answers of their own tenant; no PII in cache keys or logs; no warning from the run.  Once with
    the pipeline's steps on the event loop, once on worker threads (as with Redis backends): a
    cancel that lands while a step runs on its thread must leave the request as whole.  And once
    with the exact cache, budgets, rate limits and semantic entries in Redis, whose round trips
    let the step lock go: other requests' steps run in the middle of a step."""
    redis = (request.getfixturevalue("redis_url"), request.getfixturevalue("prefix")) if on_redis else None
    unraisable: list = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        # earlier tests' garbage (expired litellm clients, unclosed loops) is not this run's
        with earlier_objects_frozen(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            problems = asyncio.run(fuzz(FUZZ_SEED, step_threads=step_threads, redis=redis))
            gc.collect()
    finally:
        sys.unraisablehook = hook
    problems += [f"{w.category.__name__}: {w.message}" for w in caught
                 if issubclass(w.category, (RuntimeWarning, ResourceWarning)) and not LITELLM_UNAWAITED.search(str(w.message))]
    problems += [f"unraisable {u.exc_type.__name__}: {u.exc_value}" for u in unraisable]
    assert not problems, "\n".join(problems[:20])
