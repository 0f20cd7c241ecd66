import pytest

from llmlab import (CascadeRouter, ClassifierRouter, ComplexityRouter, ConfigError, ErrorKind, OutcomeKind,
                    PlanRouter, Request, RetryPolicy)
from llmlab.routing import parse_label


def decide(router, text, plan="free"):
    gen = router.decide(Request.build(text, plan=plan))
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("static router yielded an effect")


def test_complexity_router_lecture_thresholds():
    r = ComplexityRouter()
    assert decide(r, "x" * 99).deployment == "gpt-4o-mini"
    assert decide(r, "x" * 100).deployment == "gpt-4o"
    assert decide(r, "x" * 499).tier == "medium"
    d = decide(r, "x" * 500)
    assert d.deployment == "claude-sonnet-4-20250514" and d.tier == "high" and "500 chars" in d.reason
    custom = ComplexityRouter((10, 20), {"low": "a", "medium": "b", "high": "c"})
    assert decide(custom, "x" * 15).deployment == "b"


@pytest.mark.parametrize("thresholds", [(500, 100), (0, 10), (10,), ("a", 5)])
def test_complexity_thresholds_validated(thresholds):
    with pytest.raises(ConfigError) as info:
        ComplexityRouter(thresholds)
    assert "complexity.thresholds" in info.value.field


def test_plan_router_and_composition():
    r = PlanRouter()
    assert decide(r, "hi", "paid").deployment == "gpt-4o"
    assert decide(r, "hi", "free").deployment == "gpt-4o-mini"
    nested = PlanRouter({"paid": ComplexityRouter(), "free": "gpt-4o-mini"})
    d = decide(nested, "x" * 600, "paid")
    assert d.deployment == "claude-sonnet-4-20250514" and "plan 'paid'" in d.reason and "complexity" in d.reason
    assert nested.targets() == {"gpt-4o-mini", "gpt-4o", "claude-sonnet-4-20250514"}


def test_parse_label():
    assert parse_label("FAQ") == "faq" and parse_label(" complex.") == "complex"
    assert parse_label("Complex") == "complex" and parse_label("banana") is None


def test_classifier_router_faq_rule_costs_nothing(make_gateway, driver):
    driver.script("gpt-4o-mini", "FAQ")
    rules = lambda req: "Use the 'Forgot password' link." if "password" in req.text else None
    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini", rules=rules))
    out = gw.complete("how do I reset my password")
    assert out.kind is OutcomeKind.RULE and out.text.startswith("Use the")
    assert [a.purpose for a in out.attempts] == ["classify"]
    assert out.cost_usd == pytest.approx(out.attempts[0].cost_usd) and out.cost_usd < 5e-5
    driver.script("gpt-4o-mini", "COMPLEX")
    out = gw.complete("analyse our churn by cohort")
    assert out.deployment == "gpt-4o" and out.route_tier == "complex"


def test_classifier_failure_degrades_routing_not_availability(make_gateway, driver):
    driver.script("gpt-4o-mini", ErrorKind.SERVER)
    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini"))
    out = gw.complete("hello")
    assert out.ok and out.route_tier == "general" and "classifier failed" in out.route_reason


def test_a_failing_classifier_is_skipped_by_its_circuit_breaker_until_it_recovers(make_gateway, driver, clock):
    """A router's own call had no breaker: with the classifier's provider slowed past its timeout,
    every request waited out that timeout before routing by default (the realtime-chat drill
    missed its 3 s P95 TTFT that way).  It now goes through its deployment's breaker: once open,
    requests route by default at once, and after the cooldown one probe tries the classifier."""
    from llmlab import Deployment

    deployments = [Deployment("gpt-4o", "gpt-4o"), Deployment("gpt-4o-mini", "gpt-4o-mini"),
                   Deployment("classifier", "gpt-4o-mini", timeout_s=0.6)]
    healthy = {"on": False}
    driver.default = lambda call: ("GENERAL" if healthy["on"] else ErrorKind.TIMEOUT) if call.purpose == "classify" \
        else "ok: an answer that is long enough to accept"
    gw = make_gateway(deployments=deployments, fallbacks={},
                      router=ClassifierRouter("classifier"),
                      breaker={"failure_threshold": 3, "cooldown_s": 30.0})
    outcomes = [gw.complete(f"question {i}") for i in range(10)]
    classified = [sum(a.purpose == "classify" for a in o.attempts) for o in outcomes]
    assert classified == [1, 1, 1] + [0] * 7  # the breaker opened after three failures
    assert all(o.ok and o.deployment == "gpt-4o-mini" for o in outcomes)
    assert "circuit open for classifier" in outcomes[-1].route_reason
    assert gw.pipeline.breaker("classifier").state == "open"
    healthy["on"] = True
    clock.advance(31.0)
    probe = gw.complete("question after the cooldown")
    assert [a.purpose for a in probe.attempts] == ["classify", "answer"] and probe.route_tier == "general"
    assert gw.pipeline.breaker("classifier").state == "closed"


