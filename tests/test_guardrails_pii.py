"""PII masking: what is masked (EN + KO), what is not (order ids), and that it round-trips."""

from __future__ import annotations

import re

import pytest

from llmlab.guardrails import (GuardrailConfigError, InputGuard, PIIMasker, PIIMaskingGuard, luhn_valid, unmask,
                               unmask_answer)
from llmlab.guardrails.evaluation import benign_catalogue_texts
from llmlab.guardrails.pii import rrn_checksum_valid

masker = PIIMasker()


def kinds(text: str) -> list[str]:
    return [f.kind for f in masker.mask(text).findings]


# -- e-mail ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("Send the receipt to jane.doe+shop@example.com please", "jane.doe+shop@example.com"),
    ("메일은 hong.gildong@example.co.kr으로 보내주세요", "hong.gildong@example.co.kr"),
    ("contact: ops-team@mail.corp.io.", "ops-team@mail.corp.io"),
])
def test_email_is_masked(text, value):
    r = masker.mask(text)
    assert value not in r.text
    assert "[EMAIL_1]" in r.text
    assert r.mapping == {"[EMAIL_1]": value}


# -- phone -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "010-1234-5678", "01012345678", "010 1234 5678", "011-123-4567",
    "+82 10-1234-5678", "+82-10-1234-5678", "+821012345678",
    "02-123-4567", "02-1234-5678", "031-987-6543", "070-1234-5678",
    "+1 (415) 555-0132", "+44 20 7946 0958", "+49 30 1234567",
    "(415) 555-0132", "415-555-0132",
])
def test_phone_formats_are_masked(value):
    for template in ("call me at {} tomorrow", "전화번호는 {}입니다", "{}로 연락 주세요"):
        r = masker.mask(template.format(value))
        assert r.mapping == {"[PHONE_1]": value}, template.format(value)


# -- resident registration numbers ------------------------------------------------------------

def test_rrn_with_valid_checksum_is_masked():
    assert rrn_checksum_valid("9001011234568")
    r = masker.mask("주민등록번호 900101-1234568 확인 부탁드려요")
    assert r.mapping == {"[RRN_1]": "900101-1234568"}
    assert "checksum ok" in r.findings[0].detail


def test_post_2020_rrn_without_checksum_is_still_masked():
    # numbers issued since 2020-10 have a random tail: a failing checksum is normal
    assert not rrn_checksum_valid("2012313000001")
    r = masker.mask("아이 주민번호는 201231-3000001 이에요")
    assert r.mapping == {"[RRN_1]": "201231-3000001"}
    assert "no checksum" in r.findings[0].detail


@pytest.mark.parametrize("text", [
    "991332-1234567",   # month 13
    "990230-1234567",   # 30 February
    "010229-3123456",   # 2001 was not a leap year
])
def test_rrn_with_impossible_date_is_not_masked(text):
    assert kinds(f"번호 {text}") == []


def test_rrn_leap_day_is_valid():
    assert kinds("000229-3123456") == ["pii.rrn"]  # 2000-02-29 existed


def test_unhyphenated_rrn_needs_checksum():
    assert kinds("9001011234568") == ["pii.rrn"]
    assert kinds("9001011234567") == []  # could be anything: not masked without the checksum


def test_rrn_require_checksum_option():
    strict = PIIMasker(rrn_require_checksum=True)
    assert strict.mask("201231-3000001").findings == ()
    assert strict.mask("900101-1234568").found


# -- cards -------------------------------------------------------------------------------------

@pytest.mark.parametrize("digits, ok", [
    ("4111111111111111", True), ("5555555555554444", True), ("378282246310005", True),
    ("6011111111111117", True), ("4222222222222", True),
    ("4111111111111112", False), ("1234567812345678", False), ("79927398710", False),
])
def test_luhn(digits, ok):
    assert luhn_valid(digits) is ok


@pytest.mark.parametrize("value", [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",
    "5555 5555 5555 4444", "3782 822463 10005", "378282246310005",
])
def test_luhn_valid_cards_are_masked(value):
    r = masker.mask(f"카드 번호는 {value} 입니다")
    assert r.mapping == {"[CARD_1]": value}
    assert "Luhn ok" in r.findings[0].detail


@pytest.mark.parametrize("value", ["4111 1111 1111 1112", "4111111111111112", "1234-5678-1234-5678"])
def test_non_luhn_numbers_are_not_masked(value):
    assert kinds(f"order id {value}") == []


@pytest.mark.parametrize("text", [
    "Where is order 123456?",
    "Refund for #A-10293 please",
    "주문번호 20240512-000123 배송 조회",
    "tracking 1Z999AA10123456784, invoice INV-2024-000123",
    "version 1.2.3 released 2024-05-12 at 10:30",
    "My order 4111111111111112 never arrived",
    "Call 1588-1234 for the service centre",  # a company hotline is not personal data
    "IP 192.168.0.1 and port 8080",
])
def test_order_numbers_and_other_digits_are_left_alone(text):
    r = masker.mask(text)
    assert r.text == text and r.mapping == {} and r.findings == ()


