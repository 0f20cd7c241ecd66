"""The live path against Amazon Bedrock's runtime API through litellm's ``bedrock/converse/`` and
``bedrock/invoke/`` providers pointed at a local server (``tests/bedrock_wire.py``) with fake AWS
credentials: whole answers (``/converse``) and streams in AWS's binary event-stream framing
(``/converse-stream``, ``/invoke-with-response-stream``) — text deltas, usage in the metadata
event, the stopReason, toolUse deltas, exception events mid-stream and cut connections.
"""
from __future__ import annotations

import pytest
from anthropic_wire import message, stream_events
from bedrock_wire import CUT, Bedrock, Either, converse, converse_events, event, exception, invoke_chunk
from canned_http import running
from test_live_anthropic_wire import gateway, served

from llmlab import BudgetPolicy, RetryPolicy
from llmlab.tokens import count_tokens


@pytest.fixture(scope="module")
def bedrock():
    yield from running(Bedrock)


@pytest.mark.parametrize("how", ["complete", "acomplete"])
def test_a_bedrock_answer_is_billed_what_bedrock_reported_cache_rates_included(bedrock, how):
    dep = bedrock.deployment((200, {}, converse("Hello there", inputTokens=10, outputTokens=5,
                                                cacheReadInputTokens=5_000, cacheWriteInputTokens=2_000)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    bill = 10 * 3e-6 + 5_000 * 0.3e-6 + 2_000 * 3.75e-6 + 5 * 15e-6
    assert out.ok and out.text == "Hello there" and out.prompt_tokens == 7_010
    assert out.cost_usd == pytest.approx(bill) and gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream", "astream"])
def test_an_answer_a_bedrock_guardrail_stopped_is_a_typed_error_never_cached(bedrock, how):
    """``stopReason: guardrail_intervened`` (litellm: finish_reason content_filter) carries the
    guardrail's canned text: it was an answer, cached and served to later askers."""
    canned, usage = "Sorry, the model cannot answer this.", {"inputTokens": 40, "outputTokens": 9}
    dep = bedrock.deployment((200, {}, Either(converse(canned, stop="guardrail_intervened", **usage),
                                              converse_events(canned, stop="guardrail_intervened", usage=usage))))
    gw = gateway(dep, cache=True)
    first, second = served(gw, how), served(gw, how)
    assert not first.ok and first.error.code == "provider_rejected" and "content_filter" in str(first.error)
    assert (first.attempts[0].prompt_tokens, first.attempts[0].completion_tokens) == (40, 9)
    assert not second.ok and bedrock.count == 2


@pytest.mark.parametrize("status, kind, error", [
    (429, "rate_limit", "ThrottlingException"), (503, "overloaded", "ServiceUnavailableException"),
    (400, "context_window", "ValidationException"), (403, "authentication", "AccessDeniedException"),
    (424, "server_error", "ModelErrorException")])
def test_bedrock_errors_map_to_their_kinds(bedrock, status, kind, error):
    message = {"ValidationException": "Input is too long for requested model."}.get(error, "no")
    dep = bedrock.deployment((status, {"x-amzn-ErrorType": f"{error}:http://internal.amazon.com/"}, {"message": message}))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=0)), "complete")
    assert not out.ok and out.attempts[0].error.startswith(f"{kind}:"), out.attempts[0].error
    assert "fake-secret-fake-secret" not in str(out.error) + repr(out.attempts)


# ----------------------------------------------------------------------------- streams
HOWS = ["complete", "acomplete", "stream", "astream"]
STREAMS = ["stream", "astream"]


