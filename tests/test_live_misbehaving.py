"""The live path against OpenAI-compatible servers that misbehave in ways the fake provider does not
script: usage that is missing, negative or absurd, 403s, ``Retry-After`` as an HTTP date, streams
that ignore ``max_tokens``.  A few lines of ``http.server`` on 127.0.0.1 serve each canned answer
through litellm's real HTTP stack (openai → httpx), as a provider would.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time

import pytest
from canned_http import CannedServer, openai_frames, running, send_events, send_json

from llmlab import BudgetPolicy, Deployment, FixedRouter, Gateway, RetryPolicy, StreamReset
from llmlab.tokens import count_message_tokens, count_tokens
from llmlab.provider_errors import MAX_RETRY_AFTER_S
from llmlab.testing import FakeProvider, Fault, FaultPlan


def answer(text: str = "hello there", usage: dict | None = None) -> dict:
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    if usage is not None:
        body["usage"] = usage
    return body


def chunk(content: str | None = None, usage: dict | None = None, finish: str | None = None) -> dict:
    choice = {"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}
    out = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [choice] if content is not None or finish else []}
    if usage is not None:
        out["usage"] = usage
    return out


class Canned(CannedServer):
    """Serves, per model name, a fixed reply: ``(status, headers, body)`` where body is a dict
    (JSON) or a list of dicts (SSE events, then ``[DONE]``); a callable in that list is called
    (with the server thread) between two events, to pause the stream."""

    def __init__(self) -> None:
        self.replies: dict[str, tuple[int, dict, object]] = {}
        self.hits: dict[str, int] = {}
        super().__init__()
        self.base_url += "/v1"

    def reply_to(self, handler, body) -> None:
        model = body["model"]
        self.hits[model] = self.hits.get(model, 0) + 1
        status, headers, reply = self.replies[model]
        if isinstance(reply, list):
            send_events(handler, status, {}, openai_frames(reply))
        else:
            send_json(handler, status, headers, reply)

    def deployment(self, name: str, reply: tuple[int, dict, object], **kw) -> Deployment:
        self.replies[name] = reply
        return Deployment(name, f"openai/{name}", {"api_base": self.base_url, "api_key": "sk-test"},
                          price_model="gpt-4o", **{"timeout_s": 5.0, **kw})


@pytest.fixture(scope="module")
def canned():
    yield from running(Canned)


def gateway(*deps: Deployment, **kw) -> Gateway:
    kw.setdefault("retry", RetryPolicy(max_retries=0))
    return Gateway(list(deps), router=FixedRouter(deps[0].name), fallbacks=kw.pop("fallbacks", {}), cache=False,
                   input_guards=(), **kw)


def served(gw: Gateway, how: str, prompt: str = "hi", *, pieces: list | None = None, **kw):
    """``prompt``'s outcome through one of the gateway's four entry points; a stream is read to
    the end, its pieces appended to ``pieces`` when given."""
    if how == "complete":
        return gw.complete(prompt, **kw)
    if how == "acomplete":
        return asyncio.run(gw.acomplete(prompt, **kw))
    got = [] if pieces is None else pieces
    if how == "stream":
        response = gw.stream(prompt, **kw)
        got.extend(response)
        return response.outcome

    async def consume():
        response = gw.astream(prompt, **kw)
        got.extend([piece async for piece in response])
        return response.outcome

    return asyncio.run(consume())


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream", "astream"])
def test_usage_a_provider_misreports_is_not_billed_as_is(canned, how):
    """A negative count credited the tenant's budget; a missing usage (litellm's stand-in is 0) made
    the answer free; 10**12 tokens charged millions of dollars for a 50-token answer."""
    text = "hello there"
    cases = {"negative": {"prompt_tokens": -50, "completion_tokens": -7, "total_tokens": -57},
             "missing": None,
             "absurd": {"prompt_tokens": 10 ** 12, "completion_tokens": 10 ** 12, "total_tokens": 2 * 10 ** 12}}
    for label, usage in cases.items():
        name = f"{how}-{label}"
        if how in ("stream", "astream"):
            events = [chunk("hello "), chunk("there"), chunk(finish="stop")] + ([chunk(usage=usage)] if usage is not None else [])
            dep = canned.deployment(name, (200, {}, events), context_window=8_000)
        else:
            dep = canned.deployment(name, (200, {}, answer(text, usage)), context_window=8_000)
        gw = gateway(dep, budget=BudgetPolicy(caps={"t": 100.0}))
        out = served(gw, how, max_tokens=50, tenant="t")
        assert out.ok and out.text == text, (label, out.error)
        assert 0 < out.prompt_tokens <= 8_000, (label, out.prompt_tokens)
        if label == "absurd":
            assert out.completion_tokens == 50  # the most a call sent with max_tokens=50 can be billed
        else:  # counted locally (litellm counts a stream's own when the usage chunk is missing)
            assert out.completion_tokens == count_tokens(text, dep.model) or (
                label == "missing" and how in ("stream", "astream") and 0 < out.completion_tokens <= 50)
        assert 0 < out.cost_usd < 0.03 and gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream", "astream"])
@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_authentication_errors_not_retried_the_next_deployment_answers(canned, how, status):
    """litellm maps an OpenAI-compatible server's 403 to a bare APIError: it was classed a server
    error and retried.  A refused key is that deployment's (the next has its own): no retry, the
    next deployment, and a failure for the refusing deployment's breaker."""
    name = f"auth-{status}-{how}"
    error = {"error": {"message": "Incorrect API key provided: sk-live-abcdefghijklmnop1234", "type": "invalid_request_error"}}
    dep = canned.deployment(name, (status, {}, error))
    streamed = how in ("stream", "astream")
    backup = canned.deployment(f"{name}-backup", (200, {}, [chunk("hello there"), chunk(finish="stop")] if streamed
                                                    else answer()))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, retry=RetryPolicy(max_retries=2, base_s=0.0))
    out = served(gw, how)
    assert out.ok and out.deployment == f"{name}-backup"
    assert [a.error.split(":")[0] if a.error else None for a in out.attempts] == ["authentication", None]
    assert canned.hits[name] == 1 and canned.hits[f"{name}-backup"] == 1  # no retry, then the fallback
    assert "abcdefghijklmnop1234" not in repr(out.attempts)
    assert gw.pipeline.breakers[name].consecutive_failures == 1


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream", "astream"])
def test_a_404_model_is_the_deployments_fault_the_fallback_answers_and_its_breaker_opens(canned, how, caplog):
    """A retired model or a renamed Azure deployment answers 404 (litellm's NotFoundError).  It
    was read as the request's bad request: every request ended provider_rejected at the primary,
    the fallback never tried, and the breaker counted each 404 a success, so it never opened."""
    name = f"gone-{how}"
    gone = {"error": {"message": f"The model `{name}` does not exist", "type": "invalid_request_error",
                      "code": "model_not_found"}}
    dep = canned.deployment(name, (404, {}, gone))
    streamed = how in ("stream", "astream")
    backup = canned.deployment(f"{name}-backup", (200, {}, [chunk("hello there"), chunk(finish="stop")] if streamed
                                                    else answer()))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, retry=RetryPolicy(max_retries=2, base_s=0.0),
                 breaker={"failure_threshold": 2})
    with caplog.at_level("WARNING", logger="llmlab"):
        for _ in range(2):
            out = served(gw, how)
            assert out.ok and out.deployment == backup.name
            assert [a.error.split(":")[0] if a.error else None for a in out.attempts] == ["not_found", None]
    warned = [r.getMessage() for r in caplog.records if "404" in r.getMessage()]  # not hidden behind the fallback
    assert len(warned) == 1 and repr(name) in warned[0], warned
    assert canned.hits[name] == 2  # no retry of a model that is not there
    out = served(gw, how)
    assert out.ok and out.attempts[0].error == "circuit_open" and canned.hits[name] == 2  # skipped at once


