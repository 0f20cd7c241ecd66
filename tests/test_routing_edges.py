"""Routing at its edges: what a cascade caches and serves when its escalation fails or the
budget is short, plans checked through nested routers, the classifier's labels and the default
acceptance check, and router settings refused (named as a scenario spells them)."""
import asyncio

import pytest

from llmlab import (BudgetPolicy, CascadeRouter, ClassifierRouter, ComplexityRouter, ConfigError, Deployment, ErrorKind,
                    FixedRouter, Hedge, InvalidRequest, OutcomeKind, PlanRouter, RetryPolicy)
from llmlab.effects import CacheOutcome, CallResult
from llmlab.routing import default_acceptance, parse_label

TWO = [Deployment("gpt-4o", "gpt-4o"), Deployment("gpt-4o-mini", "gpt-4o-mini")]
CASCADE = ("gpt-4o-mini", "gpt-4o")


def test_a_rejected_answer_served_because_the_escalation_failed_is_not_cached(make_gateway, driver):
    """The cheap stage's answer is rejected, the next stage is down, and the rejected answer is
    served — better than nothing.  It was cached too: every identical request then got the
    answer the check had rejected from the cache for the TTL, never escalating again once the
    better model was back."""
    gw = make_gateway(deployments=TWO, router=CascadeRouter(CASCADE), fallbacks={},
                      retry=RetryPolicy(max_retries=0))
    driver.script("gpt-4o-mini", "I don't know.")
    driver.script("gpt-4o", ErrorKind.SERVER)
    served = gw.complete("a tricky question")
    assert served.deployment == "gpt-4o-mini" and "escalation failed" in served.route_reason
    driver.script("gpt-4o-mini", "I don't know.")  # the same rejection; gpt-4o is back
    again = gw.complete("a tricky question")
    assert again.kind is OutcomeKind.MODEL and again.cache is CacheOutcome.MISS, again.route_reason
    assert again.deployment == "gpt-4o" and [a.purpose for a in again.attempts] == ["cascade", "check", "answer"]
    hit = gw.complete("a tricky question")  # the escalated answer is the one cached
    assert hit.cache is CacheOutcome.EXACT_HIT and hit.model == "gpt-4o" and hit.text == again.text


def test_the_ledger_says_which_cascade_stage_answered_and_why_it_escalated(make_gateway, driver):
    """Every cascade answer said ``route_tier`` ``cascade-0`` and a rejection left no word in
    ``route_reason`` (a failed stage did): the escalation rate, the signal notebook 02 suggests
    watching, could be read only by parsing the attempts."""
    three = CascadeRouter(("gpt-4o-mini", "claude", "gpt-4o"))
    gw = make_gateway(router=three, fallbacks={}, retry=RetryPolicy(max_retries=0), cache=False)
    assert gw.complete("easy").route_tier == "cascade-0"
    driver.script("gpt-4o-mini", "I don't know.")
    second = gw.complete("harder")
    assert (second.deployment, second.route_tier) == ("claude", "cascade-1")
    assert "gpt-4o-mini's answer: rejected by acceptance check → escalating" in second.route_reason
    driver.script("gpt-4o-mini", "I don't know.")
    driver.script("claude", ErrorKind.SERVER)
    third = gw.complete("hardest")
    assert (third.deployment, third.route_tier) == ("gpt-4o", "cascade-2")
    driver.script("gpt-4o-mini", "I don't know.")
    driver.script("claude", ErrorKind.SERVER)
    driver.script("gpt-4o", ErrorKind.SERVER)
    served = gw.complete("no luck")  # every later stage failed: the cheap stage's answer, its tier
    assert (served.deployment, served.route_tier) == ("gpt-4o-mini", "cascade-0")
    frame = gw.ledger.to_dataframe()
    assert list(frame["route_tier"]) == ["cascade-0", "cascade-1", "cascade-2", "cascade-0"]


def test_an_accepted_cheap_answer_is_still_cached(make_gateway, driver):
    """Regression guard for the fix above: only a rejected answer is kept out of the cache."""
    gw = make_gateway(deployments=TWO, router=CascadeRouter(CASCADE), fallbacks={})
    first = gw.complete("an easy question")
    assert first.deployment == "gpt-4o-mini"
    hit = gw.complete("an easy question")
    assert hit.cache is CacheOutcome.EXACT_HIT and hit.model == "gpt-4o-mini" and len(driver.calls) == 1


