"""Bad input is a typed error at construction naming the field and the allowed values."""
import math
import subprocess
import sys

import pytest

from llmlab import (BudgetPolicy, ClassifierRouter, ComplexityRouter, ConfigError, Deployment, FixedRouter, Gateway, InvalidRequest,
                    PlanRouter, RateLimit, RateLimiter, RetryPolicy, UnknownModelPrice)


def test_empty_prompt_and_bad_messages(make_gateway):
    gw = make_gateway()
    for bad in ["", "   ", [], [{"content": "no role"}], 42]:
        with pytest.raises(InvalidRequest) as info:
            gw.complete(bad)
        assert info.value.field in ("prompt", "messages", "messages[0]")
    with pytest.raises(InvalidRequest) as info:
        gw.complete("hi", tenant="")
    assert info.value.field == "tenant"


def test_unknown_model_and_unpriced_chain_member():
    with pytest.raises(UnknownModelPrice) as info:
        Gateway([Deployment("x", "my-secret-finetune")], router=FixedRouter("x"), fallbacks={})
    assert info.value.model == "my-secret-finetune" and "with_overrides" in str(info.value)
    ok = Gateway([Deployment("x", "my-secret-finetune")], router=FixedRouter("x"), fallbacks={},
                 prices={"my-secret-finetune": (0.0, 0.0)})
    assert ok.prices.cost("my-secret-finetune", 10, 10) == 0.0
    with pytest.raises(UnknownModelPrice):
        Gateway([Deployment("a", "gpt-4o"), Deployment("b", "unpriced-model")], router=FixedRouter("a"),
                fallbacks={"a": ["b"]})


def test_fallback_chain_validation():
    deps = [Deployment("a", "gpt-4o"), Deployment("b", "gpt-4o-mini")]
    with pytest.raises(ConfigError) as info:
        Gateway(deps, router=FixedRouter("a"), fallbacks={"a": []})
    assert info.value.field == "fallbacks['a']" and "at least one" in info.value.allowed
    with pytest.raises(ConfigError) as info:
        Gateway(deps, router=FixedRouter("a"), fallbacks={"a": ["nope"]})
    assert info.value.field == "fallbacks['a']" and "a, b" in info.value.allowed
    with pytest.raises(ConfigError):
        Gateway(deps, router=FixedRouter("a"), fallbacks={"a": "b"})


@pytest.mark.parametrize("kwargs, field", [
    ({"budget": "x"}, "budget"),
    ({"router": "gpt-4o"}, "router"),
    ({"default_max_tokens": 0}, "default_max_tokens"),
    ({"breaker": {"failure_threshold": 0}}, "breaker.failure_threshold"),
    ({"breaker": {"cooldown_s": -1}}, "breaker.cooldown_s"),
    ({"cache_ttl_s": 0}, "cache_ttl_s"),
    ({"cache_capacity": -3}, "cache_capacity"),
    ({"cache_key_mode": "md5"}, "cache_key_mode"),
])
def test_out_of_range_settings(kwargs, field):
    deps = [Deployment("a", "gpt-4o")]
    kwargs.setdefault("router", FixedRouter("a"))
    with pytest.raises(ConfigError) as info:
        Gateway(deps, fallbacks={}, **kwargs)
    assert info.value.field == field


def test_retry_and_budget_values():
    with pytest.raises(ConfigError) as info:
        RetryPolicy(max_retries=-1)
    assert info.value.field == "retry.max_retries"
    with pytest.raises(ConfigError) as info:
        RetryPolicy(base_s=float("nan"))
    assert info.value.field == "retry.base_s"
    with pytest.raises(ConfigError):
        BudgetPolicy(caps={"t": "100"})
    deps = [Deployment("a", "gpt-4o")]
    with pytest.raises(ConfigError) as info:
        Gateway(deps, router=FixedRouter("a"), fallbacks={},
                budget=BudgetPolicy(on_exceed="downgrade", downgrade_to="cheap"))
    assert info.value.field == "budget.downgrade_to"


def test_duplicate_and_empty_deployments():
    with pytest.raises(ConfigError) as info:
        Gateway([], router=FixedRouter("a"))
    assert info.value.field == "deployments"
    with pytest.raises(ConfigError) as info:
        Gateway([Deployment("a", "gpt-4o"), Deployment("a", "gpt-4o-mini")], router=FixedRouter("a"))
    assert info.value.field == "deployments[1].name"