def test_retry_after_as_an_http_date_is_waited_for_and_nonsense_is_ignored(canned):
    """RFC 9110 allows ``Retry-After: <HTTP-date>``; it was read as no hint at all (the retry came
    at once, into the same throttle).  A negative or NaN value was kept as a number in the ledger."""
    slow_down = {"error": {"message": "slow down", "type": "rate_limit"}}
    date = email.utils.formatdate(time.time() + 3, usegmt=True)
    sleeps: list[float] = []
    from llmlab.live import LiteLLMDriver

    driver = LiteLLMDriver(sleep=sleeps.append)
    dep = canned.deployment("ra-date", (429, {"retry-after": date}, slow_down))
    gw = gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0), driver=driver)
    out = gw.complete("hi")
    assert 1.0 < out.attempts[0].retry_after_s <= 3.0 and len(sleeps) == 1 and 1.0 < sleeps[0] <= 3.0

    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    for label, value in (("past", past), ("negative", "-5"), ("nan", "nan"), ("junk", "soon")):
        dep = canned.deployment(f"ra-{label}", (429, {"retry-after": value}, slow_down))
        gw = gateway(dep, retry=RetryPolicy(max_retries=0))
        retry_after = gw.complete("hi").attempts[0].retry_after_s
        assert retry_after == (0.0 if label == "past" else None), (label, retry_after)

    # not a delay as written (an exponent, a digit separator): ignored; a far one held to a day
    far = email.utils.formatdate(time.time() + 3 * 365 * 86_400, usegmt=True)
    for label, value, expected in (("exponent", "1e300", None), ("separator", "1_000", None),
                                   ("years", "99999999", MAX_RETRY_AFTER_S), ("far-date", far, MAX_RETRY_AFTER_S)):
        dep = canned.deployment(f"ra-{label}", (429, {"retry-after": value}, slow_down))
        out = gateway(dep, retry=RetryPolicy(max_retries=0)).complete("hi")
        assert out.attempts[0].retry_after_s == expected, (label, out.attempts[0].retry_after_s)
        if expected is not None:  # what the caller is told: a day, not 300 digits
            assert out.error.retry_after_s == MAX_RETRY_AFTER_S and len(out.error.user_message) < 100

    for label, millis in (("ms-negative", "-100"), ("ms-junk", "soon"), ("ms-good", "1500")):
        dep = canned.deployment(f"ra-{label}", (429, {"retry-after-ms": millis, "retry-after": "7"}, slow_down))
        gw = gateway(dep, retry=RetryPolicy(max_retries=0))
        retry_after = gw.complete("hi").attempts[0].retry_after_s
        # the finer hint wins when it is a delay; nonsense in it does not hide a valid Retry-After
        assert retry_after == (1.5 if label == "ms-good" else 7.0), (label, retry_after)


