"""Request coalescing: identical requests in flight at once make one provider call (llmlab.coalescing).

The pipeline is stepped by hand where the order of events is the point (a follower must wait
for the leader, board again after a failure, go alone after an uncacheable answer); the live
paths run against the fake provider on 127.0.0.1, where a burst must reach it once."""
from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmlab import (CacheOutcome, Call, CallResult, Coalesce, ConfigError, Deployment, ErrorKind, FixedRouter, Gateway,
                    JoinFlight, OutcomeKind, RetryPolicy)
from llmlab.coalescing import Flight
from llmlab.scripted import FakeClock, ScriptedDriver
from llmlab.testing import FakeProvider, FaultPlan

QUESTION = "Is there an outage on the EU cluster right now?"


def scripted(clock: FakeClock | None = None, **kw) -> tuple[Gateway, ScriptedDriver]:
    clock = clock or FakeClock()
    driver = ScriptedDriver(clock=clock)
    kw.setdefault("coalesce", Coalesce(max_wait_s=10))
    gw = Gateway([Deployment("m", "gpt-4o-mini")], driver=driver, clock=clock, retry=RetryPolicy(max_retries=0), **kw)
    return gw, driver


def start(gw: Gateway, request_id: str, *, stream: bool = False, **kw):
    """A request's pipeline, run to its first effect: (generator, effect)."""
    gen = gw.pipeline.handle(gw.request(QUESTION, request_id=request_id, **kw), stream=stream)
    return gen, next(gen)


def finish(gen, value):
    """Send ``value`` and expect the pipeline to end: its outcome."""
    with pytest.raises(StopIteration) as stop:
        gen.send(value)
    return stop.value.value


# ----------------------------------------------------------------------------- the pipeline's rules
def test_a_follower_waits_for_the_leader_and_is_answered_from_the_cache_it_filled():
    gw, driver = scripted()
    leader, call = start(gw, "a")
    follower, join = start(gw, "b")
    assert isinstance(call, Call) and isinstance(join, JoinFlight)
    assert join.flight.leader == "a" and join.wait_s == 10
    led = finish(leader, driver.perform(call))
    assert led.kind is OutcomeKind.MODEL and led.coalesced_with is None
    assert join.flight.landed and not join.flight.handed_on
    out = finish(follower, True)
    assert out.kind is OutcomeKind.CACHE and out.cache is CacheOutcome.EXACT_HIT
    assert out.text == led.text and out.cost_usd == 0.0 and out.coalesced_with == "a"
    assert len(driver.calls) == 1
    assert (gw.flights.led, gw.flights.joined, gw.flights.served, gw.flights.in_flight) == (1, 1, 1, 0)
    frame = gw.ledger.to_dataframe().set_index("request_id")["coalesced_with"]
    assert frame.isna()["a"] and frame["b"] == "a"


def test_a_followers_log_record_names_its_leader(caplog):
    gw, driver = scripted()
    leader, call = start(gw, "a")
    follower, _ = start(gw, "b")
    with caplog.at_level(logging.INFO, logger="llmlab"):
        finish(leader, driver.perform(call))
        finish(follower, True)
    records = {r.llmlab["request_id"]: r.llmlab for r in caplog.records if hasattr(r, "llmlab")}
    assert "coalesced_with" not in records["a"] and records["b"]["coalesced_with"] == "a"


def test_without_coalescing_the_same_burst_calls_once_per_request():
    gw, driver = scripted(coalesce=None)
    gens = [start(gw, f"r{i}") for i in range(3)]
    assert all(isinstance(effect, Call) for _, effect in gens) and gw.flights is None


def test_a_request_after_the_leader_landed_is_a_plain_hit_and_a_new_miss_leads_a_new_flight():
    gw, driver = scripted()
    leader, call = start(gw, "a")
    finish(leader, driver.perform(call))
    hit = gw.complete(QUESTION, request_id="b")
    assert hit.cache is CacheOutcome.EXACT_HIT and hit.coalesced_with is None
    other, effect = start(gw, "c", temperature=0.9)  # another cache key: its own flight
    assert isinstance(effect, Call) and gw.flights.led == 2


