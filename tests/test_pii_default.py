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