#: a stream that ignores max_tokens=50: 3,000 chunks
FLOOD = [chunk(f"w{i} ") for i in range(3_000)] + [chunk(finish="stop")]


def flood_then_fallback(canned, name: str) -> tuple[Gateway, Deployment]:
    """A capped gateway whose deployment ``name`` floods (cut by the driver) and falls back to a
    backup that answers "fine"."""
    dep = canned.deployment(name, (200, {}, FLOOD))
    backup = canned.deployment(f"{name}-backup", (200, {}, [chunk("fine"), chunk(finish="stop")]))
    return gateway(dep, backup, fallbacks={name: [backup.name]}, budget=BudgetPolicy(caps={"t": 100.0})), backup


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_stream_that_ignores_max_tokens_is_cut_and_charged_at_most_the_bound(canned, how):
    """20,000 chunks for max_tokens=50 all went to the caller and were charged in full (600 times
    the reservation); now the driver stops reading past twice the bound and falls back."""
    gw, backup = flood_then_fallback(canned, f"flood-{how}")
    if how == "stream":
        response = gw.stream("hi", max_tokens=50, tenant="t")
        pieces = list(response)
    else:
        async def consume():
            response = gw.astream("hi", max_tokens=50, tenant="t")
            return [p async for p in response], response

        pieces, response = asyncio.run(consume())
    out = response.outcome
    before = pieces[:pieces.index(StreamReset(backup.name))]
    assert 50 < len(before) <= 2 * 50 + 64  # cut, a bounded way past the bound
    assert out.ok and out.deployment == backup.name and out.text == "fine"
    cut = out.attempts[0]
    assert cut.error.startswith("malformed_response") and "max_tokens=50" in cut.error
    assert 0 < cut.completion_tokens <= 50  # charged at most what the call could be billed
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)


