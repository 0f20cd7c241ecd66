"""PII is masked before it is sent, cached or logged — by default."""
import logging

from llmlab import CacheOutcome


def test_default_gateway_masks_pii_before_provider_and_cache(make_gateway, driver, caplog):
    gw = make_gateway()
    with caplog.at_level(logging.INFO, logger="llmlab"):
        out = gw.complete("My email is kim@example.com and my phone 010-1234-5678; reset my password", tenant="t")
    sent = driver.calls[-1].messages[-1]["content"]
    assert "kim@example.com" not in sent and "010-1234-5678" not in sent and "[EMAIL_1]" in sent
    assert out.ok and "pii:" in " ".join(out.guard_findings)
    stored = [entry.value.text for entry in gw.exact_cache._entries.values()]
    assert stored and all("kim@example.com" not in t for t in stored)
    assert "kim@example.com" not in caplog.text


def test_placeholders_in_answers_are_unmasked_for_the_caller_only(make_gateway, driver):
    driver.default = lambda call: "We sent a reset link to [EMAIL_1]."
    gw = make_gateway()
    a = gw.complete("Reset the password for lee@example.com", tenant="t")
    assert a.text == "We sent a reset link to lee@example.com."
    b = gw.complete("Reset the password for park@example.org", tenant="t")  # same masked prompt: a cache hit
    assert b.cache is CacheOutcome.EXACT_HIT and b.text == "We sent a reset link to park@example.org."


def test_opting_out_of_masking(make_gateway, driver):
    gw = make_gateway(input_guards=())
    gw.complete("my email is kim@example.com")
    assert "kim@example.com" in driver.calls[-1].messages[-1]["content"]


def chunks_of(response) -> list[str]:
    return [c for c in response if isinstance(c, str)]


def test_a_streamed_answer_shows_the_callers_own_values_as_the_outcome_does(make_gateway, driver):
    """With ``unmask_answers`` (the default) ``complete()`` and ``outcome.text`` gave the caller's
    e-mail back while the chunks of ``stream()`` carried ``[EMAIL_1]``: what a chat UI showed was
    not the answer.  The scripted driver cuts the answer into four chunks, so the placeholder is
    split across two of them."""
    driver.default = lambda call: "Link sent to [EMAIL_1]."  # chunks: "Link s", "ent to", " [EMAI", "L_1]."
    response = make_gateway().stream("Reset the password for lee@example.com", tenant="t", cache=False)
    chunks = chunks_of(response)
    assert len(chunks) >= 3 and not any("[EMA" in c or "L_1]" in c for c in chunks), chunks
    assert "".join(chunks) == response.outcome.text == "Link sent to lee@example.com."
    kept = make_gateway(unmask_answers=False).stream("Reset the password for lee@example.com", tenant="t",
                                                     cache=False)
    assert "".join(chunks_of(kept)) == kept.outcome.text == "Link sent to [EMAIL_1]."


def test_a_streamed_calls_repr_does_not_show_the_callers_values(make_gateway, driver):
    """A streamed answer's Call carries the placeholders' values to put back into the chunks;
    its messages hold only placeholders, and its repr (what a driver or a debug log prints of the
    effect it performs) must not show the values either."""
    driver.default = lambda call: "Link sent to [EMAIL_1]."
    response = make_gateway().stream("Reset the password for lee@example.com", tenant="t", cache=False)
    assert "".join(chunks_of(response)) == "Link sent to lee@example.com."
    call = driver.calls[-1]
    assert call.restore == {"[EMAIL_1]": "lee@example.com"}
    assert "lee@example.com" not in repr(call) and "lee@example.com" not in str(call.messages)
