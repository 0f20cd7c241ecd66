"""The live path against Azure OpenAI's wire format, through litellm's ``azure/`` provider and a
local server (``tests/azure_wire.py``): prompt and content filter results in every body, answers
the content filter stopped, a prompt it refused (400, code ``content_filter``), Azure's 429s.
"""
from __future__ import annotations

import pytest
from canned_http import CUT, Either, running
from azure_wire import (
    API_VERSION,
    FILTERED,
    AzureServer,
    chunks,
    completion,
    filtered_prompt,
    rate_limited,
)
from test_live_anthropic_wire import HOWS, STREAMS, gateway, served

from llmlab import BudgetPolicy, RetryPolicy


@pytest.fixture(scope="module")
def azure():
    yield from running(AzureServer)


@pytest.mark.parametrize("how", HOWS)
def test_an_azure_answer_is_billed_what_azure_reported(azure, how):
    dep = azure.deployment(f"ok-{how}", (200, {}, Either(completion("Hello there", 123, 45),
                                                         chunks("Hello", " there", prompt_tokens=123,
                                                                completion_tokens=45))))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    assert out.ok and out.text == "Hello there" and (out.prompt_tokens, out.completion_tokens) == (123, 45)
    assert out.cost_usd == pytest.approx(123 * 2.5e-6 + 45 * 10e-6)  # gpt-4o: 2.50 / 10.00 USD per 1M
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)
    assert azure.queries[-1]["api-version"] == [API_VERSION]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("text", ["I can tell you how to", None])
def test_an_answer_the_content_filter_stopped_is_a_typed_error_billed_and_never_cached(azure, how, text):
    """Azure stops a filtered answer with finish_reason content_filter, its text cut short or
    absent (content null).  The cut text was a cached success; the null one a malformed answer,
    retried (filtered again, billed again) and fallen back on."""
    name = f"filtered-{how}-{'text' if text else 'null'}"
    reply = Either(completion(text, 40, 9 if text else 0, finish="content_filter", filters=FILTERED),
                   chunks(*([text] if text else []), prompt_tokens=40, completion_tokens=9 if text else 0,
                          finish="content_filter", filters=FILTERED))
    dep = azure.deployment(name, (200, {}, reply))
    backup = azure.deployment(f"{name}-backup", (200, {}, Either(completion("other"), chunks("other"))))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, cache=True, retry=RetryPolicy(max_retries=2, base_s=0.0),
                 budget=BudgetPolicy(caps={"t": 10.0}))
    first, second = served(gw, how, tenant="t"), served(gw, how, tenant="t")
    assert not first.ok and first.error.code == "provider_rejected" and "content_filter" in str(first.error)
    assert [a.error.split(":")[0] for a in first.attempts] == ["bad_request"]  # no retry, no fallback
    assert (first.attempts[0].prompt_tokens, first.attempts[0].completion_tokens) == (40, 9 if text else 0)
    assert not second.ok and azure.hits[name] == 2 and backup.name not in azure.hits
    assert first.cost_usd > 0 and gw.budgets.spent("t", gw.clock()) == pytest.approx(first.cost_usd + second.cost_usd)


@pytest.mark.parametrize("how", HOWS)
def test_a_prompt_the_content_filter_refused_is_rejected_at_once(azure, how):
    name = f"prompt-filtered-{how}"
    dep = azure.deployment(name, (400, {}, filtered_prompt()))
    backup = azure.deployment(f"{name}-backup", (200, {}, Either(completion("other"), chunks("other"))))
    out = served(gateway(dep, backup, fallbacks={name: [backup.name]}, retry=RetryPolicy(max_retries=2, base_s=0.0)),
                 how)
    assert not out.ok and out.error.code == "provider_rejected"
    assert azure.hits[name] == 1 and backup.name not in azure.hits
    assert out.attempts[0].error.startswith("bad_request:") and out.cost_usd == 0.0