def test_a_caller_who_leaves_during_a_retrys_sleep_is_still_charged_the_cut_stream(canned):
    """A stream cut after the provider billed part of it, then a backoff sleep before the retry:
    a caller cancelling during the sleep ended the fallback chain with ClientDisconnected, and
    the chain's attempts went with it: the billed call was in neither the ledger nor the budget."""
    dep = canned.deployment("cut-then-sleep", (200, {}, FLOOD))
    gw = gateway(dep, retry=RetryPolicy(max_retries=1, base_s=30.0, cap_s=30.0),
                 budget=BudgetPolicy(caps={"t": 100.0}), seed=0)  # seeded: a jittered sleep of 25 s, not < 2 s

    async def leave_during_the_sleep():
        response = gw.astream("hi", max_tokens=50, tenant="t")

        async def consume():
            async for _ in response:
                pass

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), timeout=2.0)
        return response

    out = asyncio.run(leave_during_the_sleep()).outcome
    assert out is not None and not out.ok and "left" in out.error.message
    assert [a.deployment for a in out.attempts] == ["cut-then-sleep"]
    assert out.attempts[0].completion_tokens > 0 and out.cost_usd > 0
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_caller_who_leaves_at_a_stream_reset_is_not_billed_again_for_the_cut_stream(canned, how):
    """Leaving at the StreamReset marker (before the fallback's call starts) billed the cut call's
    text a second time, as a partial answer of the fallback deployment, which was never called."""
    name = f"reset-{how}"
    gw, backup = flood_then_fallback(canned, name)
    if how == "stream":
        response = gw.stream("hi", max_tokens=50, tenant="t")
        for piece in response:
            if isinstance(piece, StreamReset):
                break
        response.close()
    else:
        async def leave():
            response = gw.astream("hi", max_tokens=50, tenant="t")
            async for piece in response:
                if isinstance(piece, StreamReset):
                    break
            await response.aclose()
            return response

        response = asyncio.run(leave())
    out = response.outcome
    assert out is not None and not out.ok
    cut = out.attempts[0]
    assert cut.deployment == name and cut.completion_tokens > 0
    assert all(a.deployment != backup.name or a.cost_usd == 0 for a in out.attempts), out.attempts
    assert out.cost_usd == pytest.approx(cut.cost_usd)
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)


