"""The output guards' view of a stream (llmlab.stream_guard): words held back until they cannot
grow into a secret, a window instead of the whole text checked again, a stop instead of taking back."""
from __future__ import annotations

from llmlab.guardrails import OutputFilterGuard
from llmlab.stream_guard import MARGIN, StreamGuard

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


def _filter_check(**options):
    guard = OutputFilterGuard(**options)
    seen = []

    def check(text: str):
        seen.append(len(text))
        verdict = guard.check_output(text)
        return verdict.text, verdict.blocked is not None

    return check, seen


def test_the_guards_see_a_window_not_the_whole_text_again():
    # re-checking everything at every chunk was quadratic: ~8 s of CPU for 16,000 characters
    check, seen = _filter_check()
    view = StreamGuard(check, None)
    text = "word " * 4_000
    shown = "".join(view.feed(text[i:i + 4]) for i in range(0, len(text), 4)) + view.flush()
    assert shown == text and max(seen) <= MARGIN + 64 and len(seen) <= len(text) / 4 + 1  # linear in all


def test_a_private_key_longer_than_the_window_is_never_shown():
    check, _ = _filter_check()
    body = "\n".join("MIIEv" + "Q" * 59 for _ in range(40))  # ten times the margin
    text = f"Here:\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\nand more words after it"
    for step in (7, 300):  # its BEGIN line cut (the view stops), or whole in one chunk (redacted, and on)
        view = StreamGuard(check, None)
        shown = "".join(view.feed(text[i:i + step]) for i in range(0, len(text), step)) + view.flush()
        assert "MIIEv" not in shown
        assert view.stopped if step == 7 else shown.endswith("[REDACTED:private_key]\nand more words after it")


def test_a_rewrite_of_text_already_shown_stops_the_view():
    check, _ = _filter_check(blocked_terms=["Project Falcon"], term_action="redact")
    view = StreamGuard(check, None)
    shown = view.feed("About Project ") + view.feed("Falcon ") + view.feed("and more")
    assert shown == "About Project " and view.stopped and view.flush() == ""


def test_the_callers_own_values_are_put_back_after_the_guards():
    check, _ = _filter_check()
    view = StreamGuard(check, {"[EMAIL_1]": "kim@example.com"})
    text = f"Mail [EMAIL_1] the key {KEY} now"
    shown = "".join(view.feed(c) for c in text) + view.flush()
    assert shown == "Mail kim@example.com the key [REDACTED:openai_key] now"


def test_a_guard_that_raises_stops_the_view():
    def check(text):
        raise RuntimeError("boom")

    view = StreamGuard(check, None)
    assert view.feed("hello there ") == "" and view.stopped


def test_a_window_held_open_is_not_checked_again_at_every_word():
    check, seen = _filter_check()
    view = StreamGuard(check, None)
    head, words = "Your key file starts with -----BEGIN PRIVATE KEY----- and then ", "word " * 4_000
    text = head + words
    shown = view.feed(head) + "".join(view.feed(words[i:i + 4]) for i in range(0, len(words), 4)) + view.flush()
    assert shown == check(text)[0] == "Your key file starts with [REDACTED:private_key]"
    assert sum(seen) < 20 * len(text)  # every word re-checked the whole window: ~500 times the text
