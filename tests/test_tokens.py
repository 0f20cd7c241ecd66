from llmlab.tokens import count_message_tokens, count_tokens, estimate_tokens, _encoding


def test_openai_models_are_counted_exactly_with_shipped_encodings():
    assert _encoding("o200k_base") is not None  # shipped inside litellm, loaded offline
    assert count_tokens("hello world", "gpt-4o") == 2
    assert count_tokens("hello world", "gpt-4") == 2
    n = count_tokens("The quick brown fox jumps over the lazy dog.", "gpt-4o-mini")
    assert 8 <= n <= 12


def test_estimate_for_other_models_latin_and_korean():
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("비밀번호를 잊어버렸어요") == 11 + 1  # 11 Hangul syllables + one space
    assert count_tokens("abcd" * 10, "anthropic/claude-sonnet-4-20250514") == 10


def test_message_tokens_include_framing():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
    assert count_message_tokens(msgs, "gpt-4o") == 3 + 4 + count_tokens("be brief") + 4 + 2