@pytest.mark.parametrize("how", ["complete", "stream"])
def test_an_empty_answer_is_passed_on_but_never_cached(canned, how):
    """A 200 with empty content (a glitch, a content filter's blank) was cached and served to every
    later asker for the cache's TTL."""
    name = f"blank-{how}"
    blank = [chunk(""), chunk(" \n"), chunk(finish="stop")] if how == "stream" else answer(" \n", {
        "prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})
    dep = canned.deployment(name, (200, {}, blank))
    gw = Gateway([dep], router=FixedRouter(name), fallbacks={}, input_guards=())
    first, second = served(gw, how), served(gw, how)
    assert first.ok and not first.text.strip()
    assert second.cache.value == "miss" and canned.hits[name] == 2


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream"])
def test_a_refused_connection_is_a_connection_error_that_names_its_cause(canned, how):
    """litellm reports a refused connection (or a host that does not resolve) as a 500 "Connection
    error.": attempts said server_error, as if the provider had answered and failed."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dep = Deployment("refused", "openai/gpt-4o", {"api_base": f"http://127.0.0.1:{port}/v1", "api_key": "sk-test"},
                     timeout_s=5.0)
    out = served(gateway(dep), how)
    assert not out.ok and out.attempts[0].error.startswith("connection:")
    assert "ConnectionRefusedError" in out.attempts[0].error


def test_a_socket_error_under_a_400_is_the_requests_fault_not_the_providers():
    """For Anthropic and Bedrock litellm fetches an image URL itself; a caller's dead link came
    back as a 400 over a socket error, was read as the provider's connection failure, and opened
    that provider's breakers for every tenant.  A 500 over one is still the provider's."""
    import httpx
    import litellm

    from llmlab.effects import ErrorKind
    from llmlab.provider_errors import classify_exception

    def raised(cls, **kw):
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as cause:
                raise cls(message="Unable to fetch image", llm_provider="anthropic", model="claude", **kw) from cause
        except Exception as exc:
            return exc

    request = httpx.Request("POST", "http://127.0.0.1:1/v1/messages")
    assert classify_exception(raised(litellm.BadRequestError)) is ErrorKind.BAD_REQUEST
    assert classify_exception(raised(litellm.InternalServerError)) is ErrorKind.CONNECTION
    assert classify_exception(raised(litellm.APIConnectionError, request=request)) is ErrorKind.CONNECTION


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_stream_answered_with_a_json_body_is_malformed_not_an_empty_success(canned, how):
    """A server that ignores stream=true answers JSON; litellm finds no events in it and makes up a
    "stop" chunk, so the provider's answer was lost and the request read as an empty success."""
    name = f"json-for-{how}"
    dep = canned.deployment(name, (200, {}, answer("the answer, as JSON")))
    backup = canned.deployment(f"{name}-backup", (200, {}, [chunk("streamed"), chunk(finish="stop")]))
    out = served(gateway(dep, backup, fallbacks={name: [backup.name]}), how)
    assert out.ok and out.deployment == backup.name and out.text == "streamed"
    assert out.attempts[0].error.startswith("malformed_response") and "application/json" in out.attempts[0].error


@pytest.mark.parametrize("how", ["complete", "acomplete"])
def test_an_unusable_answer_the_provider_billed_is_charged(canned, how):
    """A 200 that cannot be used (a tool call to no function) is a malformed answer and is retried,
    but the provider billed its usage: it was charged nothing, on every retry and fallback."""
    name = f"nameless-call-{how}"
    unusable = tool_answer("{}", {"prompt_tokens": 400, "completion_tokens": 30, "total_tokens": 430})
    unusable["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = ""
    dep = canned.deployment(name, (200, {}, unusable))
    backup = canned.deployment(f"{name}-backup", (200, {}, answer("fine", {"prompt_tokens": 9, "completion_tokens": 1,
                                                                            "total_tokens": 10})))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, budget=BudgetPolicy(caps={"t": 100.0}))
    out = served(gw, how, tenant="t", max_tokens=50)
    assert out.ok and out.deployment == backup.name
    failed = out.attempts[0]
    assert failed.error.startswith("malformed_response")
    assert (failed.prompt_tokens, failed.completion_tokens) == (400, 30) and failed.cost_usd > 0
    assert out.cost_usd == pytest.approx(sum(a.cost_usd for a in out.attempts))
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)


# ----------------------------------------------------------------------------- tool calls
TOOLS = [{"type": "function", "function": {"name": "lookup_order", "description": "Find a customer's order",
                                            "parameters": {"type": "object", "properties": {"email": {"type": "string"}}}}}]


def tool_answer(arguments: str, usage: dict | None = None) -> dict:
    body = answer(None, usage)
    body["choices"][0]["message"]["tool_calls"] = [
        {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": arguments}}]
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


def tool_chunks(arguments: str) -> list[dict]:
    """The call's id and name first, then its arguments in pieces, as OpenAI streams a tool call."""
    def delta(call: dict) -> dict:
        return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **call}]}, "finish_reason": None}]}

    pieces = [arguments[i:i + 7] for i in range(0, len(arguments), 7)]
    return ([delta({"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": ""}})]
            + [delta({"function": {"arguments": p}}) for p in pieces] + [chunk(finish="tool_calls")])