def test_followers_are_kept_apart_by_tenant_and_by_parameters():
    gw, _ = scripted()
    # the generators are kept: one that is garbage-collected is closed, and its flight lands
    a, first = start(gw, "a", tenant="acme")
    b, other_tenant = start(gw, "b", tenant="globex")
    c, other_params = start(gw, "c", tenant="acme", max_tokens=50)
    d, same = start(gw, "d", tenant="acme")
    assert isinstance(first, Call) and isinstance(other_tenant, Call) and isinstance(other_params, Call)
    assert isinstance(same, JoinFlight) and same.flight.leader == "a"


def test_after_a_failed_leader_the_followers_board_again_and_one_of_them_leads():
    gw, driver = scripted()
    driver.script("m", ErrorKind.SERVER)
    leader, call = start(gw, "a")
    f1, j1 = start(gw, "b")
    f2, j2 = start(gw, "c")
    failed = finish(leader, driver.perform(call))
    assert failed.kind is OutcomeKind.ERROR and j1.flight.landed and j1.flight.handed_on
    call_b = f1.send(True)  # nothing cached, the leader failed: b boards again, and leads
    assert isinstance(call_b, Call)
    j2b = f2.send(True)  # c follows b now
    assert isinstance(j2b, JoinFlight) and j2b.flight.leader == "b" and j2b.wait_s == 10
    answered_b = finish(f1, driver.perform(call_b))
    out_c = finish(f2, True)
    assert answered_b.kind is OutcomeKind.MODEL and answered_b.coalesced_with == "a"
    assert out_c.cache is CacheOutcome.EXACT_HIT and out_c.coalesced_with == "b"
    assert len(driver.calls) == 2


def test_a_follower_waits_no_longer_than_max_wait_s_in_all():
    clock = FakeClock()
    gw, driver = scripted(clock)
    driver.script("m", ErrorKind.SERVER)
    leader, call = start(gw, "a")
    follower, join = start(gw, "b")
    clock.advance(10)  # the leader took the whole wait, then failed
    finish(leader, driver.perform(call))
    assert isinstance(follower.send(True), Call)  # out of time: alone, not leading anybody
    assert gw.flights.in_flight == 0


def test_a_follower_whose_wait_ran_out_calls_on_its_own_and_leads_the_requests_after_it():
    gw, driver = scripted()
    leader, call = start(gw, "a")  # a's call hangs (a provider that does not answer, a stream left unread)
    follower, join = start(gw, "b")
    own = follower.send(False)  # the wait ran out, the leader still in the air
    assert isinstance(own, Call)
    # a later identical request waits for b's call, not max_wait_s more for a's
    late, late_join = start(gw, "c")
    assert isinstance(late_join, JoinFlight) and late_join.flight.leader == "b"
    out = finish(follower, driver.perform(own))
    assert out.kind is OutcomeKind.MODEL and out.coalesced_with == "a"  # waited for a, answered by a model
    served = finish(late, True)
    assert served.cache is CacheOutcome.EXACT_HIT and served.coalesced_with == "b"
    assert gw.flights.in_flight == 0 and gw.flights.led == 2
    finish(leader, driver.perform(call))  # a lands at last: nothing of b's is undone
    assert gw.flights.in_flight == 0 and len(driver.calls) == 2


def test_only_the_first_follower_out_of_time_takes_the_flight_over():
    gw, driver = scripted()
    leader, call = start(gw, "a")
    f1, _ = start(gw, "b")
    f2, _ = start(gw, "c")
    assert isinstance(f1.send(False), Call) and isinstance(f2.send(False), Call)  # both out of time: both call
    late, join = start(gw, "d")
    assert join.flight.leader == "b" and gw.flights.led == 2  # c called alone: it leads nobody


