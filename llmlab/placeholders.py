"""The caller's own values back in place of their placeholders, in a whole answer or a stream.

PII masking sends ``[EMAIL_1]`` to the provider; with ``unmask_answers`` the caller gets
``kim@example.com`` back.  A whole answer is one ``str.replace`` per placeholder.  A stream is
harder: a placeholder can arrive split over chunks (``"[EMA"`` then ``"IL_1]"``), so
:class:`StreamRestorer` holds back a chunk's tail while it could still become a placeholder.
Placeholders are matched as the strings in the mapping, whatever their format: a custom
masker's ``<NAME_1>`` works as the default masker's ``[EMAIL_1]`` does.
"""
from __future__ import annotations

from typing import Mapping


def restore_placeholders(text: str, restore: Mapping[str, str]) -> str:
    """``text`` with every placeholder of ``restore`` replaced by the caller's value."""
    for placeholder, original in restore.items():
        text = text.replace(placeholder, original)
    return text


class StreamRestorer:
    """:func:`restore_placeholders` over a stream's chunks, as the caller will see them.

    ``feed`` returns what may be shown now: the text so far, restored, except a tail that is the
    start of a placeholder (it is shown once the next chunk completes it or proves it is not one);
    ``flush`` returns that tail when the stream ends.  The chunks shown join to
    ``restore_placeholders`` of the chunks fed.
    """

    __slots__ = ("restore", "_held")

    def __init__(self, restore: Mapping[str, str] | None) -> None:
        self.restore = restore or {}
        self._held = ""

    def feed(self, piece: str) -> str:
        if not self.restore:
            return piece
        text = self._held + piece
        keep = _placeholder_start(text, self.restore)
        self._held = text[len(text) - keep:] if keep else ""
        return restore_placeholders(text[:len(text) - keep], self.restore)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return restore_placeholders(held, self.restore)


def _placeholder_start(text: str, restore: Mapping[str, str]) -> int:
    """The length of the longest tail of ``text`` that is a proper prefix of a placeholder.

    A placeholder split by the chunk boundary must start inside that tail, so the text before it
    is safe to restore and show."""
    longest = 0
    for placeholder in restore:
        for size in range(min(len(placeholder) - 1, len(text)), longest, -1):
            if text.endswith(placeholder[:size]):
                longest = size
                break
    return longest