def test_a_budget_backend_that_raises_does_not_strand_the_classifiers_probe(make_gateway, driver, clock):
    """The router's call takes its breaker's half-open probe before its budget hold; a budgets
    backend raising there (a user's store, a bug) ended the request as an internal error with the
    probe still out, and a half-open breaker admits no one else: the classifier was skipped for
    good.  The probe is released as when the call itself is cancelled."""
    from llmlab import BudgetPolicy, Deployment, MemoryBudgets

    class Flaky(MemoryBudgets):
        fail = False

        def try_reserve(self, *args, **kwargs):
            if Flaky.fail:
                Flaky.fail = False
                raise RuntimeError("budget store glitch")
            return super().try_reserve(*args, **kwargs)

    deployments = [Deployment("gpt-4o", "gpt-4o"), Deployment("gpt-4o-mini", "gpt-4o-mini"),
                   Deployment("classifier", "gpt-4o-mini", timeout_s=0.6)]
    healthy = {"on": False}
    driver.default = lambda call: ("GENERAL" if healthy["on"] else ErrorKind.TIMEOUT) if call.purpose == "classify" \
        else "ok: an answer that is long enough to accept"
    gw = make_gateway(deployments=deployments, fallbacks={}, router=ClassifierRouter("classifier"),
                      breaker={"failure_threshold": 1, "cooldown_s": 30.0},
                      budget=BudgetPolicy(default_cap=100.0), budget_backend=Flaky())
    gw.complete("opens the breaker")
    assert gw.pipeline.breaker("classifier").state == "open"
    healthy["on"] = True
    clock.advance(31.0)
    Flaky.fail = True
    assert not gw.complete("the probe's hold raises").ok
    probe = gw.complete("the next request probes the classifier")
    assert [a.purpose for a in probe.attempts] == ["classify", "answer"], probe.route_reason
    assert gw.pipeline.breaker("classifier").state == "closed"


def test_cascade_escalates_on_rejection_and_on_check_exception(make_gateway, driver):
    driver.script("gpt-4o-mini", "I don't know.")
    gw = make_gateway(router=CascadeRouter(("gpt-4o-mini", "gpt-4o")),
                      fallbacks={"gpt-4o-mini": ["gpt-4o-mini"], "gpt-4o": ["claude"]})
    out = gw.complete("tricky question")
    assert out.deployment == "gpt-4o"
    assert [a.purpose for a in out.attempts] == ["cascade", "check", "answer"]
    accepted = gw.complete("easy question")
    assert accepted.deployment == "gpt-4o-mini"

    def broken(text, req):
        raise KeyError("grader down")

    gw2 = make_gateway(router=CascadeRouter(("gpt-4o-mini", "gpt-4o"), accept=broken))
    out = gw2.complete("anything")
    assert out.ok and out.deployment == "gpt-4o"
    assert any(a.purpose == "check" and "KeyError" in a.error for a in out.attempts)