def test_an_uncacheable_answer_sends_the_followers_on_alone_at_once():
    gw, driver = scripted()
    tool_call = {"id": "c1", "type": "function", "function": {"name": "status", "arguments": "{}"}}
    driver.script("m", CallResult("", 20, 5, 0.1, tool_calls=(tool_call,)))
    leader, call = start(gw, "a")
    f1, _ = start(gw, "b")
    f2, _ = start(gw, "c")
    finish(leader, driver.perform(call))
    # a tool call is never cached; waiting for one another would only queue them: both call now
    assert isinstance(f1.send(True), Call) and isinstance(f2.send(True), Call)


def test_a_leader_whose_answer_the_output_guards_blocked_sends_the_followers_on_alone():
    from llmlab.guardrails import OutputFilterGuard

    gw, driver = scripted(output_guards=[OutputFilterGuard(blocked_terms=["incident"])])
    driver.script("m", "We are investigating an incident on the EU cluster.")
    leader, call = start(gw, "a")
    f1, join = start(gw, "b")
    f2, _ = start(gw, "c")
    blocked = finish(leader, driver.perform(call))
    assert blocked.error is not None and blocked.error.code == "guardrail_blocked"
    # the same question would be blocked the same way: both call now, neither waits for the other
    assert isinstance(f1.send(True), Call) and isinstance(f2.send(True), Call)


class DroppingStore:
    """An exact cache that takes no write and finds nothing: Redis gone mid-burst (RedisStore
    drops a put and misses a get while it is unreachable)."""

    def get(self, namespace, key, now, *, allow_stale=False):
        return None

    def put(self, namespace, key, value, now):
        return False


def test_the_leaders_answer_reaches_its_followers_when_the_cache_dropped_it():
    gw, driver = scripted(cache_store=DroppingStore())
    leader, call = start(gw, "a")
    f1, _ = start(gw, "b")
    f2, _ = start(gw, "c")
    led = finish(leader, driver.perform(call))
    assert led.kind is OutcomeKind.MODEL
    # the store kept nothing, but the flight carries the answer: no second call, let alone one each
    out_b, out_c = finish(f1, True), finish(f2, True)
    for out in (out_b, out_c):
        assert out.kind is OutcomeKind.CACHE and out.cache is CacheOutcome.EXACT_HIT
        assert out.text == led.text and out.cost_usd == 0.0 and out.coalesced_with == "a"
    assert len(driver.calls) == 1 and gw.flights.served == 2


def test_the_leaders_answer_reaches_its_followers_when_the_cache_evicted_it():
    gw, driver = scripted(cache_capacity=1)
    a, call_a = start(gw, "a")
    b, call_b = start(gw, "b", max_tokens=50)  # another question: its answer evicts a's from the one slot
    follower, join = start(gw, "c")
    assert isinstance(join, JoinFlight) and join.flight.leader == "a"
    led = finish(a, driver.perform(call_a))
    finish(b, driver.perform(call_b))
    out = finish(follower, True)
    assert out.kind is OutcomeKind.CACHE and out.text == led.text and out.coalesced_with == "a"
    assert len(driver.calls) == 2


def test_a_leader_served_the_last_resort_hands_the_flight_on():
    clock = FakeClock()
    gw, driver = scripted(clock, cache_ttl_s=60)
    gw.complete(QUESTION, request_id="earlier")  # cached, then stale: the last resort of an outage
    clock.advance(120)
    driver.script("m", ErrorKind.SERVER, ErrorKind.SERVER)
    leader, call = start(gw, "a")
    f1, join = start(gw, "b")
    f2, _ = start(gw, "c")
    served = finish(leader, driver.perform(call))
    assert served.kind is OutcomeKind.LAST_RESORT
    # every provider failed: that says nothing of the followers' fate, as when no stale answer was
    # there; one follower leads the next call and the others follow it, rather than each calling now
    assert join.flight.handed_on
    call_b = f1.send(True)
    assert isinstance(call_b, Call)
    again = f2.send(True)
    assert isinstance(again, JoinFlight) and again.flight.leader == "b"
    assert finish(f1, driver.perform(call_b)).kind is OutcomeKind.LAST_RESORT
    assert isinstance(f2.send(True), Call)  # b failed as well: c's turn
    assert len(driver.calls) == 3


