"""Offline token counting.

OpenAI models are counted exactly with tiktoken, using the encodings that litellm ships inside
its package (``litellm_core_utils/tokenizers/``) so nothing is downloaded.  Other models get a
documented estimate: about four characters per token for Latin text and one token per Hangul
or CJK character (Korean is dense in BPE vocabularies), which errs on the high side for budget
reservations.  Counting never imports litellm.
"""
from __future__ import annotations

import importlib.util
import json
import os
from collections import abc
from functools import lru_cache
from typing import Any, Mapping, Sequence

from .image_tokens import IMAGE_PART_TYPES
from .request import content_text, is_text_part

#: tokens added per chat message by the OpenAI chat format
MESSAGE_OVERHEAD = 4


def _litellm_tokenizer_dir() -> str | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "litellm_core_utils", "tokenizers")
    return path if os.path.isdir(path) else None


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any | None:
    directory = _litellm_tokenizer_dir()
    if directory is None or importlib.util.find_spec("tiktoken") is None:
        return None
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", directory)
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception:  # the encoding file is absent: fall back to the estimate
        return None


def encoding_for(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model, or None when the model is not OpenAI's."""
    base = model.split("/", 1)[-1]
    if base.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    if base.startswith(("gpt-4", "gpt-3.5", "text-embedding")):
        return "cl100k_base"
    return None


def estimate_tokens(text: str) -> int:
    """Cheap estimate: ceil(latin_chars / 4) + one token per Hangul/CJK character.

    Runs at C speed: a Hangul/CJK character takes three bytes in UTF-8 and an ASCII one byte,
    so the byte excess counts the wide characters without a Python loop over the text.
    """
    if text.isascii():
        return (len(text) + 3) // 4
    wide = (len(text.encode("utf-8")) - len(text)) // 2
    narrow = max(0, len(text) - wide)
    return wide + (narrow + 3) // 4


def count_tokens(text: str, model: str = "gpt-4o") -> int:
    """Tokens in ``text`` for ``model``: exact for OpenAI models, estimated otherwise."""
    name = encoding_for(model)
    enc = _encoding(name) if name else None
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode(text, disallowed_special=()))


def count_message_tokens(messages: Sequence[Mapping[str, Any]], model: str = "gpt-4o") -> int:
    """Prompt tokens of a chat request's text, including the per-message framing (content parts:
    their text; what images are billed depends on the model, see :mod:`llmlab.image_tokens`)."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += MESSAGE_OVERHEAD + count_tokens(content_text(message.get("content")), model)
    return total


def estimate_message_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Fast estimate (≈ 4 characters a token) of what a provider bills, for simulated and scripted
    providers.  Reservations use :func:`max_message_tokens`, an upper bound."""
    return 3 + sum(MESSAGE_OVERHEAD + estimate_tokens(str(m.get("content") or "")) for m in messages)


def max_message_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """An upper bound of a chat request's prompt tokens, for budget and rate-limit reservations.

    Byte-level BPE tokenizers (OpenAI's, Anthropic's) never make a token shorter than one UTF-8
    byte, so the byte count bounds the token count whatever the text.  :func:`estimate_tokens`
    (≈ 4 characters a token) is close for prose but undershoots dense text — 3,000 hex digits are
    ≈ 1,700 tokens, ``"a1b2"`` repeated is one token a character — and a reservation that
    undershoots lets a cap be overshot.  Reservations are settled with the real cost, so the
    bound costs admission headroom near a cap, not money.  Image parts are not counted here: what
    an image is billed depends on the model, not on its URL (:mod:`llmlab.image_tokens`).
    """
    total = 3
    for m in messages:
        content = m.get("content") or ""
        if content.__class__ is not str:  # content parts: their text; images are held by images_bound
            total += MESSAGE_OVERHEAD + (_parts_bytes(content) if isinstance(content, (list, tuple))
                                         else len(str(content).encode("utf-8", "surrogatepass")))
        else:
            total += MESSAGE_OVERHEAD + (len(content) if content.isascii()
                                         else len(content.encode("utf-8", "surrogatepass")))
        calls = m.get("tool_calls") or m.get("function_call")
        if calls:  # an assistant turn's tool calls (name, JSON arguments) are billed as prompt text
            total += _json_bytes(calls)
    return total


#: request parameters sent to the model as text, and billed as prompt tokens
PROMPT_PARAMS = ("tools", "response_format")


def max_params_tokens(params: Mapping[str, Any]) -> int:
    """An upper bound of the prompt tokens a request's parameters add: tool definitions and a
    response schema reach the model as text, so the UTF-8 bytes of their JSON bound them (as in
    :func:`max_message_tokens`).  0 for a request with neither."""
    total = 0
    for key in PROMPT_PARAMS:
        value = params.get(key)
        if value:
            total += _json_bytes(value)
    return total


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))


def _parts_bytes(parts: Sequence[Any]) -> int:
    """UTF-8 bytes of a content-part list's text, for the prompt bound: a text part's text, any
    other non-image part (audio, a file) its JSON; image parts add nothing here (they are held
    by :func:`llmlab.image_tokens.images_bound`, not by their URL's length)."""
    total = 0
    for part in parts:
        if not isinstance(part, (dict, abc.Mapping)):
            total += len(str(part).encode("utf-8", "surrogatepass"))
        elif is_text_part(part) and isinstance(part.get("text"), str):
            total += len(part["text"].encode("utf-8", "surrogatepass"))
        elif part.get("type") not in IMAGE_PART_TYPES:
            total += _json_bytes(part)
    return total
