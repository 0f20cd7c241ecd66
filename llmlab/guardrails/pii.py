"""Reversible PII masking for e-mail addresses, phone numbers, Korean RRNs and card numbers.

Why mask before the model: a prompt sent to a hosted model leaves your infrastructure, lands in
provider logs and (with the semantic cache) in your own cache keys. Replacing the values with
stable placeholders (`[EMAIL_1]`) keeps the *shape* of the question, so the model can still
answer "send the receipt to [EMAIL_1]", and `unmask` puts the real value back into the answer
locally.

Why these rules and not "every long number": support traffic is full of order ids, tracking
numbers and invoice numbers. Masking them would break the very questions users ask, so each
detector checks structure, not just digits:

* card numbers must be 13–19 digits **and pass the Luhn check**; one in ten numbers of any kind
  passes it, so a card written as one run of digits must also start as issued cards do (22–27,
  3–6 or 9: Mastercard's 2-series, Amex, JCB, Diners, Visa, Mastercard, Maestro, Discover,
  UnionPay, national schemes such as Korea's domestic cards) — a millisecond timestamp (17…),
  a 14-digit date-time (2024…) or an order id starting 1, 7, 8, 0, 20 or 21 is no card. A number
  written in the printed groups (4111 1111 1111 1111) is a card whatever its first digits;
* resident registration numbers (주민등록번호, YYMMDD-NNNNNNN) must carry a real calendar date;
  without the hyphen they must also pass the checksum. Numbers issued since October 2020 have a
  random tail and **no checksum**, so a hyphenated number with a valid date is masked whether or
  not its checksum holds (the finding notes which);
* phone numbers must look like a phone number: Korean mobile (010-1234-5678, 01012345678),
  Korean landline with separators (02-123-4567, 031-123-4567), international `+CC …` with 8–15
  digits, a Korean mobile number with the country code and no plus (82-10-1234-5678), or
  North-American (415) 555-0132.

Why the detectors look through invisible characters: a zero-width space, soft hyphen, word
joiner, BOM or any other format character (Unicode category Cf, plus the other default-ignorable
code points such as variation selectors and Hangul fillers) renders as nothing and a model reads
straight through it, so ``kim@exam<U+200B>ple.com`` is an address to the model and must be one to
the masker. The detectors run on a shadow without them (and, where one sits between two digits, on
shadows where it stands for a separator: ``4111<U+00AD>1111 1111 1111``); the masked span is mapped
back to the original, invisible characters inside the value included, and the restore map holds
the original exactly. Dash look-alikes (‐ – — − － ㅡ …) are read as ``-``.

Why the detectors read JSON escapes decoded: tool results and tool-call arguments are JSON, often
written by ``json.dumps`` (``\\uc804\\ud654010-1234-5678``, ``Hi\\nkim@example.com``); read as
written, a hex digit or the ``n`` of ``\\n`` glued onto a value hid it or corrupted the mask (see
:mod:`.escapes`). The mask covers whole escapes, so the JSON stays JSON, and the restore map holds
the value as it reads (``김철수@회사.한국``, not its escapes).

개인정보 마스킹: 이메일, 전화번호(국내·국제), 주민등록번호(날짜 검증, 2020년 10월 이후 발급분은
체크섬이 없으므로 하이픈 형식이면 체크섬 없이도 마스킹), 카드번호(Luhn 검증 통과 시에만; 붙여 쓴 번호는 발급 카드의 앞자리일 때만)를
`[EMAIL_1]` 같은 자리표시자로 바꾸고, `unmask`로 되돌립니다. 주문번호처럼 구조가 맞지 않는 숫자는
건드리지 않습니다. 폭 없는 공백(U+200B)·소프트 하이픈 같은 보이지 않는 문자가 끼어 있어도 탐지하며,
되돌릴 때는 그 문자까지 원문 그대로 복원합니다. ㅡ 같은 대시 모양 문자도 구분자로 읽습니다.
JSON 이스케이프(``\\uXXXX``, ``\\n``)는 풀어서 읽습니다(도구 결과·인자).
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .base import Finding, check_flag, check_strings
from .escapes import unescape

__all__ = ["KINDS", "MaskResult", "PIIMasker", "luhn_valid", "rrn_checksum_valid", "unmask"]

KINDS = ("email", "rrn", "card", "phone")
"""Detector names, in priority order: when two matches overlap, the earlier kind wins."""

_LABEL = {"email": "EMAIL", "phone": "PHONE", "rrn": "RRN", "card": "CARD"}

# Korean particles attach directly to a value ("010-1234-5678로", "hong@example.com으로"), and
# Hangul counts as \w in Python's regexes, so the lookarounds after a value use ASCII classes.
# Addresses may be internationalised (jöhn@exämple.com, user@例え.jp, 김철수@회사.한국): the local part
# and the domain labels take letters of any script (_W: \w plus the combining marks Indic and Thai
# words are written with); so may the top-level domain, except that a Hangul one is only 한국 —
# a longer Hangul run is the address plus a particle.
# An underscore may stand before an address without joining it: markdown's _kim@example.com_ and
# __kim@example.com__ (italic, bold) were passed over whole, the underscore being a word character.
_MARKS = r"\u0300-\u036f\u0900-\u0dff\u0e00-\u0e7f"
_W = rf"\w{_MARKS}"
_EMAIL = re.compile(
    rf"(?<![^\W_]|[{_MARKS}.%+-])[^\W_][{_W}.%+-]{{0,63}}"
    rf"@(?:[^\W_](?:[{_W}-]{{0,61}}[{_W}])?\.)+"
    rf"(?:[A-Za-z]{{2,24}}(?![A-Za-z0-9-])|한국|[^\W\d_\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f][{_W}]{{1,23}})"
)
_RRN = re.compile(
    r"(?<![0-9A-Za-z])(?P<birth>\d{6})(?P<sep>\s?[-\u2010\u2013]\s?| |)(?P<tail>\d{7})(?![0-9])"
)
# Cards are written either as one run of digits or in the printed groups (4-4-4-4[-3],
# Amex 4-6-5, Diners 4-6-4) with one consistent separator; free-form digit soup is not a card.
_CARD = re.compile(
    r"(?<![0-9A-Za-z])(?:\d{13,19}"
    r"|\d{4}(?P<s1>[ .-])\d{4}(?P=s1)\d{4}(?P=s1)\d{1,4}(?:(?P=s1)\d{1,3})?"
    r"|\d{4}(?P<s2>[ .-])\d{6}(?P=s2)\d{4,5})(?![0-9])"
)
_CARD_SEPARATORS = str.maketrans("", "", " .-")
#: how issued card numbers start (ISO/IEC 7812 industries 2-6 and 9), checked on a run of digits
#: written without the printed groups: a tenth of all long numbers pass Luhn
_ISSUED = re.compile(r"2[2-7]|[3-69]")
_PHONE = re.compile(
    r"""
    (?<![0-9A-Za-z+])
    (?:
        \+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}             # +82 10-1234-5678, +1 (415) ...
      | 01[016789](?P<msep>[ .-]?)\d{3,4}(?P=msep)\d{4}              # 010-1234-5678, 01012345678
      | 82(?P<isep>[ .-])0?1[016789](?P=isep)\d{3,4}(?P=isep)\d{4}   # 82-10-1234-5678 (no plus)
      | 0(?:2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70)(?P<lsep>[ .-])\d{3,4}(?P=lsep)\d{4}  # 02-123-4567
      | \(?0(?:1[016789]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70)\)\ ?\d{3,4}[ .-]\d{4}  # (02) 1234-5678, 02)1234-5678
      | (?:\([2-9]\d{2}\)\ ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}   # (415) 555-0132
    )
    (?![0-9])
    """,
    re.VERBOSE,
)
#: where an international number's group may end: before a separator that follows a digit or ")"
_PHONE_GROUP_END = re.compile(r"(?<=[0-9)])[ .-]")
# Every detector needs an "@" or at least eight digits close together (an e-mail, a phone number,
# an RRN or a card), so text without either is skipped at C speed: most prompts have no PII.
_CANDIDATE = re.compile(r"(?:\d\D{0,3}){7}\d")
_EIGHT_DIGITS = re.compile(r"\d(?:\D*\d){7}")

#: full-width forms (０１０－１２３４, ｋｉｍ＠…), typographic dashes and odd spaces folded to ASCII one
#: character for one, so detectors run on a same-length shadow and mask the original's spans.
#: Dash look-alikes typed as separators: ‐ ‑ ‒ – — ―, ⁃, −, ⸺ ⸻, ﹘ ﹣, ─ ━ (box drawing, offered by
#: Korean IMEs), ➖, and the Hangul vowel ㅡ (U+3161; half-width U+FFDA), which Korean users type as
#: a dash ("010ㅡ1234ㅡ5678"); none of them can occur inside an address's domain.
_DASHES = (*range(0x2010, 0x2016), 0x2043, 0x2212, 0x2E3A, 0x2E3B, 0xFE58, 0xFE63, 0x2500, 0x2501, 0x2796,
           0x3161, 0xFFDA)
_FOLD = {**{0xFF01 + i: 0x21 + i for i in range(94)}, **{c: 0x2D for c in _DASHES},
         0x3000: 0x20, 0x00A0: 0x20, 0x202F: 0x20}

#: Invisible characters: every format character (Unicode category Cf: soft hyphen, Arabic number
#: signs, zero-width space / (non-)joiners, bidi marks and embeddings, word joiner, invisible
#: operators, BOM, interlinear annotation, tag characters, ...) and the other default-ignorable code
#: points (combining grapheme joiner, variation selectors, Hangul fillers). Written out because
#: Python's ``re`` has no \p{Cf}; a test checks the list against ``unicodedata``.
_INVISIBLE_CLASS = (
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5"
    "\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff"
)
_INVISIBLE = re.compile(f"[{_INVISIBLE_CLASS}]+")


def fold(text: str) -> str:
    """``text`` with full-width characters, dashes and non-breaking spaces as ASCII (same length)."""
    return text if text.isascii() else text.translate(_FOLD)


def may_contain_pii(text: str) -> bool:
    """False when no detector could match: no "@" and no eight digits close together (invisible
    characters between the digits not counted)."""
    if "@" in text or "\uff20" in text or _CANDIDATE.search(text) is not None:
        return True
    # "0\u200b\u200b\u200b\u200b1…": digits kept apart by invisible characters alone. Most texts
    # end at the first test (ASCII: nothing invisible) or the second (fewer than eight digits).
    return (not text.isascii() and _EIGHT_DIGITS.search(text) is not None
            and _INVISIBLE.search(text) is not None and _CANDIDATE.search(_INVISIBLE.sub("", text)) is not None)


class _View(NamedTuple):
    """A shadow of the folded text with the invisible runs taken out; ``starts[k]`` is the first
    view index whose character lies ``shifts[k]`` places further on in the original."""

    text: str
    starts: list[int]
    shifts: list[int]

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The original span of view span ``[start, end)``, invisible characters inside included."""
        starts, shifts = self.starts, self.shifts
        last = end - 1
        return (start + shifts[bisect_right(starts, start) - 1],
                last + shifts[bisect_right(starts, last) - 1] + 1)