def test_a_leader_whose_keys_were_refused_hands_the_flight_on():
    """No deployment took the gateway's key: the keys were refused, not the request, so each
    follower sent on alone would call every refusing deployment at once.  As in an outage, one
    follower calls next and the others follow it."""
    gw, driver = scripted()
    driver.script("m", ErrorKind.AUTH, ErrorKind.AUTH)
    leader, call = start(gw, "a")
    f1, join = start(gw, "b")
    f2, _ = start(gw, "c")
    rejected = finish(leader, driver.perform(call))
    assert rejected.error.code == "provider_rejected"
    assert join.flight.handed_on
    call_b = f1.send(True)
    assert isinstance(call_b, Call)
    again = f2.send(True)
    assert isinstance(again, JoinFlight) and again.flight.leader == "b"
    assert finish(f1, driver.perform(call_b)).error.code == "provider_rejected"
    assert isinstance(f2.send(True), Call)  # b was refused as well: c's turn
    assert len(driver.calls) == 2


def test_a_leader_whose_request_was_refused_sends_the_followers_on_alone():
    """A 400 refuses the request itself: the followers' identical requests are not held back
    behind each other (each is refused at once, unbilled)."""
    gw, driver = scripted()
    driver.script("m", ErrorKind.BAD_REQUEST)
    leader, call = start(gw, "a")
    f1, join = start(gw, "b")
    assert finish(leader, driver.perform(call)).error.code == "provider_rejected"
    assert join.flight.landed and not join.flight.handed_on


def test_a_leader_closed_midway_releases_its_followers():
    gw, _ = scripted()
    leader, _ = start(gw, "a")
    follower, join = start(gw, "b")
    leader.close()
    assert join.flight.landed and join.flight.handed_on
    assert isinstance(follower.send(True), Call)  # b leads now
    assert gw.flights.in_flight == 1 and gw.flights.led == 2


def test_a_leader_interrupted_inside_user_code_lands_its_flight():
    class Interrupting:  # Ctrl-C (or sys.exit) while an output guard runs: the generator ends with it
        name = "interrupting"

        def check_output(self, text):
            raise KeyboardInterrupt

    gw, driver = scripted(output_guards=[Interrupting()])
    with pytest.raises(KeyboardInterrupt):
        gw.complete(QUESTION, request_id="a")
    assert gw.flights.in_flight == 0
    _, effect = start(gw, "b")
    assert isinstance(effect, Call)  # b leads: it does not wait max_wait_s for a flight that never lands


