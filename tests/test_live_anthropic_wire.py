"""The live path against Anthropic's Messages API wire format, through litellm's ``anthropic/``
provider and a local server (``tests/anthropic_wire.py``): usage reported in two halves (input
tokens at message_start, output tokens at message_delta), ``tool_use`` blocks, Anthropic's error
bodies (429, 529 overloaded_error, prompt too long, 401, 500) and ``error`` events mid-stream.
Every other live test speaks OpenAI's wire format.
"""
from __future__ import annotations

import asyncio

import pytest
from canned_http import running
from test_live_misbehaving import served
from anthropic_wire import (
    CUT,
    AnthropicServer,
    Either,
    answer,
    error,
    message,
    stream_events,
    text,
    tool_use,
)

from llmlab import BudgetPolicy, FixedRouter, Gateway, RetryPolicy
from llmlab.tokens import count_tokens

HOWS = ["complete", "acomplete", "stream", "astream"]
STREAMS = ["stream", "astream"]


@pytest.fixture(scope="module")
def wire():
    yield from running(AnthropicServer)


def gateway(*deps, **kw) -> Gateway:
    kw.setdefault("retry", RetryPolicy(max_retries=0))
    kw.setdefault("cache", False)
    return Gateway(list(deps), router=FixedRouter(deps[0].name), fallbacks=kw.pop("fallbacks", {}),
                   input_guards=(), **kw)


