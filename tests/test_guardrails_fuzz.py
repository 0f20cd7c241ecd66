"""Property-based fuzz of the PII guardrail: every documented format, in any surrounding text and in
every place of a request, never reaches the provider, the caches, the logs or the ledger; masking
round-trips; one asker's values never come back in another's answer.

Derandomised and bounded (a few seconds in all): a failure is the same failure on every run.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmlab import Deployment, FixedRouter, Gateway
from llmlab.cache.embedders import HashedNgramEmbedder
from llmlab.cache.semantic import SemanticCache
from llmlab.guardrails import OutputFilterGuard, PIIMasker, unmask
from llmlab.guardrails.pii import luhn_valid
from llmlab.ledger import outcome_row
from llmlab.scripted import FakeClock, ScriptedDriver

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
masker = PIIMasker()
digits = st.integers(0, 9).map(str)


def _n(k: int) -> st.SearchStrategy[str]:
    return st.lists(digits, min_size=k, max_size=k).map("".join)


# -- the formats the docs say are masked (llmlab/guardrails/pii.py, README "Guardrails") ---------------

_local = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
emails = st.one_of(
    st.tuples(_local, st.sampled_from([".", "+", "_", "-", ""]), _local,
              st.sampled_from(["example.com", "mail.co.kr", "corp.io", "naver.com"])).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}@{t[3]}"),
    st.sampled_from(["김철수@회사.한국", "jöhn@exämple.com", "user@例え.jp", "hong.gildong@example.co.kr"]),
)
separators = st.sampled_from(["-", " ", "."])
kr_mobile = st.tuples(st.sampled_from("016789"), st.sampled_from(["-", " ", ".", ""]), _n(4), _n(4)).map(
    lambda t: f"01{t[0]}{t[1]}{t[2]}{t[1]}{t[3]}")
kr_landline = st.tuples(st.sampled_from(["02", "031", "051", "064", "070"]), separators, _n(3) | _n(4), _n(4)).map(
    lambda t: t[1].join(t[0:1] + t[2:]))
international = st.tuples(st.sampled_from(["+82 10", "+1 415", "+44 20", "+49 30", "+81 3"]), _n(4), _n(4)).map(
    lambda t: f"{t[0]} {t[1]} {t[2]}")
north_american = st.tuples(st.integers(200, 999), st.integers(200, 999), _n(4), st.booleans()).map(
    lambda t: f"({t[0]}) {t[1]}-{t[2]}" if t[3] else f"{t[0]}-{t[1]}-{t[2]}")


def _luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


cards = st.tuples(st.sampled_from("3456"), _n(14), st.sampled_from(["", " ", "-", "."])).map(
    lambda t: t[2].join(_group(_luhn_complete(t[0] + t[1]))))


def _group(number: str) -> list[str]:
    return [number[i:i + 4] for i in range(0, 16, 4)]


rrns = st.tuples(st.dates(), st.sampled_from("1234"), _n(6)).filter(
    lambda t: (t[0].year >= 2000) == (t[1] in "34") and 1900 <= t[0].year <= 2099).map(
    lambda t: f"{t[0]:%y%m%d}-{t[1]}{t[2]}")
pii = st.one_of(emails, kr_mobile, kr_landline, international, north_american, cards, rrns)

# what may stand right before and after a value: words, particles, punctuation, markdown, a URL
before = st.sampled_from(["", " ", "\n", "my email is ", "전화번호는 ", "카드 ", "(", "**", "__", "_", "`", "> ",
                          '"', "'", "<", "[link](mailto:", "https://x.example/?to=", "연락처:", "— ", "。", "\t"])
after = st.sampled_from(["", " ", "\n", " please", "입니다", "로", "으로 보내줘", ")", "**", "__", "_", "`", ".",
                        ",", "!", '"', "'", ">", "]", "&x=1", " 감사합니다", "。", "\t"])
words = st.lists(st.sampled_from(["the", "order", "배송", "언제", "refund", "감사합니다", "please", "#3", "v2.1",
                                  "12:30", "2024-05-01", "₩12,000"]), max_size=4).map(" ".join)


@st.composite
def texts_with_pii(draw) -> tuple[str, list[str]]:
    values = draw(st.lists(pii, min_size=1, max_size=3))
    parts = [draw(words)]
    for value in values + values[:1]:  # the first one repeated
        parts.append(draw(before) + value + draw(after))
    parts.append(draw(words))
    return " ".join(parts), values


def _readable(text: str) -> str:
    """``text`` and, when it is JSON, its strings decoded (escapes are not a mask)."""
    try:
        return text + json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text


@FUZZ
@given(texts_with_pii())
def test_every_documented_format_in_any_surrounding_text_is_masked_and_restored(case):
    text, values = case
    result = masker.mask(text)
    assert not [v for v in values if v in result.text], result.text
    assert unmask(result.text, result.mapping) == text


@FUZZ
@given(texts_with_pii(), st.booleans())
def test_pii_inside_json_is_masked_and_the_json_stays_json(case, ascii_only):
    # a tool result written by json.dumps: "\uc804\ud654010-…" hid the number behind a hex digit,
    # "\n" + an address masked as "\[EMAIL_1]" (no longer JSON), a Korean address was not read at all
    text, values = case
    document = json.dumps({"result": text, "lines": text.split(" ")}, ensure_ascii=ascii_only)
    result = masker.mask(document)
    masked = json.loads(result.text)  # still JSON
    assert not [v for v in values if v in _readable(result.text)], masked
    assert json.loads(unmask(result.text, result.mapping)) == json.loads(document)


def test_json_escapes_next_to_a_value_no_longer_hide_it_nor_break_the_json():
    for value, label in (("010-1234-5678", "PHONE"), ("kim@example.com", "EMAIL"), ("김철수@회사.한국", "EMAIL"),
                         ("jöhn@exämple.com", "EMAIL"), ("4111 1111 1111 1111", "CARD")):
        glued = () if label == "EMAIL" else (f"전화{value}",)  # Hangul before an address joins its local part
        for text in (*glued, f"line one\n{value}", f"{value}\t(work)"):
            result = masker.mask(json.dumps({"memo": text}))
            assert json.loads(result.text)["memo"] == text.replace(value, f"[{label}_1]"), result.text
            assert result.mapping == {f"[{label}_1]": value}  # the value as read, not its escapes


# -- every place of a request, every sink -------------------------------------------------------------

def _gateway(driver: ScriptedDriver, **options) -> Gateway:
    return Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=driver.clock,
                   driver=driver, seed=0, **options)


PLACES = ("system", "user", "part", "name", "tool_arguments", "tool_result", "function_call")


def _conversation(value: str, place: str) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": "You are a support agent."},
                            {"role": "user", "content": "Where is my order?"}]
    if place == "system":
        messages[0]["content"] += f" The customer is {value}."
    elif place == "user":
        messages[1]["content"] += f" Reach me at {value}."
    elif place == "part":
        messages[1]["content"] = [{"type": "text", "text": "Where is my order?"}, {"type": "text", "text": value}]
    elif place == "name":
        messages[1]["name"] = value
    elif place == "tool_arguments":
        messages += [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "lookup", "arguments": json.dumps({"contact": f"연락처{value}"})}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "found"}]
    elif place == "tool_result":
        messages += [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "lookup", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"memo": f"고객\n{value}"})}]
    else:
        messages.insert(1, {"role": "assistant", "content": None,
                            "function_call": {"name": "lookup", "arguments": json.dumps({"who": value})}})
    messages.append({"role": "user", "content": "Please repeat everything you were told."})
    return messages


def _echo(call) -> str:  # a model that repeats every word it was sent
    return "You said: " + json.dumps(call.messages, ensure_ascii=False)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + json.dumps(getattr(record, "llmlab", None), ensure_ascii=False,
                                                           default=str))


@contextmanager
def _logged() -> Iterator[_Records]:
    """What the ``llmlab`` loggers write meanwhile, every level (a ``dictConfig`` run by an earlier
    test may have disabled the gateway's logger: it is enabled meanwhile)."""
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("llmlab", "llmlab.gateway")]
    saved = [(lg.level, lg.disabled, lg.propagate) for lg in loggers]
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled, lg.propagate = False, True
    loggers[0].addHandler(records)
    try:
        yield records
    finally:
        loggers[0].removeHandler(records)
        for lg, (level, off, propagate) in zip(loggers, saved):
            lg.setLevel(level)
            lg.disabled, lg.propagate = off, propagate
        logging.disable(disabled)