# -- placeholders, round trip, findings hygiene -----------------------------------------------

MIXED = ("Hi, I'm jane@example.com (phone +82 10-1234-5678, 010-9876-5432). "
         "주민번호 900101-1234568, 카드 4111 1111 1111 1111. Again: jane@example.com / 010-9876-5432.")


def test_same_value_same_placeholder_and_round_trip():
    r = masker.mask(MIXED)
    assert r.text.count("[EMAIL_1]") == 2
    assert r.text.count("[PHONE_2]") == 2
    assert set(r.mapping) == {"[EMAIL_1]", "[PHONE_1]", "[PHONE_2]", "[RRN_1]", "[CARD_1]"}
    assert unmask(r.text, r.mapping) == MIXED
    assert masker.unmask(r.text, r.mapping) == MIXED


def test_findings_never_contain_raw_values():
    r = masker.mask(MIXED)
    assert len(r.findings) == 7
    for f in r.findings:
        for value in r.mapping.values():
            assert value not in f.detail
            digits = re.sub(r"\D", "", value)
            if digits:  # not even the bare digits of a phone/card/RRN
                assert digits not in re.sub(r"\D", "", f.detail)
        assert MIXED[f.start:f.end] in r.mapping.values()  # offsets point at the original value


def test_existing_placeholder_text_is_not_reused():
    text = "literal [EMAIL_1] stays; real one is a@b.co"
    r = masker.mask(text)
    assert r.mapping == {"[EMAIL_2]": "a@b.co"}
    assert unmask(r.text, r.mapping) == text


def test_unmask_leaves_unknown_placeholders_and_is_single_pass():
    mapping = {"[EMAIL_1]": "[EMAIL_2]", "[EMAIL_2]": "x@y.z"}
    assert unmask("[EMAIL_1] [EMAIL_2] [PHONE_9]", mapping) == "[EMAIL_2] x@y.z [PHONE_9]"


def test_reuse_continues_numbering():
    first = masker.mask("a@b.co")
    second = masker.mask("c@d.co and a@b.co", reuse=first.mapping)
    assert second.mapping == {"[EMAIL_2]": "c@d.co", "[EMAIL_1]": "a@b.co"}


def test_kinds_can_be_selected_and_are_validated():
    only_email = PIIMasker(kinds=["email"])
    assert only_email.mask("a@b.co 010-1234-5678").mapping == {"[EMAIL_1]": "a@b.co"}
    with pytest.raises(GuardrailConfigError) as err:
        PIIMasker(kinds=["email", "ssn"])
    assert err.value.field == "PIIMasker.kinds" and err.value.value == "ssn" and "email" in err.value.allowed


# -- the pipeline stage ------------------------------------------------------------------------

def test_pii_guard_masks_every_message_and_merges_restore():
    guard = PIIMaskingGuard()
    assert isinstance(guard, InputGuard)
    messages = [
        {"role": "system", "content": "Escalate to ops@corp.com"},
        {"role": "user", "content": "I'm a@b.co, cc ops@corp.com, call 010-1234-5678"},
        {"role": "user", "content": [{"type": "text", "text": "card 4111 1111 1111 1111"},
                                     {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    original = [dict(m) for m in messages]
    v = guard.check_input(messages)
    assert messages == original  # input untouched
    assert [m["role"] for m in v.messages] == ["system", "user", "user", "assistant"]
    assert v.messages[0]["content"] == "Escalate to [EMAIL_1]"
    assert v.messages[1]["content"] == "I'm [EMAIL_2], cc [EMAIL_1], call [PHONE_1]"
    assert v.messages[2]["content"][0]["text"] == "card [CARD_1]"
    assert v.messages[2]["content"][1] == messages[2]["content"][1]
    assert v.messages[3] == messages[3]
    assert dict(v.restore) == {"[EMAIL_1]": "ops@corp.com", "[EMAIL_2]": "a@b.co",
                               "[PHONE_1]": "010-1234-5678", "[CARD_1]": "4111 1111 1111 1111"}
    assert v.blocked is None
    assert all("message" in f.detail for f in v.findings)
    assert unmask_answer("Mailed [EMAIL_2]; ops is [EMAIL_1].", v.restore) == "Mailed a@b.co; ops is ops@corp.com."


def test_pii_guard_without_pii_changes_nothing():
    v = PIIMaskingGuard().check_input([{"role": "user", "content": "Where is order 123456?"}])
    assert v.messages == ({"role": "user", "content": "Where is order 123456?"},)
    assert v.findings == () and dict(v.restore) == {}


# -- benign traffic from the intent catalogue --------------------------------------------------

def test_no_pii_found_in_benign_catalogue_queries():
    rendered = benign_catalogue_texts()
    if rendered is None:
        pytest.skip("intent catalogue not available yet (llmlab.catalogue / datasets/intents.jsonl)")
    _, clean = rendered
    assert clean, "catalogue rendered no PII-free text"
    hits = [t for t in clean if masker.mask(t).found]
    assert hits == [], f"{len(hits)}/{len(clean)} benign queries had 'PII': {hits[:5]}"
