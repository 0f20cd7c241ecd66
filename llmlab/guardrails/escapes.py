"""JSON string escapes read as the characters they stand for, with a map back to the escaped text.

Why the PII masker needs this: tool results and tool-call arguments are JSON, and Python's
``json.dumps`` writes every non-ASCII character as ``\\uXXXX`` and a line break as ``\\n``. Read
as written, ``"\\uc804\\ud654010-1234-5678"`` ("전화010-1234-5678") has a hex digit glued to the
phone number, so no detector takes it; ``"\\uae40\\ucca0\\uc218@\\ud68c\\uc0ac.\\ud55c\\uad6d"``
(김철수@회사.한국) is no address at all; and in ``"Hi\\nkim@example.com"`` the address seemed to
start with the ``n`` of the escape, so the mask left ``\\[EMAIL_1]`` behind: JSON no parser takes,
and ``nkim@example.com`` as the value to put back. The detectors run on the decoded text instead,
and each span is widened back to whole escapes in the caller's text.

JSON 문자열 이스케이프(``\\uXXXX``, ``\\n`` …)를 풀어 읽고, 찾은 위치를 원문(이스케이프된 글)으로
되돌립니다. 도구 결과처럼 ``json.dumps``로 만든 글 속 개인정보도 마스킹하기 위해서입니다.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import NamedTuple

__all__ = ["Unescaped", "unescape"]

_ESCAPE = re.compile(r'\\(?:u[0-9A-Fa-f]{4}|["\\/bfnrt])')
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class Unescaped(NamedTuple):
    """``text`` with its escapes decoded; ``at[k]`` is the decoded index of the k-th escape,
    which spans ``[starts[k], ends[k])`` in the original and shifts what follows by ``shifts[k]``."""

    text: str
    at: list[int]
    starts: list[int]
    ends: list[int]
    shifts: list[int]

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The original span of decoded span ``[start, end)``: escapes at either end taken whole."""
        return self._index(start, False), self._index(end - 1, True)

    def _index(self, i: int, after: bool) -> int:
        k = bisect_right(self.at, i) - 1
        if k >= 0 and self.at[k] == i:
            return self.ends[k] if after else self.starts[k]
        return i + (self.shifts[k] if k >= 0 else 0) + after


def unescape(text: str) -> Unescaped | None:
    """``text`` with its JSON escapes decoded, or None when it has none (the common case)."""
    if "\\" not in text:
        return None
    parts: list[str] = []
    at: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    shifts: list[int] = []
    pos = shift = 0
    for m in _ESCAPE.finditer(text):
        a, b = m.span()
        parts.append(text[pos:a])
        escape = m.group()
        parts.append(chr(int(escape[2:], 16)) if escape[1] == "u" else _SIMPLE[escape[1]])
        shift += b - a - 1
        at.append(b - shift - 1)
        starts.append(a)
        ends.append(b)
        shifts.append(shift)
        pos = b
    if not at:
        return None
    parts.append(text[pos:])
    return Unescaped("".join(parts), at, starts, ends, shifts)