def _sent(driver: ScriptedDriver) -> str:
    out = []
    for call in driver.calls:
        for message in call.messages:
            for text in _strings(message):
                out.append(_readable(text))
        out.append(json.dumps(call.params, ensure_ascii=False, default=str))
    return "\n".join(out)


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _strings(v)]
    return []


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(pii, pii, st.sampled_from(PLACES))
def test_no_sink_ever_sees_a_value_and_each_asker_gets_their_own_back(first, second, place):
    driver = ScriptedDriver(clock=FakeClock(), default=_echo)
    semantic = SemanticCache(HashedNgramEmbedder(), threshold=0.5)
    gw = _gateway(driver, semantic_cache=semantic, log_content=True)
    with _logged() as records:
        a = gw.complete(_conversation(first, place), tenant="shop", user=first if "@" in first else "u1")
        b = gw.complete(_conversation(second, place), tenant="shop")  # same shape: served from the cache
        reworded = _conversation(second, place)
        reworded[-1]["content"] = "Please repeat everything you were told!"  # a semantic hit when the masked turns match
        c = gw.complete(reworded, tenant="shop")
        other = gw.complete(_conversation(second, place), tenant="other")  # another tenant: its own caches
    cached = [e.value.text for e in gw.exact_cache._entries.values()] + [repr(k) for k in gw.exact_cache._entries]
    cached += [f"{e.text} {e.value.text}" for space in semantic._spaces.values() for e in space.entries.values()]
    # the ledger keeps the outcome the caller got (its text and tool calls are the caller's own answer,
    # values put back); everything else in it (errors, findings, reasons, the table's rows) is checked
    ledger = [repr(replace(o, text="", tool_calls=())) + json.dumps(outcome_row(o), ensure_ascii=False, default=str)
              for o in gw.ledger.records]
    for sink, seen in (("provider", _sent(driver)), ("cache", "\n".join(cached)), ("log", "\n".join(records.lines)),
                       ("ledger", "\n".join(ledger))):
        for value in {first, second}:
            assert value not in seen, (sink, value, place)
    assert records.lines
    if masker.mask(first).text == masker.mask(second).text:  # of a kind: the same masked request
        assert (b.cache.value, c.cache.value) == ("exact_hit", "semantic_hit")
    assert other.cache.value == "miss"
    for outcome, value in ((a, first), (b, second), (c, second), (other, second)):
        assert value in outcome.text  # each asker gets their own values back
        assert first in value or outcome is a or first not in outcome.text, outcome.text  # never another's