# ----------------------------------------------------------------------------- what works
@pytest.mark.parametrize("how", HOWS)
def test_the_tokens_anthropic_reports_are_billed_and_the_budget_agrees(wire, how):
    """Input tokens come at message_start, output tokens at message_delta: both are billed."""
    dep = wire.deployment(f"usage-{how}", (200, {}, answer("Hel", "lo ", "there", input_tokens=123, output_tokens=45)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    assert out.ok and out.text == "Hello there"
    assert (out.prompt_tokens, out.completion_tokens) == (123, 45)
    assert out.cost_usd == pytest.approx(123 * 3e-6 + 45 * 15e-6)  # claude-sonnet-4-5: 3 / 15 USD per 1M
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)
    assert wire.paths[-1] == "/v1/messages"


@pytest.mark.parametrize("how", HOWS)
def test_tool_use_blocks_come_back_as_openai_shaped_tool_calls(wire, how):
    body = message(text("Let me look."), tool_use("lookup_order", {"email": "a@b.c"}, id="toolu_9"),
                   stop_reason="tool_use")
    events = stream_events("Let me look.", tool=("toolu_9", "lookup_order"), tool_pieces=('{"em', 'ail": "a@b.c"}'),
                           stop_reason="tool_use")
    dep = wire.deployment(f"tool-{how}", (200, {}, Either(body, events)))
    out = served(gateway(dep), how)
    assert out.ok and out.text == "Let me look."
    assert [dict(c) for c in out.tool_calls] == [{"id": "toolu_9", "type": "function", "function": {
        "name": "lookup_order", "arguments": '{"email": "a@b.c"}'}}]


@pytest.mark.parametrize("how", HOWS)
def test_a_429_is_a_rate_limit_that_waits_the_retry_after(wire, how):
    name = f"429-{how}"
    dep = wire.deployment(name, (429, {"retry-after": "0.2"}, error("rate_limit_error", "per-minute rate limit")),
                          (200, {}, answer("fine")))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.text == "fine" and wire.hits[name] == 2
    first, second = out.attempts
    assert first.error.startswith("rate_limit:") and first.retry_after_s == pytest.approx(0.2)
    assert second.waited_s == pytest.approx(0.2, abs=0.05)


@pytest.mark.parametrize("how", HOWS)
def test_prompt_too_long_moves_to_a_larger_window(wire, how):
    small = wire.deployment(f"ptl-{how}", (400, {}, error("invalid_request_error",
                                                         "prompt is too long: 208310 tokens > 200000 maximum")),
                            context_window=200_000)
    large = wire.deployment(f"ptl-{how}-1m", (200, {}, answer("fits")), context_window=1_000_000)
    out = served(gateway(small, large, fallbacks={small.name: [large.name]}), how)
    assert out.ok and out.deployment == large.name
    assert out.attempts[0].error.startswith("context_window:")


@pytest.mark.parametrize("how", HOWS)
def test_an_authentication_error_is_not_retried_and_the_next_deployment_answers(wire, how):
    name = f"401-{how}"
    dep = wire.deployment(name, (401, {}, error("authentication_error", "invalid x-api-key")))
    backup = wire.deployment(f"{name}-backup", (200, {}, answer("no")))
    out = served(gateway(dep, backup, fallbacks={name: [backup.name]}, retry=RetryPolicy(max_retries=2, base_s=0.0)),
                 how)
    assert out.ok and out.deployment == backup.name
    assert wire.hits[name] == 1 and wire.hits[backup.name] == 1


@pytest.mark.parametrize("how", HOWS)
def test_a_500_api_error_is_a_server_error_retried(wire, how):
    name = f"500-{how}"
    dep = wire.deployment(name, (500, {}, error("api_error", "Internal server error")), (200, {}, answer("fine")))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.attempts[0].error.startswith("server_error:")


# ----------------------------------------------------------------------------- what was wrong
@pytest.mark.parametrize("how", HOWS)
def test_529_overloaded_is_overloaded_and_falls_back(wire, how):
    """litellm raises Anthropic's 529 as a 500 InternalServerError (the 529 kept only in
    ``provider_status_code``): attempts, the ledger and logs said server_error, never overloaded."""
    name = f"529-{how}"
    dep = wire.deployment(name, (529, {}, error("overloaded_error", "Overloaded")))
    backup = wire.deployment(f"{name}-backup", (200, {}, answer("from the backup")))
    out = served(gateway(dep, backup, fallbacks={name: [backup.name]}, retry=RetryPolicy(max_retries=1, base_s=0.0)),
                 how)
    assert out.ok and out.deployment == backup.name and wire.hits[name] == 2  # retried once, then fell back
    assert [a.error.split(":")[0] for a in out.attempts[:2]] == ["overloaded", "overloaded"]


@pytest.mark.parametrize("how", STREAMS)
def test_a_stream_cut_midway_is_a_connection_error(wire, how):
    """litellm wraps a failure after the first chunk in MidStreamFallbackError, a
    ServiceUnavailableError: a dropped connection read as ``overloaded``."""
    name = f"cut-{how}"
    dep = wire.deployment(name, (200, {}, stream_events("Hel", "lo ", CUT, "there")), (200, {}, answer("again")))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.text == "again"
    assert out.attempts[0].error.startswith("connection:"), out.attempts[0].error


@pytest.mark.parametrize("how", STREAMS)
@pytest.mark.parametrize("kind, expected", [("overloaded_error", "overloaded"), ("api_error", "server_error")])
def test_an_error_event_mid_stream_keeps_its_kind(wire, how, kind, expected):
    name = f"event-{kind}-{how}"
    events = stream_events("Hel", "lo ", ("error", error(kind, "Overloaded" if kind == "overloaded_error" else
                                                         "Internal server error")), end=False)
    dep = wire.deployment(name, (200, {}, events))
    out = served(gateway(dep), how)
    assert not out.ok and out.attempts[0].error.startswith(f"{expected}:"), out.attempts[0].error
    assert out.attempts[0].completion_tokens > 0  # the streamed "Hello " is charged


@pytest.mark.parametrize("how", HOWS)
def test_a_refusal_is_a_typed_error_billed_and_never_cached(wire, how):
    """Anthropic's ``stop_reason: "refusal"`` (litellm's finish_reason ``content_filter``) stops an
    answer midway: it was a success, its stub cached and served to every later asker."""
    name = f"refusal-{how}"
    dep = wire.deployment(name, (200, {}, answer("I can help with th", input_tokens=40, output_tokens=9,
                                                 stop_reason="refusal")))
    gw = gateway(dep, cache=True, budget=BudgetPolicy(caps={"t": 10.0}))
    first, second = served(gw, how, tenant="t"), served(gw, how, tenant="t")
    assert not first.ok and first.error.code == "provider_rejected" and "content_filter" in str(first.error)
    assert first.attempts[0].error.startswith("bad_request:")
    assert (first.attempts[0].prompt_tokens, first.attempts[0].completion_tokens) == (40, 9)  # what it billed
    assert first.cost_usd == pytest.approx(40 * 3e-6 + 9 * 15e-6)
    assert not second.ok and wire.hits[name] == 2  # asked again, never served from the cache
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(first.cost_usd + second.cost_usd)


@pytest.mark.parametrize("how", STREAMS)
def test_a_stream_cut_midway_is_charged_the_input_tokens_anthropic_reported(wire, how):
    """Anthropic reports a stream's input tokens in message_start, before any text; litellm keeps
    them among the stream's chunks and hands on usage only at the end.  A cut stream's prompt was
    counted locally instead — an estimate for Claude, and blind to tool definitions and system
    text the provider counts — so a 3,000-token prompt was charged as a handful."""
    name = f"cut-billed-{how}"
    dep = wire.deployment(name, (200, {}, stream_events("Hel", "lo ", CUT, "there", input_tokens=3_000)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    cut = out.attempts[0]
    assert not out.ok and cut.error.startswith("connection:")
    assert cut.prompt_tokens == 3_000 and cut.completion_tokens == count_tokens("Hello ", dep.model)
    assert cut.cost_usd == pytest.approx(3_000 * 3e-6 + cut.completion_tokens * 15e-6)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd) == pytest.approx(cut.cost_usd)


@pytest.mark.parametrize("how", STREAMS)
def test_a_caller_who_leaves_midway_is_charged_the_input_tokens_anthropic_reported(wire, how):
    name = f"leave-{how}"
    dep = wire.deployment(name, (200, {}, stream_events("Hel", "lo ", "there", " and", " more", input_tokens=3_000)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    if how == "stream":
        response = gw.stream("hi", tenant="t")
        for _ in response:
            break
    else:
        async def leave():
            async with gw.astream("hi", tenant="t") as response:
                async for _ in response:
                    break
            return response

        response = asyncio.run(leave())
    outcome = response.outcome
    assert outcome.error.code == "client_disconnected" and list(gw.ledger) == [outcome]
    part = outcome.attempts[-1]
    assert part.prompt_tokens == 3_000 and part.completion_tokens == count_tokens("Hel", dep.model)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(outcome.cost_usd) == pytest.approx(part.cost_usd)
    assert gw.budgets.reserved("t", gw.clock()) == 0.0


def test_a_prompt_anthropic_reports_beyond_any_bound_is_not_charged_as_is(wire):
    """The reported input tokens of a cut stream are bounded as a whole answer's are."""
    dep = wire.deployment("cut-absurd", (200, {}, stream_events("Hel", CUT, input_tokens=10 ** 12)),
                          context_window=8_000)
    out = served(gateway(dep), "stream")
    assert out.attempts[0].prompt_tokens == 8_000


@pytest.mark.parametrize("how", STREAMS)
def test_a_stream_cut_while_claude_thinks_is_charged_the_thinking_sent(wire, how):
    """Extended thinking (``reasoning_effort``, or ``thinking`` in a deployment's params) streams
    thinking_delta blocks before any text: billed as output tokens, streamed as litellm's
    ``reasoning_content``.  A stream cut (or left) while Claude was thinking was charged nothing."""
    thought = "Let me work through the refund rules one by one. " * 8
    name = f"think-cut-{how}"
    dep = wire.deployment(name, (200, {}, stream_events("The answer", thinking=(thought, thought, CUT),
                                                        input_tokens=400)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    cut = out.attempts[0]
    assert not out.ok and cut.error.startswith("connection:")
    assert cut.prompt_tokens == 400 and cut.completion_tokens == count_tokens(thought * 2, dep.model)
    assert cut.cost_usd > 0 and gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd) == pytest.approx(cut.cost_usd)


@pytest.mark.parametrize("how", STREAMS)
def test_a_thinking_answer_is_billed_what_anthropic_reported(wire, how):
    dep = wire.deployment(f"think-{how}", (200, {}, stream_events("The answer", " is 4.", thinking=("Hmm. " * 50,),
                                                                  input_tokens=50, output_tokens=400)))
    out = served(gateway(dep), how, max_tokens=1_000)
    assert out.ok and out.text == "The answer is 4." and (out.prompt_tokens, out.completion_tokens) == (50, 400)


def cached(reply: Either, read: int, written: int) -> Either:
    """``reply`` with prompt-cache usage: ``read`` input tokens from Anthropic's cache, ``written`` to it."""
    cache = {"cache_read_input_tokens": read, "cache_creation_input_tokens": written}
    reply.body["usage"].update(cache)
    reply.events[0][1]["message"]["usage"].update(cache)
    return reply


@pytest.mark.parametrize("how", HOWS)
def test_prompt_cache_reads_and_writes_are_priced_at_their_rates(wire, how):
    """Anthropic bills input tokens read from its prompt cache at 0.1× the input price and tokens
    written to it at 1.25×; litellm counts both in prompt_tokens.  They were all charged at the
    input price: a prompt served from the cache cost the tenant's budget 2–10× its bill."""
    dep = wire.deployment(f"cache-{how}", (200, {}, cached(answer("Hello", input_tokens=10, output_tokens=5),
                                                           read=5_000, written=2_000)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    assert out.ok and out.prompt_tokens == 7_010  # as litellm reports them: every input token
    bill = 10 * 3e-6 + 5_000 * 0.3e-6 + 2_000 * 3.75e-6 + 5 * 15e-6  # claude-sonnet-4-5's rates
    assert out.cost_usd == pytest.approx(bill)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


def test_a_price_without_cache_rates_charges_cached_tokens_as_input():
    from llmlab.pricing import ModelPrice, PriceBook

    plain = ModelPrice.per_million(3.0, 15.0)
    assert plain.cost(7_010, 5, cached_tokens=5_000, cache_write_tokens=2_000) == pytest.approx(plain.cost(7_010, 5))
    book = PriceBook.default()
    assert book.price("claude-sonnet-4-5").cache_read_per_token == pytest.approx(0.3e-6)
    assert book.price("gpt-4o").cache_read_per_token == pytest.approx(1.25e-6)
    with pytest.raises(Exception, match="cache_read_per_token"):
        ModelPrice(1e-6, 1e-6, None, -1.0)


@pytest.mark.parametrize("how", HOWS)
def test_a_tool_call_without_arguments_has_an_empty_json_object_streamed_or_not(wire, how):
    """A tool_use block for a tool without parameters can stream no input_json_delta at all:
    streamed, its arguments were ``""`` (not JSON; the caller's ``json.loads`` fails, and the
    call sent back in the next turn is refused), whole they are ``"{}"``."""
    body = message(tool_use("get_time", {}, id="toolu_5"), stop_reason="tool_use")
    events = stream_events(tool=("toolu_5", "get_time"), stop_reason="tool_use")
    out = served(gateway(wire.deployment(f"no-args-{how}", (200, {}, Either(body, events)))), how)
    assert out.ok and [c["function"]["arguments"] for c in out.tool_calls] == ["{}"]


@pytest.mark.parametrize("how", STREAMS)
def test_a_stream_silent_past_its_timeout_midway_is_a_timeout_charged_what_it_sent(wire, how):
    """Wrapped in MidStreamFallbackError, a read timeout mid-stream was classed ``overloaded``."""
    import time

    dep = wire.deployment(f"stall-{how}", (200, {}, stream_events("Hel", "lo ", lambda: time.sleep(1.0), "there",
                                                                  input_tokens=300)), timeout_s=0.3)
    out = served(gateway(dep), how)
    stalled = out.attempts[0]
    assert not out.ok and stalled.error.startswith("timeout:"), stalled.error
    assert (stalled.prompt_tokens, stalled.completion_tokens) == (300, count_tokens("Hello ", dep.model))


@pytest.mark.parametrize("how", HOWS)
def test_params_no_deployment_of_the_chain_takes_are_a_rejection_not_an_outage(wire, how):
    """With every deployment refusing the params before sending, nothing failed but the request:
    it is ``provider_rejected`` (no retry hint, no last-resort answer), not all providers down."""
    dep = wire.deployment(f"no-seed-{how}", (200, {}, answer("never")))
    out = served(gateway(dep), how, seed=7)
    assert not out.ok and out.error.code == "provider_rejected" and "seed" in str(out.error)
    assert [a.error.split(":")[0] for a in out.attempts] == ["unsupported_params"]
    assert dep.name not in wire.hits


@pytest.mark.parametrize("how", HOWS)
def test_a_refused_answer_on_a_cached_prompt_is_priced_at_the_cache_rates(wire, how):
    """A refusal (content filter) is billed, and so are its prompt's cache reads and writes at
    their rates: the error's billed tokens dropped them, charging every input token in full."""
    dep = wire.deployment(f"refusal-cached-{how}", (200, {}, cached(
        answer("I can", input_tokens=10, output_tokens=3, stop_reason="refusal"), read=5_000, written=2_000)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    assert not out.ok and out.error.code == "provider_rejected"
    bill = 10 * 3e-6 + 5_000 * 0.3e-6 + 2_000 * 3.75e-6 + 3 * 15e-6
    assert out.attempts[0].cost_usd == pytest.approx(bill)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


@pytest.mark.parametrize("how", STREAMS)
def test_a_stream_cut_midway_on_a_cached_prompt_is_priced_at_the_cache_rates(wire, how):
    """message_start reports the prompt's cache reads and writes with its input tokens: a stream
    cut midway is charged them at their rates (a 5,000-token prompt read from the cache was
    charged 10× its bill)."""
    reply = cached(Either({"usage": {}}, stream_events("Hel", "lo ", CUT, "there", input_tokens=10)),
                   read=5_000, written=2_000)
    dep = wire.deployment(f"cut-cached-{how}", (200, {}, reply))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    cut = out.attempts[0]
    assert not out.ok and cut.error.startswith("connection:") and cut.prompt_tokens == 7_010
    bill = 10 * 3e-6 + 5_000 * 0.3e-6 + 2_000 * 3.75e-6 + cut.completion_tokens * 15e-6
    assert cut.cost_usd == pytest.approx(bill)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


def test_a_caller_who_leaves_midway_on_a_cached_prompt_is_charged_at_the_cache_rates(wire):
    reply = cached(Either({"usage": {}}, stream_events("Hel", "lo ", "there", " and", input_tokens=10)),
                   read=5_000, written=2_000)
    dep = wire.deployment("leave-cached", (200, {}, reply))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    response = gw.stream("hi", tenant="t")
    for _ in response:
        break
    part = response.outcome.attempts[-1]
    assert response.outcome.error.code == "client_disconnected" and part.prompt_tokens == 7_010
    bill = 10 * 3e-6 + 5_000 * 0.3e-6 + 2_000 * 3.75e-6 + part.completion_tokens * 15e-6
    assert part.cost_usd == pytest.approx(bill) and gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


@pytest.mark.parametrize("how", STREAMS)
@pytest.mark.parametrize("cut", ["cut", "stall"])
def test_a_stream_cut_before_its_first_token_is_charged_the_prompt_anthropic_reported(wire, how, cut):
    """message_start reports the input tokens, which Anthropic bills once it has read the prompt:
    a stream cut (or silent past its timeout) after it but before any text was charged nothing,
    on every retry, while one cut a token later was charged the whole prompt."""
    import time

    stop = CUT if cut == "cut" else (lambda: time.sleep(1.0))
    dep = wire.deployment(f"cut-first-{cut}-{how}", (200, {}, stream_events(stop, "Hel", "lo", input_tokens=3_000)),
                          timeout_s=0.3)
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    failed = out.attempts[0]
    assert not out.ok and failed.error.startswith("connection:" if cut == "cut" else "timeout:"), failed.error
    assert (failed.prompt_tokens, failed.completion_tokens) == (3_000, 0)
    assert failed.cost_usd == pytest.approx(3_000 * 3e-6)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd) == pytest.approx(failed.cost_usd)


def test_a_caller_who_leaves_before_the_first_token_is_charged_the_prompt_anthropic_reported(wire):
    import time

    dep = wire.deployment("leave-first", (200, {}, stream_events(lambda: time.sleep(1.0), "Hel", input_tokens=3_000)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))

    async def leave():
        response = gw.astream("hi", tenant="t")

        async def consume():
            async for _ in response:
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.5)  # message_start is in, the first token is not
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return response

    outcome = asyncio.run(leave()).outcome
    part = outcome.attempts[-1]
    assert outcome.error.code == "client_disconnected"
    assert (part.prompt_tokens, part.completion_tokens) == (3_000, 0) and part.cost_usd == pytest.approx(3_000 * 3e-6)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(part.cost_usd)


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("blocks", [(), (text(""),)], ids=["no-blocks", "empty-text"])
def test_an_empty_claude_answer_is_passed_on_never_cached_streamed_or_not(wire, how, blocks):
    """Claude may answer with no text (``content: []``, or one empty text block; after a tool
    result, say).  litellm makes a null content of it: the whole answer was a malformed response,
    retried and fallen back from (and billed each time), while the same answer streamed was
    passed on.  Both are the empty answer the README describes: passed on, billed, never cached."""
    name = f"empty-{how}-{len(blocks)}"
    dep = wire.deployment(name, (200, {}, Either(message(*blocks, input_tokens=50, output_tokens=1),
                                                 stream_events(*(b["text"] for b in blocks), input_tokens=50,
                                                               output_tokens=1))))
    backup = wire.deployment(f"{name}-backup", (200, {}, answer("other")))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, cache=True, retry=RetryPolicy(max_retries=1, base_s=0.0))
    first, second = served(gw, how), served(gw, how)
    assert first.ok and first.text == "" and first.deployment == name and first.finish_reason == "stop", first
    assert (first.prompt_tokens, first.completion_tokens) == (50, 1) and first.cost_usd > 0
    assert second.ok and second.cache.value == "miss" and wire.hits[name] == 2 and backup.name not in wire.hits


@pytest.mark.parametrize("how", STREAMS)
@pytest.mark.parametrize("body", [[CUT], [b'event: message_start\ndata: {"type": "mess', CUT]], ids=["no-event", "half-event"])
def test_a_stream_whose_body_ends_before_its_first_event_is_a_cut_not_an_empty_answer(wire, how, body):
    """A 200 whose event stream ends before its first whole event (the connection closed cleanly):
    litellm made up a "stop" for it, and the cut read as an empty success, passed on and never
    retried."""
    name = f"bodiless-{how}-{len(body)}"
    dep = wire.deployment(name, (200, {}, body), (200, {}, answer("fine")))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.text == "fine" and wire.hits[name] == 2
    assert out.attempts[0].error.startswith("connection:"), out.attempts[0].error


@pytest.mark.parametrize("how", STREAMS)
def test_claude_s_pings_do_not_hold_a_stream_past_its_first_token_deadline(wire, how):
    """Anthropic pings a slow stream before its first text: the connection is never silent, so
    the HTTP client's read timeout never fires.  A synchronous stream waited all 3 s out
    (``astream``: a regression guard, its deadline was kept before)."""
    import time

    pings = [("ping", {"type": "ping"}), lambda: time.sleep(0.1)] * 30
    name = f"pings-{how}"
    dep = wire.deployment(name, (200, {}, stream_events(*pings, "late", input_tokens=40)), timeout_s=0.5)
    backup = wire.deployment(f"{name}-backup", (200, {}, answer("in time")))
    started = time.perf_counter()
    out = served(gateway(dep, backup, fallbacks={name: [backup.name]}), how)
    assert out.ok and out.text == "in time" and out.deployment == backup.name
    assert "no first token within 0.5 s" in out.attempts[0].error and out.attempts[0].error.startswith("timeout:")
    assert out.attempts[0].prompt_tokens == 40  # reported at message_start, before the pings: billed
    assert time.perf_counter() - started < 2.5