def test_ctrl_c_during_a_sync_call_records_the_request_and_lands_its_flight():
    gw, driver = scripted()

    def interrupted(call):
        raise KeyboardInterrupt

    driver.script("m", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:  # the traceback kept, as IPython keeps the last one
        gw.complete(QUESTION, request_id="a")
    assert info.value is not None and gw.flights.in_flight == 0
    record = gw.ledger.to_dataframe().set_index("request_id").loc["a"]
    assert record["error_code"] == "client_disconnected"
    _, effect = start(gw, "b")
    assert isinstance(effect, Call)


def test_ctrl_c_during_a_sync_stream_records_the_request_and_lands_its_flight():
    gw, driver = scripted(coalesce=Coalesce(max_wait_s=10, streams=True))

    def interrupted(call):
        raise KeyboardInterrupt

    driver.script("m", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        for _ in gw.stream(QUESTION, request_id="a"):
            pass
    assert info.value is not None and gw.flights.in_flight == 0
    assert gw.ledger.to_dataframe().set_index("request_id").loc["a", "error_code"] == "client_disconnected"


def test_a_request_that_could_find_no_answer_in_the_caches_does_not_wait():
    from llmlab.cache.embedders import get_embedder
    from llmlab.cache.semantic import SemanticCache

    def down(texts):
        raise RuntimeError("embedding service down")

    gw, driver = scripted(cache=False, semantic_cache=SemanticCache(get_embedder("hashed")))
    driver.embed_fn = down
    effects = []
    for request_id in ("a", "b"):
        gen, embed = start(gw, request_id)
        try:
            driver.perform(embed)
        except RuntimeError as exc:
            effects.append(gen.throw(exc))
    # no exact key, no embedding: the leader leaves nothing b could find, so b calls at once
    assert [type(e) for e in effects] == [Call, Call] and gw.flights.led == 0


def test_streamed_requests_take_part_only_when_asked():
    gw, _ = scripted()
    a, first = start(gw, "a", stream=True)
    b, second = start(gw, "b", stream=True)
    assert isinstance(first, Call) and isinstance(second, Call)  # neither leads nor follows
    gw, driver = scripted(coalesce=Coalesce(max_wait_s=10, streams=True))
    leader, call = start(gw, "a", stream=True)
    follower, join = start(gw, "b", stream=True)
    assert isinstance(join, JoinFlight)


def test_requests_that_skip_the_cache_never_wait():
    gw, _ = scripted()
    leader, first = start(gw, "a")
    _, effect = start(gw, "b", cache=False)
    assert isinstance(first, Call) and isinstance(effect, Call) and gw.flights.joined == 0


def test_a_semantic_cache_alone_hands_the_answer_over(tmp_path):
    from llmlab.cache.embedders import get_embedder
    from llmlab.cache.semantic import SemanticCache

    gw, driver = scripted(cache=False, semantic_cache=SemanticCache(get_embedder("hashed")))
    leader, embed = start(gw, "a")
    call = leader.send(driver.perform(embed))
    follower, embed_b = start(gw, "b")
    join = follower.send(driver.perform(embed_b))
    assert isinstance(call, Call) and isinstance(join, JoinFlight)
    finish(leader, driver.perform(call))
    out = finish(follower, True)
    assert out.cache is CacheOutcome.SEMANTIC_HIT and out.coalesced_with == "a" and len(driver.calls) == 1


@pytest.mark.parametrize("make, field", [
    (lambda: Coalesce(max_wait_s=0), "coalesce.max_wait_s"),
    (lambda: Coalesce(max_wait_s=math.inf), "coalesce.max_wait_s"),
    (lambda: Coalesce(streams="no"), "coalesce.streams"),
    (lambda: scripted(coalesce=5), "coalesce"),
    (lambda: scripted(cache=False), "coalesce"),
])
def test_bad_settings_name_the_field(make, field):
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.field == field


# ----------------------------------------------------------------------------- the waits themselves
def led_elsewhere(request_id: str) -> Flight:
    """A flight whose leader boarded on another thread (one on this thread is never waited for)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(Flight, request_id, ("tenant", "key")).result()


def test_a_flight_wakes_a_thread_and_a_loop_and_times_out_when_it_does_not_land():
    flight = led_elsewhere("a")
    assert flight.wait(0.05) is False
    threading.Timer(0.05, flight.land, args=(True,)).start()
    started = time.perf_counter()
    assert flight.wait(5) is True and time.perf_counter() - started < 2
    assert flight.wait(5) is True  # landed already: no wait at all

    async def run():
        other = led_elsewhere("b")
        assert await other.await_landing(0.05) is False
        asyncio.get_running_loop().call_later(0.05, other.land, False)
        return await other.await_landing(5)

    assert asyncio.run(run()) is True


# ----------------------------------------------------------------------------- live, through litellm
def live_gateway(base_url: str, coalesce: Coalesce | None = Coalesce(max_wait_s=10)) -> Gateway:
    dep = Deployment("m", "openai/m", {"api_base": base_url, "api_key": "sk-test"}, price_model="gpt-4o-mini")
    return Gateway([dep], router=FixedRouter("m"), retry=RetryPolicy(max_retries=0), coalesce=coalesce).warm_up()


@pytest.mark.parametrize("coalesce, calls", [(Coalesce(max_wait_s=10), 1), (None, 25)])
def test_a_burst_of_one_new_question_reaches_the_provider_once_async(coalesce, calls):
    plan = FaultPlan()
    plan.model("m").latency(0.3)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = live_gateway(fp.base_url, coalesce)
            outcomes = await asyncio.gather(*(gw.acomplete(QUESTION, request_id=f"r{i}") for i in range(25)))
            return gw, outcomes, fp.stats.total

    gw, outcomes, total = asyncio.run(run())
    assert total == calls and all(o.ok for o in outcomes) and len(gw.ledger) == 25
    if coalesce is not None:
        followers = [o for o in outcomes if o.coalesced_with is not None]
        assert len(followers) == 24 and {o.coalesced_with for o in followers} == {"r0"}
        assert all(o.kind is OutcomeKind.CACHE and o.cost_usd == 0 and o.text == outcomes[0].text for o in followers)


def test_a_burst_from_threads_reaches_the_provider_once():
    plan = FaultPlan()
    plan.model("m").latency(0.3)
    with FakeProvider(plan) as fp:
        gw = live_gateway(fp.base_url)
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda i: gw.complete(QUESTION, request_id=f"t{i}"), range(8)))
        total = fp.stats.total
    assert total == 1 and all(o.ok for o in outcomes)
    assert sum(o.coalesced_with is not None for o in outcomes) == 7


def test_a_cancelled_leader_hands_its_flight_to_a_follower():
    plan = FaultPlan()
    plan.model("m").latency(0.4)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = live_gateway(fp.base_url)
            leader = asyncio.ensure_future(gw.acomplete(QUESTION, request_id="lead"))
            await asyncio.sleep(0.1)  # the leader's call is out
            followers = [asyncio.ensure_future(gw.acomplete(QUESTION, request_id=f"f{i}")) for i in range(5)]
            await asyncio.sleep(0.1)
            leader.cancel()
            outcomes = await asyncio.gather(*followers)
            with pytest.raises(asyncio.CancelledError):
                await leader
            return gw, outcomes, fp.stats.total

    gw, outcomes, total = asyncio.run(run())
    assert total == 2  # the cancelled call, then one follower's
    assert all(o.ok for o in outcomes)
    new_leader = [o for o in outcomes if o.kind is OutcomeKind.MODEL]
    assert len(new_leader) == 1 and new_leader[0].coalesced_with == "lead"
    assert {o.coalesced_with for o in outcomes if o.kind is OutcomeKind.CACHE} == {new_leader[0].request_id}
    assert len(gw.ledger) == 6


# ----------------------------------------------------------------------------- the simulator
CALM = {"gateway.cache.embedder": "hashed", "gateway.cache.semantic": False, "outages.incidents": False,
        "outages.windows": []}


def burst_trace(tmp_path, rows: int = 40):
    """One tenant asking one new question 40 times within two seconds, then another tenant once."""
    lines = ["timestamp,tenant,plan,prompt"]
    lines += [f"{1741078800 + i * 0.05:.2f},acme,paid,{QUESTION}" for i in range(rows)]
    lines.append(f"{1741078800 + rows * 0.05:.2f},globex,paid,{QUESTION}")
    path = tmp_path / "burst.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("coalesce", [True, False])
def test_the_simulator_replays_a_burst_through_the_same_flights(tmp_path, coalesce):
    from llmlab.sim import simulate

    overrides = {**CALM, **({"gateway.coalesce": {"max_wait_s": 30}} if coalesce else {})}
    result = simulate("b2b-saas", trace=burst_trace(tmp_path), overrides=overrides, seed=0, baseline=False)
    turns, summary = result.turns, result.summary
    if coalesce:
        # acme's first request leads; its 39 followers wait for it; globex is nobody's follower
        assert turns["calls"].sum() == 2 and turns["coalesced"].sum() == 39
        assert summary["coalesced_rate"] == pytest.approx(39 / 41)
        followers = turns[turns["coalesced"]]
        assert (followers["cost_usd"] == 0).all() and (followers["cache"] == "exact_hit").all()
        assert set(followers["tenant"]) == {"acme"} and not followers["false_hit"].any()
        # each waited until the leader's answer came: they all end when it does
        ends = followers["arrival_s"] + followers["latency_s"]
        leader = turns.iloc[0]
        assert ends.to_numpy() == pytest.approx(leader["arrival_s"] + leader["latency_s"])
        again = simulate("b2b-saas", trace=burst_trace(tmp_path), overrides=overrides, seed=0, baseline=False)
        assert json.dumps(again.summary, sort_keys=True, default=str) == json.dumps(summary, sort_keys=True, default=str)
    else:
        assert turns["calls"].sum() == 41 and summary["coalesced_rate"] == 0.0


def test_the_summary_table_shows_the_coalesced_share_only_when_there_is_one(tmp_path):
    from llmlab.report import summary_table
    from llmlab.sim import simulate

    for coalesce, shown in ((True, True), (False, False)):
        overrides = {**CALM, **({"gateway.coalesce": {}} if coalesce else {})}
        result = simulate("b2b-saas", trace=burst_trace(tmp_path, 5), overrides=overrides, seed=0, baseline=False)
        assert ("of which coalesced" in summary_table(result.summary)) is shown


@pytest.mark.parametrize("overrides, field", [
    ({"gateway.coalesce": {"max_wait_s": 0}}, "gateway.coalesce.max_wait_s"),
    ({"gateway.coalesce": {"wait": 3}}, "gateway.coalesce.wait"),
    ({"gateway.coalesce": {}, "gateway.cache.exact": False, "gateway.cache.semantic": False}, "gateway.coalesce"),
])
def test_a_bad_coalesce_setting_names_the_scenario_field_before_the_run(overrides, field):
    from llmlab.sim import simulate
    from llmlab.sim.scenario import ScenarioError

    with pytest.raises(ScenarioError) as err:
        simulate("b2b-saas", requests=10, overrides=overrides, baseline=False)
    assert err.value.field == field


def test_a_sync_request_on_the_thread_of_a_half_read_stream_does_not_wait_for_it():
    """The leader is a synchronous stream read halfway on this thread: only this thread can move
    it on, so an identical request here would wait its whole ``max_wait_s`` for nothing."""
    gw, driver = scripted(coalesce=Coalesce(max_wait_s=5, streams=True))
    chunks = iter(gw.stream(QUESTION, request_id="a"))
    next(chunks)
    started = time.monotonic()
    out = gw.complete(QUESTION, request_id="b")
    assert time.monotonic() - started < 2.5 and out.kind is OutcomeKind.MODEL and len(driver.calls) == 2
    list(chunks)
    assert gw.flights.in_flight == 0


def test_a_request_made_inside_the_leaders_own_does_not_wait_for_it():
    """An output guard (user code the leader runs before it lands) asks the same question: its
    request cannot wait for the leader that is running it."""
    from llmlab.guardrails.base import OutputVerdict

    inner = []

    class Asking:
        name = "asking"

        def check_output(self, text):
            if not inner:
                started = time.monotonic()
                inner.append(None)
                inner[0] = (gw.complete(QUESTION, request_id="from-guard"), time.monotonic() - started)
            return OutputVerdict(text)

    gw, driver = scripted(coalesce=Coalesce(max_wait_s=5), output_guards=[Asking()])
    assert gw.complete(QUESTION, request_id="a").kind is OutcomeKind.MODEL
    out, took = inner[0]
    assert took < 2.5 and out.kind is OutcomeKind.MODEL and len(driver.calls) == 2
