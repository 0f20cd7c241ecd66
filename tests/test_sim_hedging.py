"""Hedged calls in the simulator: the same race as live, in virtual time (llmlab.sim.race)."""
from __future__ import annotations

import json
import math

import pytest

from llmlab.sim import load_scenario, simulate
from llmlab.sim.scenario import ScenarioError

HEDGED = """
name = "hedged"
[traffic]
requests = 60
rate_per_s = 1.0
fixed_prompt_tokens = 300
fixed_answer_tokens = 40
max_tokens = 200
stream = true
[[traffic.tenants]]
plan = "p"
[providers.slow]
model = "gpt-4o-mini"
ttft_dist = "fixed"
ttft_s = 3.0
tokens_per_s = 100.0
tokens_per_s_sigma = 0.0
timeout_s = 10.0
[providers.quick]
model = "gpt-4o"
ttft_dist = "fixed"
ttft_s = 0.2
tokens_per_s = 50.0
tokens_per_s_sigma = 0.0
[gateway.router]
type = "fixed"
deployment = "slow"
[gateway.fallbacks]
slow = ["quick"]
[gateway.cache]
exact = false
[baseline]
enabled = false
"""


def same(a: dict, b: dict) -> bool:
    """Equal summaries, NaN included (a summary's undefined numbers are NaN)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "hedged.toml"
    path.write_text(HEDGED)
    return path


def test_a_hedge_serves_every_turn_when_the_first_deployment_is_slow_to_start(scenario):
    plain = simulate(scenario, seed=0, keep_requests=True)
    hedged = simulate(scenario, seed=0, overrides={"gateway.hedge.after_s": 1.0}, keep_requests=True)
    assert (plain.turns["deployment"] == "slow").all()
    assert plain.turns["ttft_s"].min() == pytest.approx(3.0)
    assert (hedged.turns["deployment"] == "quick").all()
    # sent at 1.0 s, its first token 0.2 s later; its 40 tokens at 50/s end the stream at 2.0 s
    assert hedged.turns["ttft_s"].to_numpy() == pytest.approx(1.2)
    assert hedged.turns["latency_s"].to_numpy() == pytest.approx(2.0)
    attempts = hedged.requests["attempts"]
    assert all([a["purpose"] for a in row] == ["answer", "hedge"] for row in attempts)
    lost = [row[0] for row in attempts]
    assert all(a["error"].startswith("cancelled: quick started answering first") for a in lost)
    assert all(a["prompt_tokens"] > 0 and a["completion_tokens"] == 0 and a["cost_usd"] > 0 for a in lost)
    assert all(a["latency_s"] == pytest.approx(1.2) for a in lost)  # cancelled at the hedge's first token
    # the cost is the hedge's answer (gpt-4o) plus each loser's prompt (gpt-4o-mini)
    per_turn = hedged.turns["cost_usd"].to_numpy()
    answered = [row[1]["cost_usd"] + row[0]["cost_usd"] for row in attempts]
    assert per_turn == pytest.approx(answered)
    assert hedged.summary["fallback_rate"] == 1.0  # answered by a deployment other than the one routed to


def test_no_hedge_when_the_first_deployment_answers_in_time_and_the_run_is_unchanged(scenario):
    """A hedge that is never sent takes no random draw: the run is the unhedged one exactly."""
    fast = {"providers.slow.ttft_s": 0.5}
    plain = simulate(scenario, seed=3, overrides=fast)
    hedged = simulate(scenario, seed=3, overrides={**fast, "gateway.hedge.after_s": 1.0})
    assert same(plain.summary, hedged.summary)
    assert plain.turns.equals(hedged.turns)


def test_a_cancelled_loser_gives_its_slot_back_at_once(scenario):
    """One slot at the slow deployment, a turn every two seconds on average, each turn's slow call
    cancelled at 1.2 s: every first call gets the slot, at once or after a short queue.  A loser
    that kept its slot (interrupted without giving it back) left every later first call queued
    until its own hedge won: one call served in all."""
    from llmlab.sim.run import make_traffic, run_once

    sc = load_scenario(scenario, {"providers.slow.capacity": 1, "gateway.hedge.after_s": 1.0,
                                  "traffic.rate_per_s": 0.5})
    seen = {}
    rec, summary = run_once(sc, make_traffic(sc, seed=0), seed=0, keep_requests=False,
                            observe=lambda env, app: seen.update(app=app))
    slow = seen["app"].driver.providers["slow"]
    assert summary["requests"] == 60 and slow.calls == 60
    assert slow.served == 60 and slow.wait_total / 60 < 0.5
    assert slow.errors == {"cancelled": 60} and slow.in_system == 0 and slow.slots.free == 1


def test_hedged_runs_reproduce_exactly_from_their_seed(scenario):
    slowish = {"providers.slow.ttft_dist": "lognormal", "providers.slow.ttft_s": 0.8,
               "providers.slow.ttft_sigma": 0.6, "gateway.hedge.after_s": 1.0}
    a = simulate(scenario, seed=5, overrides=slowish)
    b = simulate(scenario, seed=5, overrides=slowish)
    assert same(a.summary, b.summary) and a.turns.equals(b.turns)
    winners = set(a.turns["deployment"])
    assert winners == {"slow", "quick"}  # some first calls answer within 1 s, the others lose their race


def test_the_hedge_setting_is_checked():
    for bad in (0, -1.0, math.nan, 601.0):
        with pytest.raises(ScenarioError, match=r"^gateway\.hedge\.after_s"):
            load_scenario("realtime-chat", {"gateway.hedge.after_s": bad, "gateway.cache.embedder": "hashed"})
        with pytest.raises(ScenarioError, match=r"^gateway\.hedge\.unstreamed_after_s"):
            load_scenario("realtime-chat", {"gateway.hedge": {"after_s": 1.0, "unstreamed_after_s": bad},
                                            "gateway.cache.embedder": "hashed"})


def test_calls_that_are_not_streamed_wait_for_their_own_threshold(scenario):
    """The agent-like case: a call that is not streamed answers only with its whole answer, so it
    waits for ``unstreamed_after_s`` — or is never hedged."""
    unstreamed = {"traffic.stream": False, "providers.slow.ttft_s": 1.5}  # whole answers at 1.9 s
    late = simulate(scenario, seed=0, overrides={**unstreamed, "gateway.hedge": {"after_s": 0.5,
                                                                                 "unstreamed_after_s": 2.5}})
    never = simulate(scenario, seed=0, overrides={**unstreamed, "gateway.hedge": {"after_s": 0.5, "unstreamed": False}})
    eager = simulate(scenario, seed=0, overrides={**unstreamed, "gateway.hedge.after_s": 0.5})
    assert (late.turns["deployment"] == "slow").all() and (never.turns["deployment"] == "slow").all()
    assert same(late.summary, never.summary)  # no hedge sent before the answer at 1.9 s
    assert (eager.turns["deployment"] == "quick").all()  # sent at 0.5 s: 0.2 s + 40 tokens at 50/s = 1.5 s


def test_the_summary_and_the_turns_say_how_often_a_hedge_was_sent_and_won(scenario):
    slowish = {"providers.slow.ttft_dist": "lognormal", "providers.slow.ttft_s": 0.8,
               "providers.slow.ttft_sigma": 0.6, "gateway.hedge.after_s": 1.0}
    r = simulate(scenario, seed=5, overrides=slowish, keep_requests=True)
    sent = [any(a["purpose"] == "hedge" for a in row) for row in r.requests["attempts"]]
    won = [any(a["purpose"] == "hedge" and a["ok"] for a in row) for row in r.requests["attempts"]]
    assert list(r.turns["hedged"]) == sent and list(r.turns["hedge_won"]) == won
    assert 0 < sum(won) < sum(sent) < 60  # some first calls answer in time, some hedges lose
    assert r.summary["hedge_rate"] == pytest.approx(sum(sent) / 60)
    assert r.summary["hedge_win_rate"] == pytest.approx(sum(won) / sum(sent))
    plain = simulate(scenario, seed=5, overrides={"providers.slow.ttft_s": 0.5})
    assert plain.summary["hedge_rate"] == 0.0 and math.isnan(plain.summary["hedge_win_rate"])


def test_no_hedge_once_its_deployments_breaker_opened_during_the_wait(scenario):
    """The turn's call goes out, its hedge is due 1 s later; the hedge's deployment's breaker
    opens 0.5 s after the call went out (as other turns' failures would open it): no hedge."""
    from llmlab.sim.run import make_traffic, run_once

    sc = load_scenario(scenario, {"gateway.hedge.after_s": 1.0, "traffic.requests": 1})

    def open_quick_at_half_a_second(env, app):
        def opener():
            slow = app.driver.providers["slow"]
            while not slow.in_system:  # until the turn's call is out
                yield env.timeout(0.01)
            yield env.timeout(0.5)
            breaker = app.pipeline.breaker("quick")
            for _ in range(breaker.failure_threshold):
                breaker.record_failure(app.pipeline.clock())
        env.process(opener())

    rec, summary = run_once(sc, make_traffic(sc, seed=0), seed=0, keep_requests=True,
                            observe=open_quick_at_half_a_second)
    assert summary["requests"] == 1 and summary["hedge_rate"] == 0.0 and summary["availability"] == 1.0


def test_a_hedge_under_a_cap_holds_the_losers_billed_prompt_not_its_token_estimate():
    """The hold for a hedge's loser priced its prompt at the tokenizer's count
    (``counted_prompt``), which the provider may exceed: the simulated ones bill the prompt's
    catalogue length, up to its bytes, the bound every other hold takes.  With 100,000-token
    prompts the b2b-saas caps ($0.50 a paid tenant) were overshot by $0.20 in 40 turns: a
    first call's answer plus its hedge's prompt, both billed, past the cap."""
    overrides = {"gateway.cache.embedder": "hashed", "gateway.hedge": {"after_s": 0.001},
                 "traffic.fixed_prompt_tokens": 100_000, "baseline.enabled": False}
    result = simulate("b2b-saas", overrides=overrides, requests=40, seed=0)
    assert result.summary["budget_rejections"] > 0  # the caps bind
    assert result.summary["budget_overshoot_usd"] == 0.0
    spent = result.turns.groupby("tenant")["cost_usd"].sum()
    assert (spent[spent.index.str.startswith("paid")] <= 0.5 + 1e-12).all(), spent.max()
    # where a cap has room for both calls' worst case the hedges still go out
    roomy = simulate("b2b-saas", overrides={**overrides, "traffic.fixed_prompt_tokens": 5_000}, requests=40, seed=0)
    assert roomy.summary["hedge_rate"] > 0.5 and roomy.summary["budget_overshoot_usd"] == 0.0