@pytest.mark.parametrize("how", HOWS)
def test_an_azure_429_waits_its_retry_after_ms(azure, how):
    name = f"429-{how}"
    dep = azure.deployment(name, (429, {"retry-after": "1", "retry-after-ms": "200"}, rate_limited(1)),
                           (200, {}, Either(completion("fine"), chunks("fine"))))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.text == "fine"
    assert out.attempts[0].error.startswith("rate_limit:") and out.attempts[0].retry_after_s == pytest.approx(0.2)
    assert out.attempts[1].waited_s == pytest.approx(0.2, abs=0.05)


@pytest.mark.parametrize("how", ["complete", "stream"])
def test_an_azure_503_is_overloaded_and_falls_back(azure, how):
    name = f"503-{how}"
    dep = azure.deployment(name, (503, {}, {"error": {"code": "ServiceUnavailable", "message": "try again later"}}))
    backup = azure.deployment(f"{name}-backup", (200, {}, Either(completion("other"), chunks("other"))))
    out = served(gateway(dep, backup, fallbacks={name: [backup.name]}), how)
    assert out.ok and out.deployment == backup.name and out.attempts[0].error.startswith("overloaded:")


@pytest.mark.parametrize("how", HOWS)
def test_cached_prompt_tokens_are_priced_at_the_cached_rate(azure, how):
    """Azure (as OpenAI) caches a prompt of 1,024 tokens or more by itself and bills the cached
    part at half the input price (``prompt_tokens_details.cached_tokens``); it was charged in full."""
    body, events = completion("Hello", 3_000, 5), chunks("Hello", prompt_tokens=3_000, completion_tokens=5)
    body["usage"]["prompt_tokens_details"] = events[-1]["usage"]["prompt_tokens_details"] = {"cached_tokens": 2_048}
    dep = azure.deployment(f"cached-{how}", (200, {}, Either(body, events)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    bill = (3_000 - 2_048) * 2.5e-6 + 2_048 * 1.25e-6 + 5 * 10e-6  # gpt-4o: cached input 1.25 USD per 1M
    assert out.ok and out.cost_usd == pytest.approx(bill) and gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("param", [{"seed": 7}, {"frequency_penalty": 0.5}, {"n": 2}])
def test_a_fallback_that_cannot_take_a_param_is_skipped_not_fatal(azure, how, param):
    """The presets fall back from GPT-4o to Claude, and litellm refuses before sending a request
    whose params Anthropic does not take (``seed``, penalties, ``n``, ``logit_bias``, ``logprobs``):
    UnsupportedParamsError, a 400.  Read as the provider rejecting the request it ended the whole
    chain: in an OpenAI outage every request with a ``seed`` failed without trying gpt-4o-mini."""
    from anthropic_wire import AnthropicServer
    from anthropic_wire import answer as claude_answer

    claude_server = AnthropicServer()
    try:
        name = f"outage-{how}-{next(iter(param))}"
        primary = azure.deployment(name, (503, {}, {"error": {"code": "ServiceUnavailable", "message": "down"}}))
        claude = claude_server.deployment("claude-sonnet-4-5", (200, {}, claude_answer("from claude")))
        small = azure.deployment(f"{name}-mini", (200, {}, Either(completion("from mini"), chunks("from mini"))))
        gw = gateway(primary, claude, small, fallbacks={name: [claude.name, small.name]},
                     retry=RetryPolicy(max_retries=1, base_s=0.0))
        out = served(gw, how, **param)
        assert out.ok and out.deployment == small.name, out.error
        assert [a.error.split(":")[0] for a in out.attempts if a.error] == ["overloaded", "overloaded",
                                                                            "unsupported_params"]
        assert claude_server.hits == {}  # refused before sending: never retried, free
        assert gw.pipeline.breakers[claude.name].consecutive_failures == 0
    finally:
        claude_server.close()


@pytest.mark.parametrize("how", ["stream", "astream"])
@pytest.mark.parametrize("version", ["2024-06-01", "2024-02-15-preview"])
def test_a_stream_to_an_api_version_without_stream_options_is_answered(azure, how, version, monkeypatch):
    """llmlab asks every stream for its usage (``stream_options``), which Azure OpenAI refuses with
    a 400 before API version 2024-09-01-preview (2024-06-01 is still a GA version in wide use):
    every stream to such a deployment was a rejected request, at once, with no fallback."""
    name = f"old-api-{how}-{version}"
    dep = azure.deployment(name, (200, {}, chunks("Hello", " there", prompt_tokens=123, completion_tokens=45)),
                           api_version=version)
    rejected = azure.rejected
    out = served(gateway(dep), how)
    assert out.ok and out.text == "Hello there", out.error
    assert azure.rejected == rejected and out.prompt_tokens > 0 and out.completion_tokens > 0
    monkeypatch.setenv("AZURE_API_VERSION", version)  # the version litellm reads when params name none
    bare = dep.__class__(dep.name, dep.model, {k: v for k, v in dep.params.items() if k != "api_version"},
                         price_model=dep.price_model, timeout_s=5.0)
    again = served(gateway(bare), how)
    assert again.ok and azure.rejected == rejected


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("content", ["", None], ids=["empty", "null"])
def test_an_empty_azure_answer_is_passed_on_never_cached_streamed_or_not(azure, how, content):
    """An answer with no text, its content "" or null: the null one was a malformed response when
    whole (retried, fallen back from, billed each time) and an empty answer when streamed, where
    no content delta and a null one read the same.  Both are now the empty answer."""
    name = f"empty-{how}-{content is None}"
    dep = azure.deployment(name, (200, {}, Either(completion(content, 40, 0), chunks(prompt_tokens=40,
                                                                                     completion_tokens=0))))
    backup = azure.deployment(f"{name}-backup", (200, {}, Either(completion("other"), chunks("other"))))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, cache=True, retry=RetryPolicy(max_retries=1, base_s=0.0))
    first, second = served(gw, how), served(gw, how)
    assert first.ok and first.text == "" and first.deployment == name and first.prompt_tokens == 40, first
    assert second.ok and second.cache.value == "miss" and azure.hits[name] == 2 and backup.name not in azure.hits


@pytest.mark.parametrize("how", HOWS)
def test_a_refusal_is_a_rejection_when_whole_and_the_empty_answer_when_streamed(azure, how):
    """OpenAI's structured-output refusal: a null content and ``message.refusal``.  Whole, it is
    rejected as Anthropic's refusal is (provider_rejected, billed, neither retried nor fallen back
    from, never cached); with null content taken as the empty answer it was a success with no
    text.  Streamed, litellm drops the ``refusal`` deltas: what arrives is the empty answer."""
    name = f"refusal-{how}"
    body = completion(None, 40, 12)
    body["choices"][0]["message"]["refusal"] = "I'm sorry, I cannot assist with that request."
    events = chunks(prompt_tokens=40, completion_tokens=12)
    events[2:2] = [{**events[1], "choices": [{"index": 0, "delta": {"refusal": piece}, "finish_reason": None}]}
                   for piece in ("I'm sorry, I cannot ", "assist with that request.")]
    dep = azure.deployment(name, (200, {}, Either(body, events)))
    backup = azure.deployment(f"{name}-backup", (200, {}, Either(completion("other"), chunks("other"))))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, cache=True, retry=RetryPolicy(max_retries=2, base_s=0.0))
    first, second = served(gw, how), served(gw, how)
    assert azure.hits[name] == 2 and backup.name not in azure.hits and second.cache.value == "miss"
    assert (first.attempts[0].prompt_tokens, first.attempts[0].completion_tokens) == (40, 12) and first.cost_usd > 0
    if how in ("complete", "acomplete"):
        assert not first.ok and first.error.code == "provider_rejected" and "cannot assist" in str(first.error)
        assert [a.error.split(":")[0] for a in first.attempts] == ["bad_request"]
    else:
        assert first.ok and first.text == ""


@pytest.mark.parametrize("how", STREAMS)
def test_an_azure_stream_with_no_event_at_all_is_a_cut_not_an_empty_answer(azure, how):
    """A 200 event stream closed before its first event read as an empty success (litellm made up
    a "stop"): passed on, never retried nor fallen back from."""
    name = f"bodiless-{how}"
    dep = azure.deployment(name, (200, {}, [CUT]), (200, {}, Either(completion("fine"), chunks("fine"))))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.text == "fine" and azure.hits[name] == 2
    assert out.attempts[0].error.startswith("connection:"), out.attempts[0].error