def test_import_llmlab_is_light():
    code = ("import time, sys; t=time.perf_counter(); import llmlab; dt=time.perf_counter()-t; "
            "print(dt, 'litellm' in sys.modules, 'pandas' in sys.modules, 'simpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False", "False"]


def test_default_gateway_constructs_offline():
    gw = Gateway()
    assert set(gw.deployments) == {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514"}
    assert gw.pipeline.chain_for("gpt-4o")[1].name == "claude-sonnet-4-20250514"


@pytest.mark.parametrize("params, field", [({"max_tokens": 0}, "params.max_tokens"),
                                           ({"max_tokens": "many"}, "params.max_tokens"),
                                           ({"temperature": 3}, "params.temperature"),
                                           ({"top_p": 0}, "params.top_p"), ("hot", "params")])
def test_bad_sampling_parameters(make_gateway, params, field):
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete("hi", params=params)
    assert info.value.field == field


def test_pinning_an_unknown_deployment_is_a_typed_error(make_gateway):
    gw = make_gateway()
    with pytest.raises(InvalidRequest) as info:
        gw.complete("hi", model="gpt-5-ultra")
    assert info.value.field == "model" and "gpt-4o" in info.value.allowed
    assert gw.complete("hi", model="claude").deployment == "claude"


def test_a_single_deployment_needs_no_fallbacks_argument():
    from llmlab import Deployment, FixedRouter, Gateway
    from llmlab.scripted import ScriptedDriver

    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), driver=ScriptedDriver(default="hi"))
    assert gw.complete("hello").ok and gw.pipeline.fallbacks == {}


def test_a_single_deployment_needs_no_router_either():
    """The default ComplexityRouter names three models: one deployment given alone was a
    ConfigError asking for a FixedRouter, a newcomer's first line of code."""
    from llmlab import ConfigError, Deployment, FixedRouter, Gateway
    from llmlab.scripted import ScriptedDriver

    gw = Gateway([Deployment("main", "gpt-4o-mini")], driver=ScriptedDriver(default="hi"))
    assert isinstance(gw.router, FixedRouter) and gw.complete("hello").deployment == "main"
    with pytest.raises(ConfigError):  # two deployments: which one is not for llmlab to guess
        Gateway([Deployment("a", "gpt-4o-mini"), Deployment("b", "gpt-4o")])


@pytest.mark.parametrize("kwargs, field", [
    ({"cache_store": {}}, "cache_store"),                       # a dict has get() but no put()
    ({"budget_backend": {}}, "budget_backend"),
    ({"driver": "litellm"}, "driver"),
    ({"ledger": []}, "ledger"),
])
def test_collaborators_without_their_methods_are_refused_at_construction(kwargs, field):
    """Before: a dict as cache_store or budget_backend made every request an internal error (with a
    traceback logged), a str driver raised AttributeError out of complete(), a list ledger an
    AttributeError at construction."""
    with pytest.raises(ConfigError) as info:
        Gateway([Deployment("a", "gpt-4o")], router=FixedRouter("a"), fallbacks={}, **kwargs)
    assert info.value.field == field and "missing" in str(info.value)


def test_a_gateway_with_the_shipped_backends_still_constructs():
    from llmlab import Ledger, MemoryBudgets
    from llmlab.cache import MemoryStore
    from llmlab.scripted import ScriptedDriver

    gw = Gateway([Deployment("a", "gpt-4o")], router=FixedRouter("a"), cache_store=MemoryStore(), ledger=Ledger(),
                 budget_backend=MemoryBudgets(), driver=ScriptedDriver(default="hi"))
    assert gw.complete("hello").ok and len(gw.ledger) == 1


@pytest.mark.parametrize("deployments, field", [
    ("gpt-4o", "deployments"),                                  # was deployments[0]='g'
    ({"a": Deployment("a", "gpt-4o")}, "deployments"),          # was deployments[0]='a'
    ([Deployment("", "gpt-4o")], "deployments[0].name"),
    ([Deployment("a", "gpt-4o", None)], "deployments[0].params"),  # was AttributeError on the first request
    ([Deployment("a", "gpt-4o", "sk-proj-abcdefghijklmnop")], "deployments[0].params"),
])
def test_deployments_of_the_wrong_shape(deployments, field):
    with pytest.raises(ConfigError) as info:
        Gateway(deployments, router=FixedRouter("a"), fallbacks={})
    assert info.value.field == field
    assert "sk-proj" not in str(info.value)  # a key passed as params is not repeated


