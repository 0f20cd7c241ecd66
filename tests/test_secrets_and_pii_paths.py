"""PII and credentials on the less travelled paths: tool-call arguments, names, content parts
given as a tuple, answers the model writes, acceptance checks, provider errors that echo a key,
Redis URLs, validation messages and caller-set request ids."""
from __future__ import annotations

import io
import json
import logging
import pickle
import traceback

import pytest

from llmlab import CascadeRouter, Deployment, FixedRouter, InvalidRequest
from llmlab.backends.redis_link import redact_url
from llmlab.errors import ConfigError
from llmlab.guardrails import InjectionGuard, PIIMaskingGuard
from llmlab.guardrails.pii import PIIMasker
from llmlab.provider_errors import redact_secrets

ALICE, BOB = "alice.kim@example.com", "bob.lee@example.org"


def _tool_conversation(email: str) -> list[dict]:
    return [{"role": "user", "content": "Please send my invoice to my email on file."},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "send_invoice", "arguments": json.dumps({"email": email})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sent"},
            {"role": "user", "content": "Which address did you send it to?"}]


def _echo_tool_argument(call) -> str:  # a model that reads the tool-call arguments it was given
    return "I sent it to %s." % json.loads(call.messages[1]["tool_calls"][0]["function"]["arguments"])["email"]


def _cached_texts(gw) -> list[str]:
    return [e.value.text for e in gw.exact_cache._entries.values()]


def test_tool_call_arguments_are_masked_and_one_users_answer_is_never_anothers(make_gateway, driver):
    driver.default = _echo_tool_argument
    gw = make_gateway(unmask_answers=True)
    alice = gw.complete(_tool_conversation(ALICE), tenant="shop")
    bob = gw.complete(_tool_conversation(BOB), tenant="shop")
    assert json.loads(driver.calls[0].messages[1]["tool_calls"][0]["function"]["arguments"]) == {"email": "[EMAIL_1]"}
    assert alice.text == f"I sent it to {ALICE}." and bob.text == f"I sent it to {BOB}."  # each gets their own
    assert not any(ALICE in t or BOB in t for t in _cached_texts(gw))


def test_a_message_name_is_masked(make_gateway, driver):
    make_gateway().complete([{"role": "user", "name": "kim.minsu@example.com", "content": "hello"}])
    assert driver.calls[-1].messages[0]["name"] == "[EMAIL_1]"


def test_tool_calls_are_part_of_the_cache_key(make_gateway, driver):
    driver.default = lambda call: "weather for " + call.messages[1]["tool_calls"][0]["function"]["arguments"]
    gw = make_gateway()

    def asked(city: str) -> list[dict]:
        turn = _tool_conversation("x")
        turn[1]["tool_calls"][0]["function"].update(name="get_weather", arguments=json.dumps({"city": city}))
        return turn

    assert gw.complete(asked("Seoul")).cache.value == "miss"
    busan = gw.complete(asked("Busan"))
    assert busan.cache.value == "miss" and "Busan" in busan.text


def test_content_parts_given_as_a_tuple_are_masked(make_gateway, driver):
    pii = "Email kim.minsu@example.com, phone 010-1234-5678"
    out = make_gateway().complete([{"role": "user", "content": ({"type": "text", "text": pii},)}], tenant="acme")
    assert driver.calls[-1].messages[-1]["content"] == [{"type": "text", "text": "Email [EMAIL_1], phone [PHONE_1]"}]
    assert "pii:pii.email" in out.guard_findings


def test_an_assistant_refusal_part_is_masked_like_text(make_gateway, driver):
    # OpenAI's {"type": "refusal", "refusal": …} part of an earlier assistant turn went back unmasked
    messages = [{"role": "assistant", "content": [{"type": "refusal", "refusal": "I will not e-mail kim.minsu@example.com"}]},
                {"role": "user", "content": "why not?"}]
    out = make_gateway().complete(messages, tenant="acme")
    assert driver.calls[-1].messages[0]["content"] == [{"type": "refusal", "refusal": "I will not e-mail [EMAIL_1]"}]
    assert "pii:pii.email" in out.guard_findings


