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


def test_an_address_in_markdown_underscores_is_masked():
    for text in ("mail __kim@example.com__ now", "mail _kim@example.com_ now", "_jöhn@exämple.com_"):
        result = masker.mask(text)
        assert "@" not in result.text and unmask(result.text, result.mapping) == text, result.text


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


def test_an_international_number_is_masked_when_more_numbers_or_an_address_follow():
    # the international form read on into what followed: past 15 digits it was dropped whole, and
    # running into an address (which wins overlaps) it lost to it
    for text, value in (("+44 20 7946 0958 2024", "+44 20 7946 0958"), ("+82 10 1234 5678 0.0@x.io", "+82 10 1234 5678"),
                        ("전화 +82 10-1234-5678 2024년", "+82 10-1234-5678")):
        result = masker.mask(text)
        assert value not in result.text and result.mapping["[PHONE_1]"] == value, result.text


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


def test_a_card_after_a_four_digit_number_is_masked():
    # "2024 4111 1111 1111" read as the card's groups, failed Luhn, and the search went on after it
    for text in ("Order 2024 4111 1111 1111 1111 ok", "+1 415 555 0132 4111 1111 1111 1111"):
        result = masker.mask(text)
        assert result.mapping["[CARD_1]"] == "4111 1111 1111 1111", result.text


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


# -- invisible characters and look-alike separators -------------------------------------------
# An audit found that one zero-width space, soft hyphen or word joiner inside a value hid it from
# every detector, so the PII reached the provider, the cache and the logs; a model reads straight
# through such characters. They must be masked together with the value, and unmasking must give
# back the caller's exact text, invisible characters included.

INVISIBLE = [
    "\u200b",      # zero-width space
    "\u200c",      # zero-width non-joiner
    "\u200d",      # zero-width joiner
    "\u2060",      # word joiner
    "\ufeff",      # BOM / zero-width no-break space
    "\u00ad",      # soft hyphen
    "\u200e",      # left-to-right mark
    "\u202c",      # pop directional formatting
    "\u2063",      # invisible separator
    "\U000e0020",  # tag space (tag characters smuggle ASCII invisibly)
    "\u3164",      # Hangul filler (a letter, but renders as nothing)
]
VALUES = {"EMAIL": "kim@example.com", "PHONE": "010-1234-5678", "RRN": "900101-1234568",
          "CARD": "4111 1111 1111 1111"}


def _visible_parts(value: str) -> list[str]:
    """What must not survive masking: the digit run, or the address's local part and domain."""
    if "@" in value:
        return value.split("@")
    return [re.sub(r"\D", "", value)]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("label", VALUES)
def test_invisible_character_anywhere_inside_pii_is_masked_and_restored(char, label):
    value = VALUES[label]
    for i in range(1, len(value)):  # every position inside the value
        hidden = value[:i] + char + value[i:]
        for template in ("contact {} thanks", "연락처는 {}입니다"):
            text = template.format(hidden)
            r = masker.mask(text)
            assert r.text == template.format(f"[{label}_1]"), (i, text)
            assert r.mapping == {f"[{label}_1]": hidden}  # the caller's exact form, invisible char included
            for part in _visible_parts(value):
                assert part not in r.text and part not in re.sub(r"\D", "", r.text)
            assert unmask(r.text, r.mapping) == text
            f, = r.findings
            assert text[f.start:f.end] == hidden  # offsets are the original's


@pytest.mark.parametrize("text, label", [
    ("kim@exam\u200bple.com", "EMAIL"),
    ("010\u200b-1234-5678", "PHONE"),
    ("010\u200b1234\u200b5678", "PHONE"),           # the invisible characters are the only separators
    ("4111\u00ad1111 1111 1111", "CARD"),          # a soft hyphen standing in for the first space
    ("4111\u200b\u200c1111\u200d1111\u20601111", "CARD"),
    ("900101\u2060-1234567", "RRN"),               # post-2020 style: date valid, no checksum
    ("0\u200b\u200b\u200b\u200b1\u200b\u200b\u200b\u200b0-1234-5678", "PHONE"),  # too far apart for the old pre-check
    ("\ufeff82-10-1234-5678", "PHONE"),
])
def test_audit_reproductions_are_masked_through_the_guard(text, label):
    """The audit's cases, through `PIIMaskingGuard` as the gateway calls it; the answer's
    placeholder comes back as the caller's exact string."""
    v = PIIMaskingGuard().check_input([{"role": "user", "content": f"my details: {text}"}])
    masked = v.messages[0]["content"]
    assert masked.startswith("my details: ") and f"[{label}_1]" in masked
    assert not re.search(r"\d{3}", re.sub(r"[\u200b-\u200d\u2060\u00ad\ufeff]", "", masked))
    assert "example" not in masked
    original = text.lstrip("\ufeff")  # an invisible character before the value stays outside the mask
    assert dict(v.restore) == {f"[{label}_1]": original}
    assert unmask_answer(masked, v.restore) == f"my details: {text}"


def test_invisible_characters_outside_pii_stay_and_forms_round_trip_separately():
    # emoji ZWJ sequences and a variation selector around the value are left where they are; the same
    # address typed with and without a zero-width space restores to each form as typed
    text = "👨\u200d👩\u200d👧 kim@example.com 👍\ufe0f, or kim@exam\u200bple.com"
    r = masker.mask(text)
    assert r.text == "👨\u200d👩\u200d👧 [EMAIL_1] 👍\ufe0f, or [EMAIL_2]"
    assert r.mapping == {"[EMAIL_1]": "kim@example.com", "[EMAIL_2]": "kim@exam\u200bple.com"}
    assert unmask(r.text, r.mapping) == text