@pytest.mark.parametrize("how", STREAMS)
def test_a_bedrock_stream_is_billed_what_its_metadata_event_reported(bedrock, how):
    """Bedrock reports a stream's usage once, in the metadata event after messageStop."""
    usage = {"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 5_000, "cacheWriteInputTokens": 2_000}
    dep = bedrock.deployment((200, {}, converse_events("Hel", "lo ", "there", usage=usage)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    pieces: list = []
    out = served(gw, how, tenant="t", pieces=pieces)
    bill = 10 * 3e-6 + 5_000 * 0.3e-6 + 2_000 * 3.75e-6 + 5 * 15e-6
    assert out.ok and pieces == ["Hel", "lo ", "there"] and out.text == "Hello there" and out.finish_reason == "stop"
    assert (out.prompt_tokens, out.completion_tokens) == (7_010, 5) and bedrock.paths[-1].endswith("/converse-stream")
    assert out.cost_usd == pytest.approx(bill) and gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


@pytest.mark.parametrize("how", HOWS)
def test_a_bedrock_tool_use_and_its_stop_reason_come_back_streamed_or_not(bedrock, how):
    """toolUse blocks (a streamed one's input in pieces) are OpenAI-shaped tool calls, and the
    stopReason is the outcome's finish_reason: tool_use → tool_calls, max_tokens → length."""
    whole = converse("Let me look.", stop="tool_use", tool={"toolUseId": "tooluse_9", "name": "lookup_order",
                                                            "input": {"email": "a@b.c"}})
    events = converse_events("Let me look.", stop="tool_use", tool=("tooluse_9", "lookup_order"),
                             tool_pieces=('{"email"', ': "a@b.c"}'))
    out = served(gateway(bedrock.deployment((200, {}, Either(whole, events)))), how)
    assert out.ok and out.text == "Let me look." and out.finish_reason == "tool_calls"
    assert [dict(c) for c in out.tool_calls] == [{"id": "tooluse_9", "type": "function", "function": {
        "name": "lookup_order", "arguments": '{"email": "a@b.c"}'}}]
    cut = served(gateway(bedrock.deployment((200, {}, Either(converse("Refunds take", stop="max_tokens"),
                                                             converse_events("Refunds ", "take", stop="max_tokens"))))),
                 how, max_tokens=2)
    assert cut.ok and cut.text == "Refunds take" and cut.finish_reason == "length"


@pytest.mark.parametrize("how", STREAMS)
def test_the_invoke_route_streams_the_models_own_events_in_chunks(bedrock, how):
    """``bedrock/invoke/``: each event-stream ``chunk`` carries one of Anthropic's stream events,
    base64-encoded; the usage comes in two halves (message_start, message_delta)."""
    events = stream_events("Hel", "lo", tool=("toolu_1", "lookup_order"), tool_pieces=('{"email": "a@b.c"}',),
                           input_tokens=123, output_tokens=45, stop_reason="tool_use")
    dep = bedrock.deployment((200, {}, [invoke_chunk(data) for _, data in events]), route="invoke")
    out = served(gateway(dep), how)
    assert out.ok and out.text == "Hello" and (out.prompt_tokens, out.completion_tokens) == (123, 45)
    assert out.finish_reason == "tool_calls" and out.tool_calls[0]["function"]["arguments"] == '{"email": "a@b.c"}'
    assert bedrock.paths[-1].endswith("/invoke-with-response-stream")


@pytest.mark.parametrize("how", STREAMS)
@pytest.mark.parametrize("event_type, kind", [
    ("throttlingException", "rate_limit"), ("serviceUnavailableException", "overloaded"),
    ("modelStreamErrorException", "server_error"), ("validationException", "bad_request")])
def test_an_exception_event_mid_stream_is_its_kind_and_what_was_sent_is_billed(bedrock, how, event_type, kind):
    """An error event after some text: the attempt is the event's kind (a throttle retried, a
    validation error not), and the text Bedrock streamed before it is charged.  The model failing
    mid-stream (modelStreamErrorException, HTTP 424: "retry your request", AWS says) was a
    bad_request: a provider_rejected error at once, neither retried nor fallen back from."""
    broken = converse_events("Refunds take ", "five", exception(event_type, "boom"), stop=None)
    dep = bedrock.deployment((200, {}, broken), (200, {}, converse_events("Fine.")))
    gw = gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0), budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    failed = out.attempts[0]
    assert failed.error.startswith(f"{kind}:") and event_type in failed.error, failed.error
    assert out.ok == (kind != "bad_request") and bedrock.count == (1 if kind == "bad_request" else 2)
    assert failed.completion_tokens == count_tokens("Refunds take five", dep.model) and failed.cost_usd > 0
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)
    assert out.cost_usd == pytest.approx(sum(a.cost_usd for a in out.attempts))


@pytest.mark.parametrize("how", STREAMS)
def test_a_bedrock_stream_cut_between_frames_is_a_connection_error_billed_what_was_sent(bedrock, how):
    dep = bedrock.deployment((200, {}, converse_events("Refunds take ", "five", CUT)), (200, {}, converse_events("Fine.")))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    cut = out.attempts[0]
    assert out.ok and out.text == "Fine." and cut.error.startswith("connection:"), cut.error
    assert cut.completion_tokens == count_tokens("Refunds take five", dep.model) and cut.cost_usd > 0


@pytest.mark.parametrize("how", STREAMS)
@pytest.mark.parametrize("route", ["converse", "invoke"])
def test_a_bedrock_stream_cut_before_its_first_block_is_no_empty_answer(bedrock, how, route):
    """A stream cut after messageStart, before any content: litellm makes up a "stop" for a
    Converse stream whose only event was messageStart, and the cut read as an empty success —
    passed on, never retried nor fallen back from."""
    start = event("messageStart", {"role": "assistant"}) if route == "converse" else \
        invoke_chunk(stream_events(end=False)[0][1])
    answer = converse_events("Fine.") if route == "converse" else \
        [invoke_chunk(data) for _, data in stream_events("Fine.")]
    dep = bedrock.deployment((200, {}, [start, CUT]), (200, {}, answer), route=route)
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.text == "Fine." and bedrock.count == 2
    assert out.attempts[0].error.startswith("connection:"), out.attempts[0].error


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("route", ["converse", "invoke"])
def test_an_empty_bedrock_answer_is_passed_on_never_cached_streamed_or_not(bedrock, how, route):
    """No text at all: the invoke route's whole answer (Anthropic's ``content: []``) was a
    malformed response, retried and billed again, while the Converse route and both streams passed
    it on as the empty answer it is."""
    if route == "converse":
        reply = Either(converse(None, inputTokens=50, outputTokens=1),
                       converse_events(usage={"inputTokens": 50, "outputTokens": 1}))
    else:
        reply = Either(message(input_tokens=50, output_tokens=1),
                       [invoke_chunk(data) for _, data in stream_events(input_tokens=50, output_tokens=1)])
    gw = gateway(bedrock.deployment((200, {}, reply), route=route), cache=True, retry=RetryPolicy(max_retries=1, base_s=0.0))
    first, second = served(gw, how), served(gw, how)
    assert first.ok and first.text == "" and (first.prompt_tokens, first.completion_tokens) == (50, 1), first
    assert second.ok and second.cache.value == "miss" and bedrock.count == 2


@pytest.mark.parametrize("how", STREAMS)
def test_a_bedrock_stream_cut_mid_frame_is_retried_and_billed_what_was_sent(bedrock, how):
    """The body ends partway through a frame: litellm finds undecoded bytes after the last whole
    event and raises a 502 (so the attempt reads server_error, not connection); what matters is
    that it is retried and that the text before it is charged."""
    half = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " days"}})[:20]
    dep = bedrock.deployment((200, {}, converse_events("Refunds take ", "five", half, CUT)),
                             (200, {}, converse_events("Fine.")))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    cut = out.attempts[0]
    assert out.ok and out.text == "Fine." and bedrock.count == 2
    assert cut.error.split(":")[0] in ("server_error", "connection"), cut.error
    assert cut.completion_tokens == count_tokens("Refunds take five", dep.model) and cut.cost_usd > 0