def test_a_cascade_stage_named_twice_is_refused():
    with pytest.raises(ConfigError) as info:
        CascadeRouter(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"])
    assert info.value.field == "cascade.stages" and "distinct" in str(info.value)
    assert CascadeRouter(["gpt-4o-mini", "gpt-4o"]).stages == ("gpt-4o-mini", "gpt-4o")


def test_router_targets_must_be_deployments(make_gateway):
    with pytest.raises(ConfigError) as info:
        make_gateway(router=PlanRouter({"paid": "gpt-5-ultra", "free": "gpt-4o-mini"}))
    assert info.value.field == "router" and info.value.value == "gpt-5-ultra"


def test_classifier_and_cascade_calls_are_not_counted_as_retries(make_gateway, driver):
    driver.script("gpt-4o-mini", "GENERAL")
    out = make_gateway(router=ClassifierRouter("gpt-4o-mini")).complete("hello")
    assert len(out.attempts) == 2 and out.retries == 0
    driver.script("gpt-4o-mini", "I don't know.")
    esc = make_gateway(router=CascadeRouter(("gpt-4o-mini", "gpt-4o"))).complete("tricky")
    assert esc.deployment == "gpt-4o" and esc.retries == 0
    driver.script("gpt-4o", ErrorKind.SERVER)
    assert make_gateway().complete("again").retries == 1


def test_a_cascade_stage_that_cannot_take_the_params_escalates_to_the_next(make_gateway, driver):
    """``unsupported_params`` means this deployment cannot take the request, not that the request
    is wrong: a cheap stage refusing ``seed`` (say) hands the request to the next stage, whose
    deployments may take it, as the next deployment of a chain does."""
    driver.script("gpt-4o-mini", ErrorKind.UNSUPPORTED)
    gw = make_gateway(router=CascadeRouter(("gpt-4o-mini", "gpt-4o")),
                      fallbacks={"gpt-4o-mini": ["gpt-4o-mini"], "gpt-4o": ["gpt-4o"]})
    out = gw.complete("hello", seed=7)
    assert out.ok and out.deployment == "gpt-4o", (out.error, out.attempts)
    assert [(a.purpose, (a.error or "").split(":")[0]) for a in out.attempts] == [
        ("cascade", "unsupported_params"), ("answer", "")]
    driver.script("gpt-4o-mini", ErrorKind.UNSUPPORTED)
    driver.script("gpt-4o", ErrorKind.UNSUPPORTED)
    refused = gw.complete("hello again", seed=7)
    assert not refused.ok and refused.error.code == "provider_rejected"


@pytest.mark.parametrize("kind", [ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.CONTEXT_WINDOW])
def test_a_cascade_stage_whose_chain_failed_escalates_to_the_next(make_gateway, driver, kind):
    """A cheap stage that is down (its whole chain failed: an outage, timeouts, a window too small)
    hands the request to the next stage, which the reservation already covers; the request used to
    fail while a more capable model was there to answer it."""
    gw = make_gateway(router=CascadeRouter(("gpt-4o-mini", "gpt-4o")),
                      fallbacks={"gpt-4o-mini": ["gpt-4o-mini"], "gpt-4o": ["gpt-4o"]},
                      retry=RetryPolicy(max_retries=0))
    driver.script("gpt-4o-mini", kind)
    out = gw.complete("hello")
    assert out.ok and out.deployment == "gpt-4o", (out.error, out.attempts)
    assert [a.purpose for a in out.attempts] == ["cascade", "answer"]
    assert f"gpt-4o-mini failed ({kind.value}) → escalating" in out.route_reason


def test_a_cascade_stops_at_a_fatal_error_and_serves_an_earlier_answer_when_a_later_stage_is_down(
        make_gateway, driver):
    """The request's own fault (auth, a bad request, a content filter) is not escalated: the next
    stage would refuse it too.  A stage that is down after an earlier one answered (and was
    rejected) escalates past it; when every later stage fails the earlier answer is served."""
    three = CascadeRouter(("gpt-4o-mini", "claude", "gpt-4o"))
    gw = make_gateway(router=three, fallbacks={"gpt-4o-mini": ["gpt-4o-mini"], "claude": ["claude"],
                                               "gpt-4o": ["gpt-4o"]}, retry=RetryPolicy(max_retries=0))
    driver.script("gpt-4o-mini", ErrorKind.BAD_REQUEST)
    refused = gw.complete("hello")
    assert not refused.ok and [a.deployment for a in refused.attempts] == ["gpt-4o-mini"]
    driver.script("gpt-4o-mini", "I don't know.")
    driver.script("claude", ErrorKind.SERVER)
    out = gw.complete("tricky")
    assert out.ok and out.deployment == "gpt-4o", (out.error, out.attempts)
    assert [a.deployment for a in out.attempts if a.purpose != "check"] == ["gpt-4o-mini", "claude", "gpt-4o"]
    driver.script("gpt-4o-mini", "I don't know.")
    driver.script("claude", ErrorKind.SERVER)
    driver.script("gpt-4o", ErrorKind.SERVER)
    served = gw.complete("tricky again")
    assert served.ok and served.deployment == "gpt-4o-mini" and "escalation failed" in served.route_reason


def test_a_classification_the_provider_billed_but_stopped_is_charged(make_gateway, driver):
    """A classifier call that failed after the provider billed it (its content filter stopped the
    label: usage reported) costs what it was billed, as an answer call's does; it was free."""
    from llmlab import BudgetPolicy
    from llmlab.effects import CallError

    filtered = CallError(ErrorKind.BAD_REQUEST, "the provider's content filter stopped the answer", 0.1,
                         billed=(400, 1))
    driver.script("gpt-4o-mini", filtered)
    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini"), budget=BudgetPolicy(caps={"t": 1.0}))
    out = gw.complete("hello", tenant="t")
    classify = out.attempts[0]
    assert out.ok and classify.purpose == "classify" and not classify.ok
    price = gw.pipeline.price_result(gw.pipeline.deployments["gpt-4o-mini"], __import__("llmlab").effects.CallResult(
        "", 400, 1, 0.1))
    assert (classify.prompt_tokens, classify.completion_tokens) == (400, 1) and classify.cost_usd == pytest.approx(price)
    assert out.cost_usd == pytest.approx(sum(a.cost_usd for a in out.attempts))
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)