def _views(shadow: str, runs: list[tuple[int, int]]) -> list[_View]:
    """``shadow`` without its invisible ``runs``; when a run sits between two digits, also the
    shadows where each such run reads as one separator (" ", "-" or "."), as the soft hyphen in
    "4111<U+00AD>1111 1111 1111" does."""
    n = len(shadow)
    between = [0 < a and b < n and shadow[a - 1].isdecimal() and shadow[b].isdecimal() for a, b in runs]
    views = []
    for sep in ("", " ", "-", ".") if any(between) else ("",):
        parts: list[str] = []
        starts, shifts = [0], [0]
        pos = shift = 0
        for (a, b), digits in zip(runs, between):
            parts.append(shadow[pos:a])
            kept = 1 if sep and digits else 0
            if kept:
                parts.append(sep)  # view index a - shift is original index a
            shift += b - a - kept
            starts.append(b - shift)
            shifts.append(shift)
            pos = b
        parts.append(shadow[pos:])
        views.append(_View("".join(parts), starts, shifts))
    return views


_PLACEHOLDER = re.compile(r"\[[A-Z]+_\d+\]")


def luhn_valid(digits: str) -> bool:
    """True if `digits` (only 0-9) passes the Luhn mod-10 check used by payment cards."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def rrn_checksum_valid(digits13: str) -> bool:
    """The pre-October-2020 RRN check digit (weights 2..9,2..5; (11 - sum mod 11) mod 10)."""
    if len(digits13) != 13 or not digits13.isdigit():
        return False
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    s = sum(int(d) * w for d, w in zip(digits13, weights))
    return (11 - s % 11) % 10 == int(digits13[12])


def _rrn_century(gender_digit: str) -> int:
    # 1/2/5/6: born 1900s (5-8 foreigners); 3/4/7/8: 2000s; 9/0: 1800s.
    return {"1": 1900, "2": 1900, "5": 1900, "6": 1900,
            "3": 2000, "4": 2000, "7": 2000, "8": 2000}.get(gender_digit, 1800)


def _rrn_date_valid(birth: str, gender_digit: str) -> bool:
    year = _rrn_century(gender_digit) + int(birth[:2])
    month, day = int(birth[2:4]), int(birth[4:6])
    if not 1 <= month <= 12:
        return False
    return 1 <= day <= calendar.monthrange(year, month)[1]


class _Span(NamedTuple):
    kind: str
    start: int
    end: int
    note: str
    value: str | None = None  # what the span reads as, when not its text (JSON escapes decoded)


@dataclass(frozen=True, slots=True)
class MaskResult:
    """Masked text, the placeholder → original map, and one finding per masked occurrence."""

    text: str
    mapping: dict[str, str]
    findings: tuple[Finding, ...]

    @property
    def found(self) -> bool:
        return bool(self.findings)


def _non_overlapping(spans_by_kind: Iterable[Iterable[_Span]]) -> list[_Span]:
    """The spans that overlap no span taken before them (kinds in priority order), sorted by
    position.  The spans taken are kept sorted, so each candidate is checked against the one
    taken span that could overlap it (bisection): against every span taken, a long text full of
    numbers took seconds, quadratic in its matches."""
    starts: list[int] = []
    ends: list[int] = []
    chosen: list[_Span] = []
    for spans in spans_by_kind:
        for span in spans:
            i = bisect_left(starts, span.end)  # taken spans from i on start at or after its end
            if i and ends[i - 1] > span.start:  # the last one starting before its end reaches into it
                continue
            starts.insert(i, span.start)
            ends.insert(i, span.end)
            chosen.insert(i, span)
    return chosen


class PIIMasker:
    """Detects PII and replaces it with numbered, reversible placeholders.

    Within one `mask` call the same value always gets the same placeholder, so "mail
    a@b.com, I repeat a@b.com" keeps its meaning. Pass `reuse=` (an earlier mapping) to keep
    numbering consistent across the messages of one conversation.
    """

    def __init__(self, kinds: Iterable[str] = KINDS, *, rrn_require_checksum: bool = False) -> None:
        kinds = check_strings("PIIMasker.kinds", kinds, "PII kinds from " + ", ".join(map(repr, KINDS)),
                              options=KINDS, at_least_one=True)
        # keep priority order regardless of how the caller listed them
        self.kinds = tuple(k for k in KINDS if k in kinds)
        self.rrn_require_checksum = check_flag("PIIMasker.rrn_require_checksum", rrn_require_checksum)
        self._detectors: dict[str, Callable[[str], Iterable[_Span]]] = {
            "email": self._emails,
            "rrn": self._rrns,
            "card": self._cards,
            "phone": self._phones,
        }

    # -- detectors -------------------------------------------------------------------------

    @staticmethod
    def _emails(text: str) -> Iterable[_Span]:
        for m in _EMAIL.finditer(text):
            yield _Span("email", m.start(), m.end(), "e-mail address")

    def _rrns(self, text: str) -> Iterable[_Span]:
        for m in _RRN.finditer(text):
            birth, tail, hyphenated = m["birth"], m["tail"], bool(m["sep"].strip())
            if not _rrn_date_valid(birth, tail[0]):
                continue
            checksum = rrn_checksum_valid(birth + tail)
            # Unhyphenated 13-digit runs (or 6 + 7 digits split by a space) are too easily
            # something else, an order number say: demand the checksum.
            if (not hyphenated or self.rrn_require_checksum) and not checksum:
                continue
            note = ("resident registration number (checksum ok)" if checksum else
                    "resident registration number (date valid; no checksum, e.g. issued after 2020-10)")
            yield _Span("rrn", m.start(), m.end(), note)

    @staticmethod
    def _cards(text: str) -> Iterable[_Span]:
        # A match that fails the checks is looked past from its next character, not from its end:
        # "2024 4111 1111 1111 1111" reads first as the groups "2024 4111 1111 1111", which fail
        # Luhn, and the card after the year was never looked at.
        pos = 0
        while (m := _CARD.search(text, pos)) is not None:
            raw = m.group()
            digits = raw.translate(_CARD_SEPARATORS)
            if (13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)
                    and (len(raw) != len(digits) or _ISSUED.match(digits) is not None)):
                yield _Span("card", m.start(), m.end(), f"payment card number ({len(digits)} digits, Luhn ok)")
                pos = m.end()
            else:
                pos = m.start() + 1

    @staticmethod
    def _phones(text: str) -> Iterable[_Span]:
        for m in _PHONE.finditer(text):
            raw = m.group()
            if not raw.startswith("+"):
                yield _Span("phone", m.start(), m.end(), "phone number")
                continue
            # The international form takes up to six groups, so it reads on into the numbers after
            # the phone number: "+44 20 7946 0958 2024" (16 digits) was dropped as too long, and
            # "+82 10 1234 5678 0.0@x.io" lost to the address it ran into. Each shorter reading
            # that ends before a separator is offered too, longest first: the longest with at
            # most 15 digits (E.164) that overlaps nothing taken before is masked.
            for end in [len(raw), *(s.start() for s in reversed(list(_PHONE_GROUP_END.finditer(raw))))]:
                if 8 <= sum(c.isdigit() for c in raw[:end]) <= 15:
                    yield _Span("phone", m.start(), m.start() + end, "international phone number")

    def find(self, text: str) -> list[_Span]:
        """Non-overlapping detections, sorted by position (higher-priority kind wins overlaps).

        JSON escapes (``\\uXXXX``, ``\\n`` …: a tool result written by ``json.dumps``) are read
        decoded; such a span covers whole escapes and its ``value`` is the decoded text."""
        if not may_contain_pii(text):
            return []
        decoded = unescape(text)
        if decoded is None:
            return self._find(text)
        return [span._replace(start=start, end=end, value=decoded.text[span.start:span.end])
                for span in self._find(decoded.text)
                for start, end in (decoded.original(span.start, span.end),)]

    def _find(self, text: str) -> list[_Span]:
        text = fold(text)  # same length: the spans found here are the original's
        if not text.isascii() and _INVISIBLE.search(text) is not None:
            return self._find_through_invisible(text)
        return _non_overlapping(self._detectors[kind](text) for kind in self.kinds)

    def _find_through_invisible(self, shadow: str) -> list[_Span]:
        """`find` for a (folded) text holding invisible characters: the detectors run on views
        without them and each span is mapped back to the original, so the mask covers the whole
        value, the invisible characters inside it included. Only such texts pay for the maps."""
        views = _views(shadow, [m.span() for m in _INVISIBLE.finditer(shadow)])

        def found(kind: str) -> list[_Span]:
            spans = {span._replace(start=start, end=end)
                     for view in views for span in self._detectors[kind](view.text)
                     for start, end in (view.original(span.start, span.end),)}
            return sorted(spans, key=lambda s: (s.start - s.end, s.start, s.note))  # longest first

        return _non_overlapping(map(found, self.kinds))

    # -- masking ---------------------------------------------------------------------------

    def mask(self, text: str, *, reuse: Mapping[str, str] | None = None) -> MaskResult:
        """Replace every detected value by a placeholder such as `[EMAIL_1]`.

        `reuse` is a placeholder → original map from earlier calls (e.g. previous messages of
        the same conversation): known values keep their placeholder and new ones continue the
        numbering. `mapping` in the result covers the placeholders used in *this* text.
        Placeholders that already occur literally in `text` are skipped, so unmasking never
        rewrites something the user typed.
        """
        spans = self.find(text)
        if not spans:
            return MaskResult(text, {}, ())
        known = dict(reuse or {})
        by_value = {(_kind_of(ph), orig): ph for ph, orig in known.items()}
        counters: dict[str, int] = {}
        for ph in known:
            label, _, n = ph[1:-1].rpartition("_")
            if n.isdigit():
                counters[label] = max(counters.get(label, 0), int(n))

        mapping: dict[str, str] = {}
        findings: list[Finding] = []
        out: list[str] = []
        pos = 0
        for span in spans:
            value = text[span.start:span.end] if span.value is None else span.value
            label = _LABEL[span.kind]
            ph = by_value.get((label, value))
            if ph is None:
                n = counters.get(label, 0)
                while True:
                    n += 1
                    ph = f"[{label}_{n}]"
                    if ph not in text and ph not in known:
                        break
                counters[label] = n
                by_value[(label, value)] = ph
            mapping[ph] = value
            out.append(text[pos:span.start])
            out.append(ph)
            pos = span.end
            findings.append(Finding(f"pii.{span.kind}", f"{span.note} masked as {ph}", span.start, span.end))
        out.append(text[pos:])
        return MaskResult("".join(out), mapping, tuple(findings))

    def unmask(self, text: str, mapping: Mapping[str, str]) -> str:
        return unmask(text, mapping)


def _kind_of(placeholder: str) -> str:
    return placeholder[1:-1].rpartition("_")[0]


def unmask(text: str, mapping: Mapping[str, str]) -> str:
    """Put originals back for every placeholder in `mapping`; unknown placeholders stay.

    One regex pass (not repeated `str.replace`), so a restored value that itself looks like a
    placeholder is never expanded a second time.
    """
    if not mapping:
        return text
    return _PLACEHOLDER.sub(lambda m: mapping.get(m.group(), m.group()), text)
