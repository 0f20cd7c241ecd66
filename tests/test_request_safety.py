"""What a caller may put in a request, and what leaves the gateway because of it.

Found by exploratory testing: request params that redirected the provider key or the model,
a classifier that saw raw PII, an answer logged unmasked, malformed content that failed inside
litellm (and tripped every breaker), settings accepted at construction that failed on every call.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from llmlab import (CascadeRouter, ClassifierRouter, ConfigError, Deployment, FixedRouter, Gateway, InvalidRequest,
                    PlanRouter, RetryPolicy)
from llmlab.effects import Call
from llmlab.live import _kwargs
from llmlab.pricing import ModelPrice
from llmlab.request import REQUEST_PARAMS, Request, content_text

EMAIL = "kim@corp.co.kr"


# ----------------------------------------------------------------------------- params
@pytest.mark.parametrize("key, value", [
    ("api_base", "http://127.0.0.1:9/v1"), ("base_url", "http://evil"), ("api_key", "sk-x"), ("model", "gpt-4-32k"),
    ("custom_llm_provider", "openai"), ("extra_headers", {"x": "y"}), ("timeout", -1), ("stream", True),
    ("num_retries", 5), ("mock_response", "fake"),
])
def test_connection_settings_are_not_request_params(make_gateway, key, value):
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete("hi", params={key: value})
    assert info.value.field == f"params.{key}" and "deployment" in str(info.value)


def test_the_live_driver_never_lets_call_params_override_the_deployment():
    dep = Deployment("mini", "openai/gpt-4o-mini", {"api_base": "http://127.0.0.1:8089/v1", "api_key": "sk-real"})
    call = Call(dep, ({"role": "user", "content": "hi"},),
                {"api_base": "http://attacker/v1", "model": "openai/gpt-4-32k", "temperature": 0.1, "timeout": -1})
    kw = _kwargs(call)  # a Request built without validation still cannot redirect the call
    assert kw["api_base"] == "http://127.0.0.1:8089/v1" and kw["model"] == "openai/gpt-4o-mini"
    assert kw["api_key"] == "sk-real" and kw["timeout"] == dep.timeout_s and kw["temperature"] == 0.1


@pytest.mark.parametrize("params, field", [
    ({"response_format": "json"}, "params.response_format"), ({"stop": 5}, "params.stop"), ({"n": 0}, "params.n"),
    ({"seed": 1.5}, "params.seed"), ({"presence_penalty": 3}, "params.presence_penalty"),
    ({"tools": "order_lookup"}, "params.tools"), ({"logprobs": "yes"}, "params.logprobs"),
    ({"tools": ["order_lookup"]}, "params.tools[0]"), ({"tools": [{"type": "function"}]}, "params.tools[0].function"),
    ({"tools": [{"type": "function", "function": {}}]}, "params.tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "look up"}}]}, "params.tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": "nope"}}]},
     "params.tools[0].function.parameters"),
    ({"top_logprobs": 50}, "params.top_logprobs"), ({"seed": 2 ** 64}, "params.seed"),
    # what JSON cannot carry failed inside litellm's encoding, before sending, and tripped the breakers
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {1}}}},
     "params.response_format.json_schema.schema"),
    ({"logit_bias": {"50256": float("nan")}}, "params.logit_bias.50256"),
    ({"response_format": {"type": "json_object", (1, 2): 3}}, "params.response_format[(1, 2)]"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": b"object"}}}]},
     "params.tools[0].function.parameters.type"),
])
def test_malformed_sampling_values_fail_before_any_call(make_gateway, driver, params, field):
    gw = make_gateway()
    with pytest.raises(InvalidRequest) as info:
        gw.complete("hi", params=params)
    assert info.value.field == field and driver.calls == []
    assert all(b.state == b.CLOSED for b in gw.pipeline.breakers.values())


def test_openai_style_keywords_join_params(make_gateway, driver):
    gw = make_gateway()
    assert gw.complete("hi", temperature=0.2, seed=7).ok
    assert driver.calls[-1].params["temperature"] == 0.2 and driver.calls[-1].params["seed"] == 7
    with pytest.raises(InvalidRequest) as info:
        gw.complete("hi", tempreature=0.2)
    assert info.value.field == "tempreature" and "temperature" in info.value.allowed


# ----------------------------------------------------------------------------- messages and fields
@pytest.mark.parametrize("messages, field", [
    ([{"role": "user", "content": 123}], "messages[0].content"),
    ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
    ([{"role": "user", "content": {"text": "hi"}}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "text", "text": "  "}]}], "prompt"),  # an image-only turn is fine
    ([{"role": ["user"], "content": "hi"}], "messages[0].role"),  # raised TypeError (unhashable)
    ([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}], "messages[0].content[0].type"),
    ([{"role": "user", "content": [{"type": "text", "text": [f"Invoice to {EMAIL}"]}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}], "messages[0].content[0].image_url"),
    ([{"role": "user", "content": "hi \ud800"}], "messages[0].content"),  # a lone surrogate: no UTF-8
    ([{"role": "user", "content": "hi", "name": b"kim"}], "messages[0].name"),
    ([{"role": "user", "content": "hi", "name": {"kim"}}], "messages[0].name"),
])
def test_message_shapes(make_gateway, driver, messages, field):
    gw = make_gateway()
    with pytest.raises(InvalidRequest) as info:
        gw.complete(messages)
    assert info.value.field == field and driver.calls == []
    assert EMAIL not in str(info.value) and EMAIL not in repr(info.value.value)  # named by shape, not repeated
    assert all(b.state == b.CLOSED for b in gw.pipeline.breakers.values())


def test_a_pinned_model_must_be_a_name(make_gateway, driver):
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete("hi", model=["gpt-4o"])  # raised TypeError (unhashable)
    assert info.value.field == "model" and driver.calls == []


def test_json_nested_past_the_limit_is_refused_without_recursing(make_gateway, driver):
    deep: object = {"type": "json_object"}
    for _ in range(5_000):  # deeper than Python's recursion limit: the check itself must not recurse
        deep = {"x": deep}
    nested: object = "stop"
    for _ in range(5_000):
        nested = [nested]
    gw = make_gateway()
    for params, field in (({"response_format": deep}, "params.response_format."), ({"stop": nested}, "params.stop")):
        with pytest.raises(InvalidRequest) as info:
            gw.complete("hi", params=params)
        assert info.value.field.startswith(field) and len(str(info.value)) < 400
    messages = [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                                         "function": {"name": "f", "arguments": "{}"},
                                                                         "extra": deep}]},
                {"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequest) as info:
        gw.complete(messages)
    assert info.value.field.startswith("messages[0].tool_calls[0].extra") and driver.calls == []


def test_a_credential_or_a_stop_text_is_not_kept_in_the_error(make_gateway):
    with pytest.raises(InvalidRequest) as info:
        Request.build("hi", params={"stop": ["call 010-1234-5678", 5]})
    assert "010-1234" not in str(info.value) and "010-1234" not in repr(info.value.value)
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete("hi", api_key="sk-live-abcdefghijklmnop")
    assert "abcdefghijklmnop" not in str(info.value) and info.value.value == "***"


@pytest.mark.parametrize("kw, field", [({"metadata": ["a"]}, "metadata"), ({"cache": "no"}, "cache"),
                                       ({"plan": ""}, "plan")])
def test_request_fields(make_gateway, kw, field):
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete("hi", **kw)
    assert info.value.field == field


def test_content_parts_are_read_as_their_text():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 600}}
    parts = [{"type": "text", "text": "hi"}, image]
    assert content_text(parts) == "hi" and content_text(None) == "" and content_text("x") == "x"
    assert Request.build([{"role": "user", "content": parts}]).text == "hi"  # not a 700-character repr


def test_an_unknown_plan_is_the_callers_error(make_gateway):
    gw = make_gateway(router=PlanRouter({"paid": "gpt-4o", "free": "gpt-4o-mini"}))
    with pytest.raises(InvalidRequest) as info:
        gw.complete("hi", plan="enterprise")
    assert info.value.field == "plan" and "'paid'" in info.value.allowed
    assert gw.complete("hi", plan="paid").deployment == "gpt-4o"


# ----------------------------------------------------------------------------- PII
def test_the_classifier_sees_the_masked_text(make_gateway, driver):
    driver.scripts = {"gpt-4o-mini": ["GENERAL", "ok: an answer for you, long enough"]}
    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini"))
    outcome = gw.complete(f"My email is {EMAIL}, why was I charged twice?")
    assert outcome.ok
    sent = [m["content"] for c in driver.calls for m in c.messages]
    assert len(driver.calls) == 2 and not any(EMAIL in text for text in sent)
    assert any("[EMAIL_1]" in text for text in sent[:2])  # the classifier's user message


def test_log_content_logs_the_masked_answer(make_gateway, driver, caplog):
    driver.default = lambda call: f"ok: we will write to {call.messages[-1]['content'].split()[-1]}"
    gw = make_gateway(log_content=True)
    with caplog.at_level(logging.INFO, logger="llmlab.gateway"):
        outcome = gw.complete(f"please write to {EMAIL}")
    assert EMAIL in outcome.text  # the caller gets its own value back
    logged = [r.llmlab["answer"] for r in caplog.records if hasattr(r, "llmlab")]
    assert logged and all(EMAIL not in a and "[EMAIL_1]" in a for a in logged)


# ----------------------------------------------------------------------------- construction
@pytest.mark.parametrize("kw, field", [
    ({"semantic_cache": True}, "semantic_cache"), ({"rate_limiter": {"free": 1}}, "rate_limiter"),
    ({"retry": 3}, "retry"), ({"retry": {"gpt-4o": 3}}, "retry"), ({"breaker": 5}, "breaker"),
    ({"input_guards": [1]}, "input_guards[0]"), ({"output_guards": ["x"]}, "output_guards[0]"),
    ({"clock": 5}, "clock"), ({"fallbacks": ["gpt-4o"]}, "fallbacks"), ({"prices": {"gpt-4o": "cheap"}}, "prices['gpt-4o']"),
])
def test_settings_that_would_fail_on_every_request_fail_at_construction(kw, field):
    with pytest.raises(ConfigError) as info:
        Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), **{"fallbacks": {}, **kw})
    assert info.value.field == field


@pytest.mark.parametrize("build, field", [
    (lambda: PlanRouter({}), "plan_router.plans"), (lambda: CascadeRouter("gpt-4o"), "cascade.stages"),
    (lambda: CascadeRouter(["a", "b"], accept=5), "cascade.accept"), (lambda: ModelPrice(-1, -1), "input_per_token"),
    (lambda: RetryPolicy(base_s=5, cap_s=1), "retry.cap_s"),
])
def test_component_settings(build, field):
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_own_deployments_without_a_router_explain_the_default_router():
    with pytest.raises(ConfigError) as info:
        Gateway([Deployment("gpt-4o", "gpt-4o"), Deployment("mini", "gpt-4o-mini")])
    assert info.value.field == "router" and "default ComplexityRouter" in str(info.value)
    # one deployment has nothing to choose between: it is routed to without a router argument
    assert repr(Gateway([Deployment("gpt-4o", "gpt-4o")]).router) == "FixedRouter('gpt-4o')"


def test_request_params_allow_list_is_what_the_cache_key_considers():
    from llmlab.cache.keys import ANSWER_PARAMS

    assert set(ANSWER_PARAMS) - {"model"} <= REQUEST_PARAMS  # every answer-changing parameter may be set


# ----------------------------------------------------------------------------- command lines
@pytest.mark.parametrize("argv, message", [
    (["checklist", "--scenario", "nope"], "llmlab checklist: error: scenario:"),
    (["checklist", "--scenario", "b2b-saas", "--requests", "0"], "llmlab checklist: error: requests:"),
    (["fake-provider", "--port", "70000"], "--port must be in 0..65535"),
    (["fake-provider", "--latency-ms", "nan"], "--latency-ms must be a finite number"),
    (["fake-provider", "--latency-ms", "-5"], "--latency-ms must be a finite number >= 0 (got -5)"),
    (["fake-provider", "--error-status", "418"], "--error-status must be one of"),
    # argparse's own refusals: its usage and the error, 3 to 8 lines, before
    (["checklist", "--bogus"], "llmlab checklist: error: unrecognized arguments: --bogus"),
    (["checklist", "--requests", "5"], "llmlab checklist: error: --requests: only with --scenario"),
    (["checklist", "--scenario", ""], "llmlab checklist: error: --scenario: a preset name or a TOML file"),
    (["demo", "--x"], "llmlab demo: error: unrecognized arguments: --x"),
    (["cache-eval", "--threshold", "x"], "llmlab cache-eval: error: argument --threshold: invalid float value"),
    (["cache-eval", "--pairs", "/dev/null"], "is not a regular file"),  # it said "not found"
    (["fake-provider", "--port", "x"], "llmlab fake-provider: error: argument --port: invalid int value"),
])
def test_command_line_mistakes_are_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "llmlab", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "LiteLLM" not in line]) == 1, proc.stderr


def test_demo_json_is_json():
    proc = subprocess.run([sys.executable, "-m", "llmlab", "demo", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 10
    for line in lines:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def test_a_request_object_built_without_checks_is_checked_by_the_gateway(make_gateway, driver):
    sneaky = Request(({"role": "user", "content": "hi"},), tenant="acme", params={"api_base": "http://attacker/v1"})
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete(sneaky)
    assert info.value.field == "params.api_base" and driver.calls == []
    fine = Request(({"role": "user", "content": "hi"},), tenant="acme", request_id="mine-1")
    assert make_gateway().complete(fine).request_id == "mine-1"


def test_well_formed_tools_pass_through(make_gateway, driver):
    tools = [{"type": "function", "function": {"name": "order_lookup", "description": "Find an order",
                                                "parameters": {"type": "object", "properties": {}}}},
             {"type": "web_search"}]  # other tool types are the provider's to judge
    assert make_gateway().complete("where is my order?", tools=tools, tool_choice="auto").ok
    assert driver.calls[-1].params["tools"] == tools