def test_a_caller_who_cancels_in_the_middle_of_a_streamed_tool_call_pays_for_the_arguments_sent(canned):
    """A tool call sends the caller no text, and a disconnect was billed by the text the caller
    had received: a task cancelled while the provider streamed a call's arguments (generated,
    so billed) cost nothing and settled its budget hold at $0.  The arguments sent so far are now
    charged, as a cut stream's are."""
    arguments = json.dumps({"email": "kim@example.com", "note": "please check " * 40})
    chunks = tool_chunks(arguments)
    half = len(chunks) // 2
    reached = threading.Event()

    def pause() -> None:
        reached.set()
        time.sleep(4.0)

    dep = canned.deployment("tools-cancelled", (200, {}, chunks[:half] + [pause] + chunks[half:]))
    gw = gateway(dep, budget=BudgetPolicy(caps={"default": 10.0}))

    async def cancel_mid_call():
        response = gw.astream("Where is my order?", tools=TOOLS, max_tokens=400)

        async def consume():
            return [piece async for piece in response]

        task = asyncio.create_task(consume())
        assert await asyncio.to_thread(reached.wait, 20.0)
        await asyncio.sleep(0.5)  # the first half on the wire reaches the client
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return response.outcome

    outcome = asyncio.run(cancel_mid_call())
    assert outcome.error is not None and outcome.error.code == "client_disconnected", outcome
    sent_so_far = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:half])
    (attempt,) = outcome.attempts  # the interrupted call, billed (an error outcome's own counts are 0)
    assert 0 < attempt.completion_tokens <= count_tokens("lookup_order" + sent_so_far, dep.model)
    assert attempt.prompt_tokens > 0 and attempt.cost_usd > 0 and outcome.cost_usd == pytest.approx(attempt.cost_usd)
    assert gw.budgets.spent("default", gw.clock()) == pytest.approx(outcome.cost_usd)
    assert gw.budgets.reserved("default", gw.clock()) == 0.0


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream", "astream"])
def test_a_body_or_stream_event_that_is_not_json_is_a_malformed_response(how):
    """litellm raises a 200's unparseable body as a 500 and a broken stream event as a connection
    error: the attempt read ``server_error`` or ``connection``, never the ``malformed_response``
    the error kinds have for it (found by tests/test_stream_fuzz.py)."""
    plan = FaultPlan()
    plan.model("gpt-4o").first(1, Fault.malformed())
    with FakeProvider(plan) as fp:
        dep = Deployment("broken", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test"}, timeout_s=5.0)
        out = served(gateway(dep, retry=RetryPolicy(max_retries=1, base_s=0.0)), how)
    assert out.ok and [(a.error or "ok").split(":")[0] for a in out.attempts] == ["malformed_response", "ok"]


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_streamed_tool_call_without_usage_is_billed_the_local_count_not_litellms_guess(canned, how):
    """Asked for its usage, litellm ends every stream with a usage chunk; from a provider that sent
    none it is litellm's own count, which was charged as the provider's report: a tool call counted
    from its whole JSON (id, type and all), 4 times the name and arguments the README says a
    missing usage is counted from (found by tests/test_stream_fuzz.py)."""
    arguments = json.dumps({"email": "kim@example.com"})
    dep = canned.deployment(f"tools-no-usage-{how}", (200, {}, tool_chunks(arguments)))
    out = served(gateway(dep), how, "Where is my order?", tools=TOOLS, max_tokens=200)
    assert out.ok and out.tool_calls, out.error
    assert out.completion_tokens == count_tokens("lookup_order" + arguments, dep.model)
    assert out.prompt_tokens == count_message_tokens([{"role": "user", "content": "Where is my order?"}], dep.model)


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream", "astream"])
def test_a_tool_call_reaches_the_caller_with_its_pii_put_back_and_is_never_cached(canned, how):
    """A model that answered with a tool call (no text) was a malformed response: retried, then
    fallen back from, and the caller never saw the call."""
    arguments = json.dumps({"email": "[EMAIL_1]"})
    reply = tool_chunks(arguments) if how in ("stream", "astream") else tool_answer(arguments)
    dep = canned.deployment(f"tools-{how}", (200, {}, reply))
    gw = Gateway([dep], router=FixedRouter(dep.name), fallbacks={}, retry=RetryPolicy(max_retries=1),
                 unmask_answers=True)
    asked = "Where is my order? I am kim@example.com"
    first = served_prompt(gw, how, asked, tools=TOOLS)
    assert first.ok and first.kind.value == "model" and first.text == "", first
    assert canned.hits[dep.name] == 1  # not retried
    (call,) = first.tool_calls
    assert call["id"] == "call_1" and call["function"]["name"] == "lookup_order"
    assert json.loads(call["function"]["arguments"]) == {"email": "kim@example.com"}  # the caller's own value
    assert first.completion_tokens > 0 and first.cost_usd > 0
    again = served_prompt(gw, how, asked, tools=TOOLS)
    assert again.cache.value == "miss" and canned.hits[dep.name] == 2  # a step of an agent loop: not cached


def test_a_tool_call_without_a_name_is_malformed(canned):
    body = tool_answer("{}")
    body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = ""
    dep = canned.deployment("tools-nameless", (200, {}, body))
    out = gateway(dep).complete("hi", tools=TOOLS)
    assert not out.ok and "malformed" in out.attempts[0].error


def served_prompt(gw: Gateway, how: str, prompt: str, **kw):
    """As :func:`served`, for an answer with no text: a stream yields nothing."""
    pieces: list = []
    outcome = served(gw, how, prompt, pieces=pieces, **kw)
    assert pieces == []  # no text to stream
    return outcome


@pytest.mark.parametrize("how", ["complete", "acomplete", "stream", "astream"])
def test_an_answer_cut_at_max_tokens_says_so(canned, how):
    """A caller could not tell an answer the provider cut at ``max_tokens`` from a whole one (nor a
    truncated tool call's arguments from whole JSON): ``Outcome.finish_reason`` says ``length``."""
    if how in ("stream", "astream"):
        cut = [chunk("Refunds take five"), chunk(finish="length")]
        whole = [chunk("Refunds take five days."), chunk(finish="stop")]
    else:
        cut, whole = answer("Refunds take five"), answer("Refunds take five days.")
        cut["choices"][0]["finish_reason"] = "length"
    for name, reply, reason in ((f"cut-{how}", cut, "length"), (f"whole-{how}", whole, "stop")):
        gw = gateway(canned.deployment(name, (200, {}, reply)))
        outcome = served(gw, how, "How long do refunds take?", max_tokens=3)
        assert outcome.ok and outcome.text.startswith("Refunds take five") and outcome.finish_reason == reason, \
            (name, outcome)


def test_the_request_log_names_the_called_functions_never_their_arguments(canned, caplog):
    import logging

    dep = canned.deployment("tools-log", (200, {}, tool_answer(json.dumps({"email": "[EMAIL_1]"}))))
    gw = Gateway([dep], router=FixedRouter(dep.name), fallbacks={}, unmask_answers=True)
    with caplog.at_level(logging.INFO, logger="llmlab.gateway"):
        out = gw.complete("Where is my order? I am kim@example.com", tools=TOOLS)
    assert out.ok and out.tool_calls
    (record,) = [r.llmlab for r in caplog.records if hasattr(r, "llmlab") and "tool_calls" in r.llmlab]
    assert record["tool_calls"] == ["lookup_order"]
    assert "kim@example.com" not in caplog.text and "EMAIL" not in caplog.text


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_runaway_streamed_tool_call_is_cut_and_charged(canned, how):
    """A tool call whose arguments ran past max_tokens was cut (StreamOverrun) and charged
    nothing, prompt included: the arguments never reached the caller, so they were not the
    partial text a cut stream is billed by.  Now the streamed arguments are charged, at most
    the bound."""
    name = f"tool-flood-{how}"
    dep = canned.deployment(name, (200, {}, tool_chunks(json.dumps({"email": " " * 3_000 + "x"}))))
    backup = canned.deployment(f"{name}-backup", (200, {}, [chunk("fine"), chunk(finish="stop")]))
    gw = gateway(dep, backup, fallbacks={name: [backup.name]}, budget=BudgetPolicy(caps={"t": 100.0}))
    if how == "stream":
        response = gw.stream("hi", max_tokens=50, tenant="t", tools=TOOLS)
        assert list(response) == ["fine"]
    else:
        async def consume():
            response = gw.astream("hi", max_tokens=50, tenant="t", tools=TOOLS)
            assert [p async for p in response] == ["fine"]
            return response

        response = asyncio.run(consume())
    out = response.outcome
    assert out.ok and out.deployment == backup.name and not out.tool_calls
    cut = out.attempts[0]
    assert cut.error.startswith("malformed_response") and "max_tokens=50" in cut.error
    assert cut.prompt_tokens > 0 and cut.completion_tokens == 50 and cut.cost_usd > 0
    assert gw.budgets.spent("t", gw.clock()) == pytest.approx(out.cost_usd)


def choice_chunk(index: int, delta: dict) -> dict:
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": None}]}


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_stream_of_n_answers_serves_the_first_not_all_of_them_interleaved(canned, how):
    """With ``n=2`` a provider streams each choice's deltas under its index.  Every delta was
    read as the answer's: the text came out interleaved ("HelloBonjour world monde", and cached
    so), and two choices' tool-call arguments were glued into one call's invalid JSON.  Now the
    first choice is the answer, as for a whole response, and the others are billed."""
    one, two = json.dumps({"email": "a@x.io"}), json.dumps({"email": "b@y.io"})
    events = [choice_chunk(0, {"content": "Hello"}), choice_chunk(1, {"content": "Bonjour"}),
              choice_chunk(0, {"content": " world"}), choice_chunk(1, {"content": " monde"}),
              choice_chunk(0, {"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                                               "function": {"name": "lookup_order", "arguments": ""}}]}),
              choice_chunk(1, {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                               "function": {"name": "lookup_order", "arguments": ""}}]}),
              *(choice_chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                for k in range(0, len(one), 5) for i, piece in ((0, one[k:k + 5]), (1, two[k:k + 5]))),
              chunk(finish="tool_calls")]
    dep = canned.deployment(f"n2-{how}", (200, {}, events))
    gw = gateway(dep)
    if how == "stream":
        response = gw.stream("hi", n=2, tools=TOOLS)
        pieces = list(response)
    else:
        async def consume():
            response = gw.astream("hi", n=2, tools=TOOLS)
            return [p async for p in response], response

        pieces, response = asyncio.run(consume())
    out = response.outcome
    assert pieces == ["Hello", " world"] and out.ok and out.text == "Hello world"
    (call,) = out.tool_calls
    assert call["id"] == "c0" and json.loads(call["function"]["arguments"]) == {"email": "a@x.io"}
    both = count_tokens("Hello world" + "lookup_order" + one + "Bonjour monde" + two, "gpt-4o")
    assert out.completion_tokens >= both - 4  # no usage reported: the other choice is billed too


@pytest.mark.parametrize("how", ["complete", "stream"])
def test_output_guards_check_a_tool_calls_arguments_as_they_check_an_answer(canned, how):
    """A tool call's arguments reached the caller without the output guards: a key from the
    model's context went out redacted in a text answer but verbatim in ``send(body=…)``, and a
    blocked term passed.  Now the arguments are guarded like the text (secrets redacted, the JSON
    kept valid; a blocked term blocks the answer)."""
    from llmlab.guardrails.stages import OutputFilterGuard

    key = "sk-proj-" + "A1b2C3d4" * 4
    leak = json.dumps({"email": f"the key is {key}"})
    reply = tool_chunks(leak) if how == "stream" else tool_answer(leak)
    dep = canned.deployment(f"tools-guard-{how}", (200, {}, reply))
    gw = gateway(dep, output_guards=[OutputFilterGuard(blocked_terms=["codename-x"])])
    out = served_prompt(gw, how, "hi", tools=TOOLS)
    assert out.ok, out.error
    (call,) = out.tool_calls
    assert key not in call["function"]["arguments"]
    assert json.loads(call["function"]["arguments"]) == {"email": "the key is [REDACTED:openai_key]"}
    assert any(f.startswith("output_filter:") for f in out.guard_findings)

    term = json.dumps({"email": "ship codename-x tonight"})
    blocked_dep = canned.deployment(f"tools-term-{how}", (200, {}, tool_chunks(term) if how == "stream"
                                                          else tool_answer(term)))
    gw = gateway(blocked_dep, output_guards=[OutputFilterGuard(blocked_terms=["codename-x"])])
    out = served_prompt(gw, how, "hi", tools=TOOLS)
    assert not out.ok and out.error.code == "guardrail_blocked" and not out.tool_calls


def test_a_redaction_that_would_break_a_tool_calls_json_blocks_the_answer(canned):
    pem = json.dumps({"email": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg"})  # no END: redacted to the end
    dep = canned.deployment("tools-pem", (200, {}, tool_answer(pem)))
    from llmlab.guardrails.stages import OutputFilterGuard

    out = gateway(dep, output_guards=[OutputFilterGuard()]).complete("hi", tools=TOOLS)
    assert not out.ok and out.error.code == "guardrail_blocked" and "JSON" in out.error.message
    assert "MIIEvQ" not in repr(out)