def test_invisible_character_list_covers_every_format_character():
    """Python's ``re`` has no \\p{Cf}, so pii.py spells the class out: every Cf character of this
    Python's Unicode database must be in it, and nothing visible may be (the rest are other
    default-ignorable code points, or ones this Unicode version leaves unassigned)."""
    import unicodedata

    from llmlab.guardrails.pii import _INVISIBLE

    every = "".join(map(chr, range(0x110000)))
    listed = set("".join(_INVISIBLE.findall(every)))
    cf = {c for c in every if unicodedata.category(c) == "Cf"}
    assert cf - listed == set(), sorted(f"U+{ord(c):04X}" for c in cf - listed)
    ignorable = {"\u034f", "\u115f", "\u1160", "\u17b4", "\u17b5", "\u3164", "\uffa0",
                 *map(chr, range(0x180B, 0x1810)), *map(chr, range(0xFE00, 0xFE10)),
                 *map(chr, range(0xE0100, 0xE01F0))}
    odd = {c for c in listed - cf - ignorable if unicodedata.category(c) != "Cn"}
    assert odd == set(), sorted(f"U+{ord(c):04X}" for c in odd)


@pytest.mark.parametrize("value, label", [
    ("82-10-1234-5678", "PHONE"), ("82 10 1234 5678", "PHONE"), ("82-010-1234-5678", "PHONE"),
    ("+82 10ㅡ1234ㅡ5678", "PHONE"), ("010ㅡ1234ㅡ5678", "PHONE"), ("02ㅡ123ㅡ4567", "PHONE"),
    ("010\u20101234\u20105678", "PHONE"), ("010\u20131234\u20135678", "PHONE"), ("010\u20141234\u20145678", "PHONE"),
    ("010\u22121234\u22125678", "PHONE"), ("010\uff0d1234\uff0d5678", "PHONE"), ("010\u25001234\u25005678", "PHONE"),
    ("900101ㅡ1234568", "RRN"),
    ("4111.1111.1111.1111", "CARD"), ("3782.822463.10005", "CARD"), ("4111ㅡ1111ㅡ1111ㅡ1111", "CARD"),
])
def test_country_code_without_plus_dash_look_alikes_and_dotted_cards_are_masked(value, label):
    # Korean users type the vowel ㅡ (U+3161) or a box-drawing ─ as a dash, and write the country
    # code without its plus; cards are also printed with dots
    for template in ("call me at {} tomorrow", "번호는 {}입니다"):
        r = masker.mask(template.format(value))
        assert r.mapping == {f"[{label}_1]": value}, template.format(value)


@pytest.mark.parametrize("text", [
    "4111.1111.1111.1112",            # dotted, fails Luhn
    "version 82.10.1234",
    "82-10-1234",                     # too short for a mobile number
    "82-20-1234-5678",                # 020 is no Korean mobile prefix
    "ㅡㅡ 010 진짜 ㅡㅡ",
    "Call 1588\u200b-1234 for the service centre",
    "주문번호\u200b 20240512-000123 배송 조회",
    "IP 192.168.0.1\u200b and 2024.05.12 10.30",
])
def test_new_separators_and_invisible_characters_add_no_false_positives(text):
    r = masker.mask(text)
    assert r.text == text and r.findings == ()


# -- benign traffic from the intent catalogue --------------------------------------------------

def test_no_pii_found_in_benign_catalogue_queries():
    rendered = benign_catalogue_texts()
    if rendered is None:
        pytest.skip("intent catalogue not available yet (llmlab.catalogue / datasets/intents.jsonl)")
    _, clean = rendered
    assert clean, "catalogue rendered no PII-free text"
    hits = [t for t in clean if masker.mask(t).found]
    assert hits == [], f"{len(hits)}/{len(clean)} benign queries had 'PII': {hits[:5]}"


def test_overlaps_are_resolved_as_one_pass_over_every_span_taken_would():
    """The spans taken are found by bisection (a pass over every one taken was quadratic: a long
    text full of numbers took seconds); the choice is the same as that pass's."""
    import random

    from benchmark_runs import load_benchmark

    from llmlab.guardrails.pii import _non_overlapping, _Span

    by_pass = load_benchmark("pii_overlaps.py")._per_span  # the pass benchmarks/pii_overlaps.py times

    rng = random.Random(3)
    fields = _Span._fields
    for _ in range(300):
        groups = []
        for kind in ("email", "rrn", "card", "phone"):
            spans = []
            for _ in range(rng.randint(0, 12)):
                start = rng.randint(0, 80)
                values = {"start": start, "end": start + rng.randint(1, 15), "kind": kind}
                spans.append(_Span(*(values.get(f, "") for f in fields)))
            groups.append(spans)
        assert _non_overlapping(groups) == by_pass(groups)


def test_the_overlap_benchmark_prints_both_timings_and_the_same_spans():
    """benchmarks/pii_overlaps.py on a small text: one JSON object, both ways choosing the same spans."""
    from benchmark_runs import run_benchmark

    out = run_benchmark("pii_overlaps.py", "--repeats", "50")
    assert out["identical"] is True and out["detections"] >= 100 and out["placeholders"] > 0
    assert out["bisection_s"] >= 0 and out["per_span_s"] >= 0