def test_a_cascade_over_budget_is_downgraded_to_its_cheap_stage(make_gateway, driver):
    """``on_exceed="downgrade"`` to the cascade's own cheap stage: a tenant who cannot afford the
    cascade's hold (every stage) but can afford the cheap stage alone was refused — the
    downgrade was skipped because the decision's first deployment already was the target."""
    policy = BudgetPolicy(caps={"acme": 1.0}, on_exceed="downgrade", downgrade_to="gpt-4o-mini")
    gw = make_gateway(deployments=TWO, router=CascadeRouter(CASCADE), fallbacks={}, budget=policy, cache=False)
    p = gw.pipeline
    prompt = "hello there"
    cheap = p.worst_case_cost(p.chain_for("gpt-4o-mini"), 50, 200)
    both = cheap + p.worst_case_cost(p.chain_for("gpt-4o"), 50, 200)
    policy.caps["acme"] = (cheap + both) / 2  # affords the cheap stage alone, not the cascade
    out = gw.complete(prompt, tenant="acme", max_tokens=200)
    assert out.ok and out.deployment == "gpt-4o-mini" and out.route_tier == "downgraded", out.error
    assert "downgraded to gpt-4o-mini" in out.route_reason
    assert [a.purpose for a in out.attempts] == ["answer"]  # no escalation the budget never held


def test_a_plan_router_nested_in_a_classifier_refuses_an_unlisted_plan_before_any_call(make_gateway, driver):
    """The gateway checked the plan of the router it was given only: a plan router behind a
    classifier's label failed a request of an unlisted plan as an internal error (logged as a
    gateway bug), after its classification had been paid for."""
    router = ClassifierRouter("gpt-4o-mini", routes={"faq": "gpt-4o-mini", "general": "gpt-4o-mini",
                                                     "complex": PlanRouter({"paid": "gpt-4o", "free": "gpt-4o-mini"})})
    gw = make_gateway(deployments=TWO, router=router, fallbacks={})
    driver.script("gpt-4o-mini", "COMPLEX")
    with pytest.raises(InvalidRequest) as info:
        gw.complete("analyse our churn", plan="trial")
    assert info.value.field == "plan" and driver.calls == []
    assert gw.complete("analyse our churn", plan="paid").deployment == "gpt-4o"


def test_a_hedge_that_won_is_counted_as_served_in_the_cost_breakdown(make_gateway, driver):
    """``teaching.cost_breakdown`` took only answer and cascade calls for the served one: the
    winning hedge's cost went to ``unserved_usd`` and its tokens were missing from the
    input/output split the notebook compares with the lecture's shares."""
    from llmlab.teaching import cost_breakdown

    gw = make_gateway(deployments=TWO, router=FixedRouter("gpt-4o"), fallbacks={"gpt-4o": ["gpt-4o-mini"]},
                      hedge=Hedge(0.5), cache=False)
    driver.script("gpt-4o", CallResult("a slow answer from the big model", 100, 50, 5.0, 5.0))
    driver.script("gpt-4o-mini", CallResult("a fast answer from the small model", 100, 50, 0.2, 0.2))
    out = asyncio.run(gw.acomplete("hello"))
    assert out.deployment == "gpt-4o-mini" and [a.purpose for a in out.attempts] == ["answer", "hedge"]
    rows = cost_breakdown(gw.ledger).set_index("model")
    hedge = out.attempts[1]
    assert rows.loc["gpt-4o-mini", "unserved_usd"] == 0.0
    assert rows.loc["gpt-4o-mini", "input_usd"] + rows.loc["gpt-4o-mini", "output_usd"] == pytest.approx(hedge.cost_usd)
    assert rows.loc["gpt-4o", "unserved_usd"] == pytest.approx(out.attempts[0].cost_usd)  # the cancelled loser


@pytest.mark.parametrize("reply, label", [
    ("**FAQ**", "faq"), ('"complex"', "complex"), ("COMPLEX or FAQ", "complex"), ("Label: general", "general"),
    ("Complexity", "complex"), ("FAQ", "faq"), ("banana", None), ("", None),
])
def test_the_classifiers_label_is_read_past_markup_and_the_first_label_wins(reply, label):
    """A label in bold or quotes read as no label (the request fell to ``fallback_label``), and a
    label later in the reply beat the one it started with."""
    assert parse_label(reply) == label