@pytest.mark.parametrize("build, field", [
    (lambda: PlanRouter({"paid": 5}), "plan_router.plans['paid']"),     # was AttributeError in Gateway()
    (lambda: PlanRouter({"paid": ""}), "plan_router.plans['paid']"),
    (lambda: PlanRouter({"paid": "a"}, default=3), "plan_router.default"),
    (lambda: PlanRouter({"": "a"}), "plan_router.plans key"),
    (lambda: ComplexityRouter(100), "complexity.thresholds"),           # was TypeError: no len()
    (lambda: BudgetPolicy(caps=[("acme", 5.0)]), "budget.caps"),        # was AttributeError
    (lambda: BudgetPolicy(caps={"": 5.0}), "budget.caps key"),          # a cap no request could match
    (lambda: BudgetPolicy(plan_caps={None: 5.0}), "budget.plan_caps key"),
    (lambda: RateLimiter(per_tenant={"": RateLimit(rpm=5)}), "rate_limiter.per_tenant key"),
    (lambda: RateLimiter(per_plan={1: RateLimit(rpm=5)}), "rate_limiter.per_plan key"),
])
def test_routers_caps_and_limits_name_the_bad_entry(build, field):
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_reprs_say_what_was_built_and_never_show_a_key():
    """Before: <llmlab.gateway.Gateway object at 0x…>, and the same for the ledger, streams and routers."""
    from llmlab import ClassifierRouter, CascadeRouter
    from llmlab.scripted import ScriptedDriver

    key = "sk-proj-abcdefghijklmnopqrstuvwxyz"
    deps = [Deployment("big", "gpt-4o", {"api_key": key}), Deployment("small", "gpt-4o-mini", {"api_key": key})]
    gw = Gateway(deps, router=PlanRouter({"paid": ComplexityRouter(models={"low": "small", "medium": "big",
                                                                             "high": "big"}), "free": "small"}),
                 budget=BudgetPolicy(caps={"acme": 5.0}), rate_limiter=RateLimiter(per_plan={"free": RateLimit(rpm=5)}),
                 driver=ScriptedDriver(default="an answer"))
    text = repr(gw)
    for part in ("deployments=['big', 'small']", "PlanRouter({'paid': ComplexityRouter(thresholds=(100, 500)",
                 "'free': 'small'", "caps={'acme': 5.0}", "per_plan={'free': RateLimit(rpm=5",
                 "guards=['PIIMaskingGuard']", "requests=0"):
        assert part in text, (part, text)
    reply = gw.stream("hello", tenant="acme", plan="free")
    assert repr(reply) == "StreamResponse(<not finished>)"
    assert "".join(reply) == "an answer"
    assert repr(reply).startswith("StreamResponse(model, request_id=") and "deployment='small'" in repr(reply)
    assert repr(gw.ledger).startswith("Ledger(requests=1, tenants=1, cost_usd=")
    assert "requests=1" in repr(gw)
    assert repr(ClassifierRouter(classifier="small")).startswith("ClassifierRouter(classifier='small', routes=")
    assert repr(CascadeRouter(["small", "big"])) == "CascadeRouter(stages=['small', 'big'], accept=default_acceptance)"
    assert repr(FixedRouter("big")) == "FixedRouter('big')"
    for shown in (repr(gw), repr(reply), repr(reply.outcome), repr(gw.deployments)):
        assert key not in shown and "api_key" not in shown


@pytest.mark.parametrize("kwargs, field", [
    ({"routes": {"faq": 5, "general": "a", "complex": "a"}}, "classifier.routes['faq']"),  # was AttributeError
    ({"classifier": 5}, "classifier.classifier"),                                          # was TypeError
    ({"routes": [("faq", "a")]}, "classifier.routes"),
    ({"rules": "Use the reset link."}, "classifier.rules"),  # was accepted, then "rule raised TypeError" per request
])
def test_classifier_router_settings_are_checked(kwargs, field):
    from llmlab import ClassifierRouter

    kwargs = {"classifier": "a", "routes": {"faq": "a", "general": "a", "complex": "a"}, **kwargs}
    with pytest.raises(ConfigError) as info:
        Gateway([Deployment("a", "gpt-4o")], router=ClassifierRouter(**kwargs), fallbacks={})
    assert info.value.field == field


def test_every_public_name_has_a_docstring_of_its_own():
    """help(llmlab.AllProvidersFailed) showed GatewayError's text; OutcomeKind and CacheOutcome
    had Enum's generic one."""
    import inspect

    import llmlab

    undocumented = [name for name in llmlab.__all__ if inspect.isclass(getattr(llmlab, name))
                    and not getattr(llmlab, name).__dict__.get("__doc__")]
    assert undocumented == []
    assert "cost_usd" in llmlab.Outcome.__doc__ and "prompt_tokens" in llmlab.Outcome.__doc__


