"""A streamed answer shown through the output guards, as it arrives.

The output guards (blocked terms, leaked secrets) check a whole answer.  A stream's chunks reach
the caller before the whole answer exists, and they used to reach it unguarded: a key the model
leaked, or a blocked term, was on the caller's screen while ``outcome.text`` said
``[REDACTED:openai_key]`` or the outcome said the answer was blocked.

:class:`StreamGuard` shows a chunk only once the guards have seen it:

* **Hold back the word being written.**  The trailing run of non-space characters may still grow
  into a secret (``sk-proj-ab`` … ``…cdef``) or a term (``class`` … ``classic``), so it waits for
  the next space or the stream's end.  Secrets are single words; what a guard rewrites is shown
  rewritten.
* **Guard a window, not the whole text again.**  Re-checking everything at every chunk cost
  ≈ 8 s of CPU for a 16,000-character answer.  The guards check the text from an *anchor* on;
  the anchor moves up behind clean text, :data:`MARGIN` characters behind the stable end, so a
  match that began a little earlier (``password:`` then the value, a two-word term) is still
  seen whole.  A rewrite that reaches the end of the window (a private key's block, still open)
  keeps the anchor where it is until it closes.
* **Stop, never take back.**  A verdict that blocks, or that rewrites text already shown (a
  term whose first word went out), stops the view: nothing more is shown, and the caller gets
  the outcome — the blocked error, or the whole guarded answer after a
  :class:`~llmlab.stream.StreamReset` (:meth:`~llmlab.stream.StreamResponse.whole_answer_chunk`).

The caller's own values are put back after the guards, as for a whole answer
(:class:`~llmlab.placeholders.StreamRestorer`).

Asked about each part as it grows, a guard runs once per word: cheap for
:class:`~llmlab.guardrails.OutputFilterGuard`'s regexes, not for a guard of one's own that calls a
moderation service.  So only guards that say ``incremental = True`` are asked as the text grows;
with any other guard the answer is shown once the guards have seen all of it.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

from .placeholders import StreamRestorer

#: characters kept in the guards' window behind the text already shown: a match may begin this far
#: back (a credential's name before its value, a term of several words, a key's ``BEGIN`` line)
MARGIN = 256

#: a space, or CJK punctuation (Chinese and Japanese write no spaces): a word ends before it
_BREAK = re.compile(r"[\s\u3001\u3002\uff01\uff0c\uff1f]")

#: what the stream's check returns: the text as the guards leave it, and whether they block it
Check = Callable[[str], "tuple[str, bool]"]


class OutputCheck:
    """The gateway's output guards over a stream's text so far: ``(text, blocked)``.

    Findings are not recorded here: the pipeline's check of the whole answer records them once.
    ``incremental``: every guard may be asked about each part as it grows (its ``incremental``
    attribute is true); otherwise the stream is held until the guards can see it whole."""

    __slots__ = ("guards", "incremental")

    def __init__(self, guards: Sequence[Any]) -> None:
        self.guards = tuple(guards)
        self.incremental = all(getattr(g, "incremental", False) is True for g in self.guards)

    def __call__(self, text: str) -> tuple[str, bool]:
        for guard in self.guards:
            verdict = guard.check_output(text)
            if verdict.blocked:
                return text, True
            text = verdict.text
        return text, False


def _stable_end(text: str, start: int = 0) -> int:
    """Where the last word that cannot grow any more ends: just after the last break at or after
    ``start``; 0 when there is none there."""
    for i in range(len(text) - 1, start - 1, -1):
        if _BREAK.match(text, i):
            return i + 1
    return 0


def _common_suffix(a: str, b: str) -> int:
    if a == b:  # the usual case: the guards changed nothing
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[-1 - i] == b[-1 - i]:
        i += 1
    return i


class StreamGuard:
    """:class:`~llmlab.placeholders.StreamRestorer`'s ``feed``/``flush``, behind the output guards.

    ``check(text)`` runs the gateway's output guards over masked text and returns ``(text,
    blocked)``.  ``stopped`` turns true when a verdict blocked or rewrote text already shown (or
    the check raised: the pipeline's own check then fails the request); nothing more is shown.
    """

    __slots__ = ("_check", "_whole", "_restorer", "_raw", "_committed", "_shown", "stopped")

    def __init__(self, check: Check, restore: Mapping[str, str] | None) -> None:
        self._check = check
        self._whole = getattr(check, "incremental", True) is False  # shown only once seen whole
        self._restorer = StreamRestorer(restore)
        self._raw = ""        # the provider's text from the anchor on
        self._committed = 0   # how much of _raw has been shown (guarded)
        self._shown = ""      # what the guards made of _raw[:_committed], as shown
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        start = len(self._raw)
        self._raw += piece
        if self._whole:
            return ""
        return self._advance(_stable_end(self._raw, start))  # a break can only be in the new piece

    def flush(self) -> str:
        if self.stopped:
            return ""
        return self._advance(len(self._raw), final=True) + ("" if self.stopped else self._restorer.flush())

    def _advance(self, end: int, final: bool = False) -> str:
        if end <= self._committed:
            return ""
        if not final and end > 4 * MARGIN and (end - self._committed) * 8 < end:
            # a window held open (a key's BEGIN line with no END yet: all of it is redacted) is
            # checked again once it has grown by an eighth, not at every word: linear, not quadratic
            return ""
        window = self._raw[:end]
        try:
            text, blocked = self._check(window)
        except Exception:  # user code: the pipeline's check of the whole answer raises it again
            blocked, text = True, ""
        if blocked or not text.startswith(self._shown):
            self.stopped = True
            return ""
        new, self._shown, self._committed = text[len(self._shown):], text, end
        self._slide(window, text)
        return self._restorer.feed(new)

    def _slide(self, window: str, text: str) -> None:
        """Move the anchor up to a word's start inside the window's clean tail, :data:`MARGIN`
        characters or more behind its end (the guards left that tail as it was written)."""
        clean = _common_suffix(window, text)
        lo, hi = len(window) - clean, len(window) - MARGIN
        if hi <= max(lo, 0):
            return
        anchor = _stable_end(window[:hi], max(lo, 0))
        if anchor <= max(lo, 0):  # no word starts in the clean tail that far back
            return
        drop = len(text) - (len(window) - anchor)  # the same place in the guarded text
        self._raw, self._committed = self._raw[anchor:], self._committed - anchor
        self._shown = self._shown[drop:]