def test_a_markdown_label_routes_to_its_tier(make_gateway, driver):
    driver.script("gpt-4o-mini", "**COMPLEX**")
    out = make_gateway(deployments=TWO, router=ClassifierRouter("gpt-4o-mini"), fallbacks={}).complete("analyse churn")
    assert out.route_tier == "complex" and out.deployment == "gpt-4o", out.route_reason


@pytest.mark.parametrize("answer, accepted", [
    ("설정 메뉴에서 변경할 수 있습니다.", True),  # 19 characters: "you can change it in the settings menu."
    ("Settings → Security → SSO.", True),
    ("네.", False), ("Yes.", False),  # trivial in either language
    ("잘 모르겠습니다. 다른 질문을 해 주세요.", False),  # a refusal
])
def test_the_default_acceptance_check_does_not_reject_short_complete_korean_answers(answer, accepted):
    """The check counted characters: a complete Korean answer is about half the characters of its
    English one, so Korean users' short answers were all escalated to the dear stage."""
    assert default_acceptance(answer, None) is accepted


def test_router_settings_no_route_could_use_are_refused():
    """A cascade stage named "" and a complexity tier beyond low/medium/high were taken (the
    first failed at the gateway as ``router=''``, the second was never routed to)."""
    with pytest.raises(ConfigError) as info:
        CascadeRouter(["gpt-4o-mini", ""])
    assert info.value.field == "cascade.stages"
    with pytest.raises(ConfigError) as info:
        ComplexityRouter(models={"low": "a", "medium": "b", "high": "c", "hihg": "d"})
    assert info.value.field == "complexity.models"


def test_a_cascade_stage_named_twice_in_a_scenario_is_refused_by_the_scenarios_field_before_the_run():
    """The library router's refusal reached the scenario as ``gateway.cascade.stages``, a field
    no scenario has: the router's fields are under ``gateway.router``."""
    stages = ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]
    from llmlab.sim import simulate
    from llmlab.sim.scenario import ScenarioError

    with pytest.raises(ScenarioError) as err:
        simulate("b2b-saas", requests=10, baseline=False,
                 overrides={"gateway.router.type": "cascade", "gateway.router.stages": stages})
    assert err.value.field == "gateway.router.stages"


def test_a_cascade_stage_does_not_fall_back_to_another_stage(make_gateway, driver):
    """With ``fallbacks={"gpt-4o-mini": ["gpt-4o"]}`` and stages (gpt-4o-mini, gpt-4o), a failed
    cheap stage fell back to gpt-4o, whose answer the cheap stage's check rejected, and the
    escalation then called gpt-4o again: one request, the dear model answering (and billed) twice,
    and its worst case held twice.  A stage's chain now leaves the other stages to the cascade."""
    gw = make_gateway(router=CascadeRouter(CASCADE),
                      fallbacks={"gpt-4o-mini": ["gpt-4o", "claude"], "gpt-4o": ["gpt-4o-mini"]},
                      retry=RetryPolicy(max_retries=0), cache=False)
    driver.script("gpt-4o-mini", ErrorKind.SERVER)
    driver.script("claude", "I don't know.")
    driver.script("gpt-4o", "Reset it from Settings → Security → Password, then sign in again.")
    out = gw.complete("how do I reset my password?")
    calls = [(a.deployment, a.purpose) for a in out.attempts if a.purpose != "check"]
    assert calls == [("gpt-4o-mini", "cascade"), ("claude", "cascade"), ("gpt-4o", "answer")], calls
    assert out.deployment == "gpt-4o" and out.route_tier == "cascade-1"
    driver.script("gpt-4o-mini", "I don't know.")
    driver.script("gpt-4o", ErrorKind.SERVER)  # the last stage fails: not back to the rejected cheap stage
    served = gw.complete("a tricky question")
    assert [a.deployment for a in served.attempts if a.purpose != "check"] == ["gpt-4o-mini", "gpt-4o"]
    assert served.deployment == "gpt-4o-mini" and "escalation failed" in served.route_reason