def test_a_retry_policy_for_a_deployment_that_does_not_exist_is_refused():
    """Before: retry={"A": ...} for deployment "a" was accepted and "a" kept the default policy."""
    deps = [Deployment("a", "gpt-4o")]
    with pytest.raises(ConfigError) as info:
        Gateway(deps, router=FixedRouter("a"), retry={"A": RetryPolicy(max_retries=0)})
    assert info.value.field == "retry" and info.value.value == "A" and "a" in info.value.allowed
    gw = Gateway(deps, router=FixedRouter("a"), retry={"a": RetryPolicy(max_retries=0), "*": RetryPolicy()})
    assert gw.pipeline.retry_for(gw.deployments["a"]).max_retries == 0


def test_the_gateway_docstring_explains_every_argument():
    import inspect

    params = [p for p in inspect.signature(Gateway).parameters]
    missing = [p for p in params if f"``{p}``" not in Gateway.__doc__]
    assert missing == []


@pytest.mark.parametrize("name", ["RetryPolicy", "RateLimiter", "Deployment", "CircuitBreaker", "BudgetPolicy",
                                  "Ledger", "cache.SemanticCache"])
def test_public_constructors_explain_their_arguments(name):
    import importlib
    import inspect

    module, _, attr = ("llmlab." + name).rpartition(".")
    cls = getattr(importlib.import_module(module), attr)
    doc = (cls.__doc__ or "") + (cls.__init__.__doc__ or "")
    assert [p for p in inspect.signature(cls).parameters if p not in doc] == []


@pytest.mark.parametrize("name", ["simulate", "load_scenario", "sweep"])
def test_the_lab_functions_explain_their_arguments(name):
    import inspect

    import llmlab.sim

    fn = getattr(llmlab.sim, name)
    assert [p for p in inspect.signature(fn).parameters if p not in fn.__doc__] == []


def test_the_serving_methods_say_which_keywords_they_take():
    """help(gw.complete) said nothing of tenant, plan or the other request fields."""
    from llmlab.request import REQUEST_FIELDS

    assert [f for f in sorted(REQUEST_FIELDS) if f"``{f}``" not in Gateway.request.__doc__] == []
    for method in (Gateway.complete, Gateway.acomplete, Gateway.stream, Gateway.astream):
        assert ":meth:`request`" in method.__doc__
    assert "StreamReset" in Gateway.stream.__doc__


@pytest.mark.parametrize("params, key", [
    ({"model": "gpt-4o"}, "model"),  # sent the calls to gpt-4o while budgets priced gpt-4o-mini
    ({"messages": [{"role": "user", "content": "INJECTED"}]}, "messages"),  # replaced the caller's messages
    ({"stream": True}, "stream"),  # made every complete() a malformed response, counted by the breaker
    ({"num_retries": 5}, "num_retries"), ({5: "x"}, 5),
])
def test_deployment_params_cannot_set_what_the_gateway_sets(params, key):
    with pytest.raises(ConfigError) as info:
        Gateway([Deployment("cheap", "gpt-4o-mini", {"mock_response": "ok", **params})])
    assert info.value.field == "deployments[0].params" and info.value.value == key


@pytest.mark.parametrize("make, field", [
    (lambda: Gateway([Deployment("a", None)]), "deployments[0].model"),
    (lambda: Gateway([Deployment("a", "gpt-4o-mini", timeout_s=math.inf)]), "deployments[0].timeout_s"),
    (lambda: RetryPolicy(base_s=math.inf, cap_s=math.inf), "retry.base_s"),
    (lambda: RetryPolicy(cap_s=math.nan), "retry.cap_s"),
])
def test_a_duration_must_be_finite_and_a_model_a_name(make, field):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field


def test_a_huge_timeout_or_backoff_is_held_to_a_day_in_a_live_call():
    """``timeout_s=1e10`` failed every call inside the HTTP client ("timestamp out of range"),
    retried and counted by the breaker; a sleep of days is a day at most."""
    from llmlab.effects import Call, Sleep
    from llmlab.live import MAX_WAIT_S, LiteLLMDriver, _kwargs

    dep = Deployment("a", "gpt-4o-mini", {"mock_response": "ok"}, timeout_s=1e10)
    assert _kwargs(Call(dep, ({"role": "user", "content": "hi"},), {}))["timeout"] == MAX_WAIT_S == 86_400
    assert Gateway([dep]).complete("hi").ok
    slept: list[float] = []
    assert LiteLLMDriver(sleep=slept.append).perform(Sleep(1e300)) is None and slept == [MAX_WAIT_S]