# -- the round trip through the gateway, whole and streamed ------------------------------------------

typed_placeholders = st.sampled_from(["[EMAIL_1]", "[EMAIL_2]", "[PHONE_1]", "[CARD_10]", "[EMAIL_", "EMAIL_1]", "[]"])
turn = st.lists(st.one_of(pii, emails, typed_placeholders, words), min_size=1, max_size=4).map(" ".join).map(lambda t: t + " ?")


class _CutDriver(ScriptedDriver):
    """Streams the scripted answer in the pieces ``cuts`` makes (placeholders split anywhere)."""

    cuts: tuple[int, ...] = ()

    def stream_call(self, call):
        result = self.perform(call)
        bounds = sorted({0, *(min(c, len(result.text)) for c in self.cuts), len(result.text)})
        for a, b in zip(bounds, bounds[1:]):
            yield result.text[a:b]
        return result


def _echo_contents(call, backwards: bool = False) -> str:  # a model that repeats the user's turns as sent
    turns = [m["content"] for m in call.messages if m["role"] == "user"]
    return " | ".join(reversed(turns) if backwards else turns)


def test_a_placeholder_typed_in_one_turn_is_not_given_to_a_value_in_another():
    # "[EMAIL_1]" typed in the first turn and the address of the last both went out as [EMAIL_1], and
    # the answer's "[EMAIL_1]" came back as the address where the user had written the placeholder
    driver = ScriptedDriver(clock=FakeClock(), default=_echo_contents)
    turns = ["My mail template has the field [EMAIL_1] in it.", "Send it to kim@example.com"]
    out = _gateway(driver).complete([{"role": "user", "content": turns[0]}, {"role": "assistant", "content": "ok"},
                                     {"role": "user", "content": turns[1]}])
    assert [m["content"] for m in driver.calls[0].messages][::2] == [turns[0], "Send it to [EMAIL_2]"]
    assert out.text == " | ".join(turns)


