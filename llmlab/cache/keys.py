"""Cache keys: which requests may share an answer.

The lecture's key was an MD5 of the prompt alone, so a ``temperature=0`` answer from one model
was served for a ``temperature=1`` request to another.  Here a key covers the messages *and*
every parameter that changes the answer, and it always lives inside a tenant namespace.

Two modes, matching the lecture's table:

* ``"exact"`` — messages byte for byte plus *all* parameters: the strictest, lowest hit rate.
* ``"prompt_params"`` — messages normalised (Unicode NFKC, whitespace collapsed, trimmed) plus
  only the parameters that change the answer: higher hit rate, still safe.
"""
from __future__ import annotations

import hashlib
from collections import abc
import json
import re
import unicodedata
from functools import lru_cache
from typing import Any, Mapping, Sequence

from .. import _validate as v

#: parameters that change what a model answers
ANSWER_PARAMS = ("model", "temperature", "top_p", "max_tokens", "stop", "seed", "response_format",
                 "tools", "tool_choice", "frequency_penalty", "presence_penalty", "n", "logit_bias")
#: parameters that never change the answer and are ignored even by the exact mode
IGNORED_PARAMS = frozenset({"stream", "stream_options", "user", "metadata", "timeout", "api_key", "api_base"})

_SPACE = re.compile(r"\s+")

KEY_MODES = ("exact", "prompt_params")


@lru_cache(maxsize=16384)
def normalize_text(text: str) -> str:
    """NFKC, collapse runs of white space, trim.  Case is kept: it can change meaning.

    Memoised: system prompts and earlier turns of a conversation come back on every request.
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def _canonical(value: Any) -> Any:
    if isinstance(value, (dict, abc.Mapping)):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_canonical(x) for x in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 ask for the same thing
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


class CacheKeyPolicy:
    """Builds the key of a request inside its namespace.

    Keys are memoised on the raw (role, content) pairs and parameters: the same questions come
    back again and again, and normalising plus hashing them is most of a cache lookup's cost.
    """

    MEMO_SIZE = 8192

    def __init__(self, mode: str = "prompt_params") -> None:
        self.mode = v.choice("cache_key_mode", mode, KEY_MODES)
        self._memo: dict[Any, str] = {}

    def key(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
        try:
            memo_key = (tuple((m.get("role"), m.get("content")) for m in messages),
                        tuple(sorted(params.items())))
            hash(memo_key)
        except TypeError:  # unhashable content (multimodal parts, tool schemas): compute directly
            return self._compute(messages, params)
        found = self._memo.get(memo_key)
        if found is None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            found = self._memo[memo_key] = self._compute(messages, params)
        return found

    def _compute(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
        if self.mode == "exact":
            msgs = [[str(m.get("role", "")), str(m.get("content") or "")] for m in messages]
            kept = {k: params[k] for k in params if k not in IGNORED_PARAMS}
        else:
            msgs = [[str(m.get("role", "")), normalize_text(str(m.get("content") or ""))] for m in messages]
            kept = {k: params[k] for k in ANSWER_PARAMS if params.get(k) is not None}
        payload = json.dumps([msgs, _canonical(kept)], ensure_ascii=False, separators=(",", ":"))
        return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def context_fingerprint(messages: Sequence[Mapping[str, Any]]) -> str:
    """A short digest of everything before the last user message (system prompt, history).

    The semantic cache compares only the last user turn, so its namespace must include the
    context: the same words mean different things in different conversations.
    """
    if len(messages) <= 1:
        return ""
    pairs = tuple((str(m.get("role", "")), str(m.get("content") or "")) for m in messages[:-1])
    return _fingerprint(pairs)


@lru_cache(maxsize=4096)
def _fingerprint(pairs: tuple[tuple[str, str], ...]) -> str:
    payload = json.dumps([[role, normalize_text(content)] for role, content in pairs], ensure_ascii=False)
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