def _plan_router_among_its_plans():
    router = PlanRouter({"paid": "gpt-4o"})
    router.plans["free"] = router
    return router


@pytest.mark.parametrize("kw, field", [
    ({"prices": "x"}, "prices"),  # TypeError: 'str' object is not a mapping
    ({"fallbacks": {"gpt-4o": [["gpt-4o-mini"]]}}, "fallbacks['gpt-4o']"),  # unhashable type: 'list'
    ({"budget": BudgetPolicy(default_cap=1.0, on_exceed="downgrade", downgrade_to=["gpt-4o-mini"])},
     "budget.downgrade_to"),
    ({"seed": [1]}, "seed"),
    ({"breaker": lambda: 5}, "breaker"),  # every request an internal error ('int' has no attribute 'admit')
    ({"clock": lambda: "now"}, "clock"),  # TypeError out of every complete()
    ({"clock": lambda: math.nan}, "clock"),
    ({"router": _plan_router_among_its_plans()}, "router"),  # RecursionError
])
def test_settings_that_failed_later_are_refused_when_the_gateway_is_built(kw, field):
    deps = [Deployment(n, n, {"mock_response": "ok"}) for n in ("gpt-4o", "gpt-4o-mini")]
    kw = {"router": FixedRouter("gpt-4o"), **kw}
    with pytest.raises(ConfigError) as info:
        Gateway(deps, **kw)
    assert info.value.field == field


@pytest.mark.parametrize("make, field", [
    (lambda: Gateway(5), "deployments"), (lambda: FixedRouter(["a"]), "fixed_router.deployment"),
    (lambda: ComplexityRouter(models="abc"), "complexity.models"),
    (lambda: ComplexityRouter(models={"low": "a", "medium": 1, "high": "b"}), "complexity.models"),
    (lambda: ClassifierRouter("a", routes={"faq": "a", "general": "a", "complex": "a"}, prompt=None),
     "classifier.prompt"),
])
def test_components_refuse_wrong_types_by_name(make, field):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field


def test_an_async_ledger_sink_is_refused_at_construction():
    """The sink is called, never awaited: ``Ledger(keep=False, sink=ship)`` with ``async def ship``
    (an asyncio service's first try) built a coroutine per request that nothing ran — every
    record lost, with only a RuntimeWarning to show for it."""
    import functools

    from llmlab import Ledger

    async def ship(outcome):
        pass

    class Shipper:
        async def __call__(self, outcome):
            pass

    for sink in (ship, functools.partial(ship), Shipper()):
        with pytest.raises(ConfigError) as info:
            Gateway([Deployment("a", "gpt-4o")], router=FixedRouter("a"), ledger=Ledger(keep=False, sink=sink))
        assert info.value.field == "ledger.sink" and "call_soon_threadsafe" in str(info.value)
    shipped = []
    gw = Gateway([Deployment("a", "gpt-4o", {"mock_response": "hi"})], router=FixedRouter("a"),
                 ledger=Ledger(keep=False, sink=shipped.append))
    assert gw.complete("hello").ok and len(shipped) == 1


def test_a_sink_that_returns_a_coroutine_fails_each_record_loudly(caplog):
    """A lambda around an async call (``lambda o: queue.put(o)`` on an asyncio.Queue) cannot be
    told from a plain sink until it returns: its coroutine was dropped unawaited, every record
    lost with only a RuntimeWarning.  Now the coroutine is closed and each record's failure is
    logged as the sink's (the caller still gets the answer)."""
    import logging
    import warnings

    from llmlab import Ledger

    async def ship(outcome):
        raise AssertionError("never run")

    gw = Gateway([Deployment("a", "gpt-4o", {"mock_response": "hi"})], router=FixedRouter("a"),
                 ledger=Ledger(keep=False, sink=lambda o: ship(o)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine left unawaited warns when collected
        with caplog.at_level(logging.ERROR, "llmlab"):
            assert gw.complete("hello").ok
            import gc
            gc.collect()
    assert len([r for r in caplog.records if "ledger sink failed" in r.getMessage()]) == 1
    assert "returned a coroutine, which nothing awaits" in caplog.text