def test_the_askers_own_values_are_cached_as_placeholders_and_public_details_as_written(make_gateway, driver):
    # the model writes the asker's address although it was sent a placeholder (as through a path the
    # guard missed), and the help desk's public address
    driver.default = "Write to help@shop.example; we answer at kim.minsu@example.com"
    gw = make_gateway(unmask_answers=True)
    first = gw.complete("I am kim.minsu@example.com, who do I write to?", tenant="shop")
    assert _cached_texts(gw) == ["Write to help@shop.example; we answer at [EMAIL_1]"]
    again = gw.complete("I am lee.jiwoo@example.org, who do I write to?", tenant="shop")
    assert first.text == "Write to help@shop.example; we answer at kim.minsu@example.com"
    assert again.cache.value == "exact_hit" and again.text == "Write to help@shop.example; we answer at lee.jiwoo@example.org"


def test_an_acceptance_check_sees_the_masked_request_and_its_error_text_is_not_kept(make_gateway, driver):
    seen = []

    def grader(answer, request):
        seen.append(request.text)
        raise ValueError(f"cannot grade {request.text!r}")

    gw = make_gateway(router=CascadeRouter(("gpt-4o-mini", "gpt-4o"), accept=grader), fallbacks={})
    out = gw.complete("My card 4111 1111 1111 1111 was charged twice")
    assert seen and all("4111" not in t for t in seen)
    assert all("4111" not in (a.error or "") for a in out.attempts)


def test_provider_errors_lose_the_deployments_key_and_anything_shaped_like_one():
    params = {"api_key": "abcdef0123456789XYZW", "api_base": "http://127.0.0.1:1/v1"}
    text = "401: Incorrect API key provided: abcdef0123456789XYZW; also sk-proj-AAAAbbbbCCCC1234 and Bearer tok.en.123456"
    scrubbed = redact_secrets(text, params)
    assert "abcdef0123456789XYZW" not in scrubbed and "sk-proj" not in scrubbed and "tok.en" not in scrubbed
    assert "http://127.0.0.1:1/v1" in redact_secrets("cannot reach http://127.0.0.1:1/v1", params)  # not a secret


def test_credentials_in_extra_headers_are_redacted_from_what_a_provider_echoes():
    token = "proxy-key-4f9a8b7c6d5e4f3a"
    for headers, echoed in (({"x-api-key": token}, f"Invalid x-api-key: {token}"),
                            ({"Authorization": f"Token {token}"}, f"bad header Token {token}; token {token}"),
                            ({"nested": {"proxy_auth_token": token}}, f"token {token} refused")):
        params = {"api_key": "unused", "extra_headers": headers}
        scrubbed = redact_secrets(echoed, params)
        assert token not in scrubbed and "***" in scrubbed, scrubbed
    assert redact_secrets("model gpt-4o", {"extra_headers": {"x-trace-id": "gpt-4o"}}) == "model gpt-4o"


def test_a_disconnected_stream_records_no_deployment(make_gateway, driver):
    driver.default = "a long answer " * 40
    key = "sk-SECRETKEY-abcdef0123456789XYZW"
    gw = make_gateway(deployments=[Deployment("gpt-4o", "gpt-4o", params={"api_key": key})],
                      router=FixedRouter("gpt-4o"), fallbacks={})
    stream = gw.stream("hello there")
    for _ in stream:
        break
    assert stream.outcome.error.code == "client_disconnected"
    assert key.encode() not in pickle.dumps(stream.outcome) and key.encode() not in pickle.dumps(gw.ledger.records)


@pytest.mark.parametrize("url, shown", [
    ("redis://127.0.0.1:9/0?password=S3CRETPW", "redis://127.0.0.1:9/0?password=***"),
    ("unix:///tmp/r.sock?db=0&password=S3CRET", "unix:///tmp/r.sock?db=0&password=***"),
    ("redis://u:pw@h:1/0", "redis://u:***@h:1/0"),
    ("redis://h/0?db=1", "redis://h/0?db=1"),
    # a generated password with an unencoded '/', '?' or '#': urlsplit would end the user-info there
    ("redis://:ab/cd+S3CRET@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://u:ab?cdS3CRET@h:6379/0", "redis://u:***@h:6379/0"),
    ("redis://:ab#cdS3CRET@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://:S3CRET@h:notaport/0", "redis://:***@h:notaport/0"),  # urlsplit raised on the port
])
def test_redis_urls_lose_their_passwords(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", ["redis://:4817/qqS3CRET@127.0.0.1:6379/0", "redis://:qq/wwS3CRET@127.0.0.1:6379/0",
                                 "redis://:qq#wwS3CRET@127.0.0.1:6379/0", "redis://:qqS3CRET@127.0.0.1:notaport/0",
                                 "redis://:qq[wwS3CRET@127.0.0.1:6379/0"])