def test_a_classifier_nested_in_another_router_is_bound_by_the_gateway():
    """The gateway bound only the router it was given: a classifier inside a plan router (or
    inside another classifier) failed every request it routed with an internal error."""
    from llmlab import ClassifierRouter, Deployment, Gateway, PlanRouter

    deps = [Deployment(n, "gpt-4o-mini", {"mock_response": "complex"}) for n in ("small", "big")]
    inner = ClassifierRouter("small", routes={"faq": "small", "general": "small", "complex": "big"})
    for router in (PlanRouter({"paid": inner, "free": "small"}),
                   ClassifierRouter("small", routes={"faq": "small", "general": "small", "complex": inner})):
        out = Gateway(deps, router=router, cache=False).complete("Compare three plans in depth", plan="paid")
        assert out.ok and out.deployment == "big", (out.error, out.route_reason)


@pytest.mark.parametrize("nested", [False, True])
def test_a_router_shared_by_two_gateways_classifies_on_each_gateways_own_deployment(nested):
    """One router object given to two gateways (a module-level router, one gateway per region or
    key) was bound to the last gateway built: the first one's classifier calls went to the second's
    deployment — its ``api_base`` and its key — while its answers went to its own."""
    from llmlab import Deployment, Gateway
    from llmlab.scripted import FakeClock, ScriptedDriver

    classifier = ClassifierRouter("mini", routes={"faq": "mini", "general": "mini", "complex": "big"})
    router = PlanRouter({"free": classifier}) if nested else classifier

    def gateway(region):
        driver = ScriptedDriver(clock=FakeClock(), default="GENERAL")
        deployments = [Deployment(name, model, {"api_base": f"https://{region}.example/v1"})
                       for name, model in (("mini", "gpt-4o-mini"), ("big", "gpt-4o"))]
        return Gateway(deployments, router=router, driver=driver, clock=driver.clock), driver

    eu, eu_calls = gateway("eu")
    us, us_calls = gateway("us")
    for gw, driver, region in ((eu, eu_calls, "eu"), (us, us_calls, "us")):
        assert gw.complete("a question from this region").ok
        sent = {(c.purpose, c.deployment.params["api_base"]) for c in driver.calls}
        assert sent == {("classify", f"https://{region}.example/v1"), ("answer", f"https://{region}.example/v1")}


def test_a_router_that_decides_at_once_is_not_run_as_a_generator(make_gateway):
    """decide_now: the pipeline takes the decision without decide()'s generator (a frame, a
    StopIteration and its catch per request); decide() runs only when it says None."""
    runs = []

    class Now(PlanRouter):
        def decide_now(self, request):
            runs.append("now")
            return super().decide_now(request) if request.plan == "paid" else None

    router = Now({"paid": "gpt-4o", "free": "gpt-4o-mini"})
    real = router.decide

    def counted(request):
        runs.append("decide")
        return (yield from real(request))

    router.decide = counted
    gw = make_gateway(router=router)
    assert gw.complete("hi", plan="paid").deployment == "gpt-4o"
    assert gw.complete("hello", plan="free").deployment == "gpt-4o-mini"
    assert runs == ["now", "now", "decide"]


def test_decide_now_agrees_with_decide_and_follows_edits():
    r = PlanRouter({"paid": "gpt-4o", "free": "gpt-4o-mini"}, default="gpt-4o-mini")
    for plan in ("paid", "free", "trial"):
        req = Request.build("hi", plan=plan)
        assert r.decide_now(req) == decide(r, "hi", plan)
    r.plans["paid"] = "claude"  # a remembered decision does not outlive an edit of the plans
    assert r.decide_now(Request.build("hi", plan="paid")).deployment == "claude"
    assert PlanRouter({"paid": ComplexityRouter(), "free": "x"}).decide_now(Request.build("hi", plan="paid")) is None

    class Own(PlanRouter):  # a subclass with its own decide(): that one runs
        def decide(self, request):
            return (yield from super().decide(request))

    assert Own().decide_now(Request.build("hi", plan="paid")) is None
    fixed = ComplexityRouter()
    assert fixed.decide_now(Request.build("x" * 600)) == decide(fixed, "x" * 600)