@pytest.mark.parametrize("how", ["complete", "acomplete"])
def test_a_bedrock_200_that_is_no_json_is_a_malformed_response_not_a_rejection(bedrock, how):
    """A 200 whose body is not JSON (a proxy's login page, say): litellm raises it from the
    Converse route as a 422 BadRequestError (Bedrock itself never answers 422), so it was a
    provider_rejected error at once, neither retried nor fallen back from."""
    page = (200, {"content-type": "text/html"}, [b"<html><body>Sign in to the proxy</body></html>"])
    dep = bedrock.deployment(page, (200, {}, converse("Fine.")))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and out.text == "Fine." and bedrock.count == 2
    assert out.attempts[0].error.startswith("malformed_response:"), out.attempts[0].error


def test_a_stream_cut_by_an_exception_event_gives_its_connection_back_at_once(bedrock):
    """Bedrock's decoder in litellm loops over the HTTP response's bytes; a stream cut by an
    exception event left that iterator open, held by the exception's traceback, until a garbage
    collection closed it — on whichever thread allocated then, which once was inside httpcore's
    connection pool holding its lock (not re-entrant): the test suite hung on Python 3.13.  The
    connection is back in the pool as soon as the request ends, with no collection."""
    import gc

    from httpcore._sync.connection_pool import PoolByteStream

    broken = converse_events("Refunds take ", "five", exception("throttlingException", "boom"), stop=None)
    dep = bedrock.deployment((200, {}, broken), (200, {}, converse_events("Fine.")))
    gw = gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0))
    gc.collect()
    gc.disable()
    try:
        out = served(gw, "stream")
        still_open = [s for s in gc.get_objects() if isinstance(s, PoolByteStream) and not s._closed]
    finally:
        gc.enable()
    assert out.ok and out.text == "Fine." and out.attempts[0].error.startswith("rate_limit:")
    assert still_open == []