def test_a_redis_url_that_does_not_parse_says_so_without_any_part_of_its_password(url):
    """redis-py would dial port 4817 (the password's first part) and name it in its error, or
    quote the part it could not parse; the error instead says to percent-encode the password."""
    pytest.importorskip("redis")
    from llmlab.backends import from_url

    with pytest.raises(ConfigError) as info:
        from_url(url, on_unavailable="degrade", connect_timeout_s=0.2)
    text = "".join(traceback.format_exception(info.value))  # the chained causes too
    assert "percent-encode" in str(info.value)
    assert not any(part in text for part in ("S3CRET", "4817", "qq", "ww"))


def test_validation_messages_do_not_repeat_message_text_or_credentials(make_gateway):
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete([{"role": "user", "content": [{"text": "I am kim.minsu@example.com"}]}])
    assert "kim.minsu" not in str(info.value) and "messages[0].content=<list of length 1>" in str(info.value)
    from llmlab import Gateway

    with pytest.raises(ConfigError) as config:
        Gateway([{"name": "m", "model": "gpt-4o-mini", "api_key": "sk-SECRETKEY-abc"}])
    assert "SECRETKEY" not in str(config.value)


@pytest.mark.parametrize("bad", ["req-1\nINFO llmlab.gateway forged", "with space", "", "x" * 129, 42])
def test_a_request_id_cannot_forge_log_lines(make_gateway, bad):
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete("hi", request_id=bad)
    assert info.value.field == "request_id"


def test_guards_without_a_masker_warn_once(make_gateway, caplog, monkeypatch):
    import llmlab.gateway

    monkeypatch.setattr(llmlab.gateway, "_warned_unmasked", False)
    with caplog.at_level(logging.WARNING, logger="llmlab.gateway"):
        make_gateway(input_guards=[InjectionGuard()])
        make_gateway(input_guards=[InjectionGuard()])
        make_gateway(input_guards=())  # the explicit opt-out is silent
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "no PII masker" in caplog.records[0].message
    # the way to keep an injection guard without masking is named: input_guards=() drops it too
    assert "unmasked_ok=True" in caplog.records[0].message


def test_a_deliberate_list_without_a_masker_is_not_warned_about(make_gateway, caplog, monkeypatch):
    """A scenario's ``guardrails.pii = false`` with an injection guard printed the warning worded
    for the Python API ('add PIIMaskingGuard() first, or pass input_guards=()'), which a scenario
    author cannot act on: pii = false is the scenario's own opt-out.  unmasked_ok says so."""
    import llmlab.gateway
    from llmlab.sim import simulate

    monkeypatch.setattr(llmlab.gateway, "_warned_unmasked", False)
    with caplog.at_level(logging.WARNING):
        make_gateway(input_guards=[InjectionGuard()], unmasked_ok=True)
        simulate("b2b-saas", requests=20, seed=0, baseline=False, replications=1, parallel=False,
                 overrides={"gateway.guardrails.pii": False, "gateway.guardrails.injection": "flag"})
    assert not [r for r in caplog.records if "PII masker" in r.message]
    make_gateway(input_guards=[InjectionGuard()])  # an accidental list is still warned about
    assert [r for r in caplog.records if "no PII masker" in r.message]


@pytest.mark.parametrize("text, masked", [
    ("900101 1234568", "[RRN_1]"),          # a space-separated RRN with a valid checksum
    ("900101 1234567", "900101 1234567"),  # the same shape without one: an order number, say
    ("(02) 1234-5678", "[PHONE_1]"), ("02)1234-5678", "[PHONE_1]"), ("(031) 123-4567", "[PHONE_1]"),
    ("(010) 1234-5678", "[PHONE_1]"),
])
def test_korean_forms_written_with_spaces_and_parentheses(text, masked):
    assert PIIMasker().mask(f"번호는 {text} 입니다").text == f"번호는 {masked} 입니다"


def test_answer_changing_params_are_in_the_prompt_params_key(make_gateway, driver):
    driver.default = lambda call: f"limit {call.params['max_tokens']}, effort {call.params.get('reasoning_effort')}"
    gw = make_gateway()
    assert gw.complete("Summarise our refund policy", max_completion_tokens=5).text.startswith("limit 5")
    assert gw.complete("Summarise our refund policy").cache.value == "miss"
    assert gw.complete("Prove it", reasoning_effort="low").cache.value == "miss"
    assert gw.complete("Prove it", reasoning_effort="high").cache.value == "miss"