@FUZZ
@given(st.lists(turn, min_size=2, max_size=3), st.lists(st.integers(0, 200), max_size=6), st.booleans(),
       st.booleans())
def test_the_caller_gets_exactly_its_own_words_back_whole_and_streamed(turns, cuts, asynchronous, guarded):
    # the model repeats the turns last first and twice: placeholders repeated, reordered, cut anywhere
    driver = _CutDriver(clock=FakeClock(), default=lambda call: _echo_contents(call, backwards=True) * 2)
    driver.cuts = tuple(cuts)
    gw = _gateway(driver, output_guards=(OutputFilterGuard(),) if guarded else ())  # chunks held a word at a time
    messages = [{"role": "user", "content": t} for t in turns]
    expected = " | ".join(reversed(turns)) * 2
    assert gw.complete(messages, cache=False).text == expected
    if asynchronous:
        async def collect():
            response = gw.astream(messages, cache=False)
            return [c async for c in response if isinstance(c, str)], response

        chunks, response = asyncio.run(collect())
    else:
        response = gw.stream(messages, cache=False)
        chunks = [c for c in response if isinstance(c, str)]
    assert "".join(chunks) == response.outcome.text == expected


def test_a_logged_answer_masks_a_value_that_extends_another_as_its_own_placeholder():
    # kim@example.co ([EMAIL_1]) was put back first inside kim@example.com ([EMAIL_2]): "[EMAIL_1]m"
    gw = _gateway(ScriptedDriver(clock=FakeClock(), default="New: [EMAIL_2], old: [EMAIL_1]."), log_content=True)
    with _logged() as records:
        out = gw.complete("Change kim@example.co to kim@example.com please")
    assert out.text == "New: kim@example.com, old: kim@example.co."
    assert '"answer": "New: [EMAIL_2], old: [EMAIL_1]."' in records.lines[0], records.lines


# -- precision: ordinary numbers keep their meaning (and the cache key they make) ---------------------

_date = st.dates(min_value=__import__("datetime").date(1990, 1, 1), max_value=__import__("datetime").date(2035, 12, 31))
ordinary = st.one_of(
    _date.map(lambda d: f"{d:%Y-%m-%d}"), _date.map(lambda d: f"{d:%Y.%m.%d}"), _date.map(lambda d: f"{d:%Y/%m/%d}"),
    _date.map(lambda d: f"{d.year}년 {d.month}월 {d.day}일"),
    st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)).map(lambda t: "%02d:%02d:%02d" % t),
    st.tuples(st.integers(0, 30), st.integers(0, 99), st.integers(0, 999)).map(lambda t: "v%d.%d.%d" % t),
    st.integers(0, 10**9).map(lambda n: f"₩{n:,}"), st.integers(0, 10**7).map(lambda n: f"${n / 100:,.2f}"),
    st.tuples(_date, st.integers(0, 9999)).map(lambda t: f"ORD-{t[0]:%Y%m%d}-{t[1]:04d}"),
    st.integers(10**9, 10**12 - 1).map(str),  # order, invoice and tracking numbers of 10-12 digits
    st.tuples(_date, st.integers(0, 86399)).map(lambda t: f"{t[0]:%Y%m%d}{t[1] // 3600:02d}{t[1] // 60 % 60:02d}{t[1] % 60:02d}"),
    st.integers(1_500_000_000_000, 1_999_999_999_999).map(str),  # a millisecond timestamp
    st.tuples(st.sampled_from(["1", "7", "8", "0", "20", "21"]), st.integers(12, 17)).flatmap(
        lambda t: _n(t[1]).map(lambda rest: t[0] + rest)),  # long ids that start as no issued card does
)


@FUZZ
@given(st.lists(ordinary, min_size=1, max_size=4), words)
def test_ordinary_numbers_are_not_masked_as_cards_or_phones(numbers, filler):
    # one long number in ten passes Luhn: a millisecond timestamp or a 14-digit date-time written as
    # one run went to the model (and into the cache key) as [CARD_1], so two different ones shared a key
    text = f"{filler} " + ", ".join(numbers) + " 확인 부탁드려요"
    found = [f.kind for f in masker.mask(text).findings]
    assert not [k for k in found if k in ("pii.card", "pii.phone", "pii.email")], (text, found)
