"""The caller's values back in place of placeholders, in whole answers and across stream chunks."""
from hypothesis import given, settings
from hypothesis import strategies as st

from llmlab.placeholders import StreamRestorer, restore_placeholders

RESTORE = {"[EMAIL_1]": "kim@example.com", "[EMAIL_10]": "lee@example.org", "<NAME_1>": "Kim [sic]"}


def shown(pieces, restore=RESTORE):
    restorer = StreamRestorer(restore)
    out = [restorer.feed(p) for p in pieces]
    return out + [restorer.flush()]


def test_a_placeholder_split_at_every_point_is_shown_whole():
    text = "Mail [EMAIL_1] or [EMAIL_10]; ask <NAME_1>. [EMAIL_"
    for cut in range(len(text) + 1):
        out = shown([text[:cut], text[cut:]])
        assert "".join(out) == restore_placeholders(text, RESTORE) == \
            "Mail kim@example.com or lee@example.org; ask Kim [sic]. [EMAIL_"
        assert not any(p in chunk for chunk in out for p in ("[EMAIL_1]", "[EMAIL_10]", "<NAME_1>")), (cut, out)


def test_text_that_cannot_become_a_placeholder_is_not_held_back():
    restorer = StreamRestorer(RESTORE)
    assert restorer.feed("plain text, ") == "plain text, "
    assert restorer.feed("a list [1, 2]") == "a list [1, 2]"
    assert restorer.feed(" then [EM") == " then "  # could still be [EMAIL_1]
    assert restorer.feed("PTY]") == "[EMPTY]"
    assert StreamRestorer(None).feed("[EMAIL_1") == "[EMAIL_1"  # nothing to put back: nothing held


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["[EMAIL_1]", "[EMAIL_10]", "<NAME_1>", "[", "<", "EMAIL_", "1]", "0", " ", "x"]),
                max_size=12), st.lists(st.integers(0, 40), max_size=6))
def test_any_chunking_shows_what_the_whole_answer_restores(parts, cuts):
    text = "".join(parts)
    bounds = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)])]
    assert "".join(shown(pieces)) == restore_placeholders(text, RESTORE)