def test_a_log_handler_sees_no_key(make_gateway, driver):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("llmlab").addHandler(handler)
    try:
        key = "sk-SECRETKEY-abcdef0123456789XYZW"
        driver.default = lambda call: (_ for _ in ()).throw(RuntimeError(f"boom with {key}"))
        gw = make_gateway(deployments=[Deployment("gpt-4o", "gpt-4o", params={"api_key": key})],
                          router=FixedRouter("gpt-4o"), fallbacks={})
        out = gw.complete("hi")
    finally:
        logging.getLogger("llmlab").removeHandler(handler)
    assert key not in stream.getvalue() and all(key not in (a.error or "") for a in out.attempts)


def test_a_legacy_function_call_is_masked_and_counted(make_gateway, driver):
    from llmlab.tokens import max_message_tokens

    turn = {"role": "assistant", "content": None,
            "function_call": {"name": "send_invoice", "arguments": json.dumps({"email": ALICE, "note": "x" * 3000})}}
    asked = [{"role": "user", "content": "send it"}, turn, {"role": "user", "content": "done?"}]
    make_gateway().complete(asked)
    assert ALICE not in json.dumps(driver.calls[-1].messages) and "[EMAIL_1]" in json.dumps(driver.calls[-1].messages)
    assert max_message_tokens(asked) > 3000


@pytest.mark.parametrize("turn, field", [
    ({"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                            "function": {"name": "f", "arguments": {"email": ALICE}}}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": {"email": ALICE}}},
     "messages[1].function_call.arguments"),
])
def test_tool_call_arguments_must_be_the_json_string_the_model_wrote(make_gateway, driver, turn, field):
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete([{"role": "user", "content": "send it"}, turn, {"role": "user", "content": "ok?"}])
    assert info.value.field == field and ALICE not in str(info.value) and driver.calls == []


def test_credentials_in_values_are_hidden_and_cost_fields_are_not():
    from llmlab.errors import shown

    assert "SECRET" not in str(InvalidRequest("params.api_key", "sk-live-SECRET123456", "x"))
    assert "SECRET" not in str(InvalidRequest("params.extra_body", {"headers": {"Authorization": "Bearer SECRET-1234"}}, "x"))
    assert "SECRETPASS" not in str(InvalidRequest("params.api_base", "https://user:SECRETPASS@proxy.example/v1", "x"))
    for name in ("aws_web_identity_token", "aws_session_token", "aws_secret_access_key", "azure_ad_token"):
        assert "SECRET" not in str(InvalidRequest(f"params.{name}", "SECRET-VALUE-123", "x")), name
    assert shown("prices['m']", {"input_cost_per_token": -3}) == {"input_cost_per_token": -3}  # still says what is wrong
    assert shown("params.max_tokens", 5) == 5
    assert redact_url("redis://h:6379/0?pass%77ord=SECRET") == "redis://h:6379/0?pass%77ord=***"


def test_an_internal_error_is_logged_outside_the_lock(make_gateway, driver, caplog):
    held = []

    class Broken:
        name = "broken"

        def check_input(self, messages):
            raise RuntimeError("boom")

    gw = make_gateway(input_guards=[Broken()])

    class Probe(logging.Handler):
        def emit(self, record):
            held.append(gw.pipeline.lock.held())

    probe = Probe(logging.ERROR)
    logging.getLogger("llmlab").addHandler(probe)
    try:
        with gw.pipeline.lock:  # as a live driver steps it: the log line must be written outside
            out = gw.complete("hi")
    finally:
        logging.getLogger("llmlab").removeHandler(probe)
    assert out.error.code == "gateway_error" and held == [False]


def test_a_content_part_whose_type_is_not_text_is_refused_and_the_masker_passes_it_over(make_gateway, driver):
    # a list as an assistant part's type reached lookups among part kinds (the prompt bound's, the
    # masker's) and raised there: an internal error for the request
    messages = [{"role": "assistant", "content": [{"type": ["text"], "text": "x"}]},
                {"role": "user", "content": "call me on 010-1234-5678"}]
    with pytest.raises(InvalidRequest) as info:
        make_gateway().complete(messages, tenant="acme")
    assert info.value.field == "messages[0].content[0].type" and driver.calls == []
    verdict = PIIMaskingGuard().check_input(messages)  # the guard on its own, outside a gateway
    assert verdict.messages[-1]["content"] == "call me on [PHONE_1]"
