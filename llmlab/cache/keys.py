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
from ..request import content_text, is_text_part

#: parameters that change what a model answers
ANSWER_PARAMS = ("model", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
                 "response_format", "tools", "tool_choice", "frequency_penalty", "presence_penalty", "n",
                 "logit_bias", "reasoning_effort")
#: parameters that never change the answer and are ignored even by the exact mode
IGNORED_PARAMS = frozenset({"stream", "stream_options", "user", "metadata", "timeout", "api_key", "api_base"})

_SPACE = re.compile(r"\s+")

KEY_MODES = ("exact", "prompt_params")


#: characters above which a text is memoised in the small memos (:data:`LONG_TEXT_MEMO` texts):
#: the memos hold their texts, and 65,536 distinct retrieved contexts of 8 KB each pinned ≈ 0.5 GB
#: (with the normalised copies) in a process that never saw them again.  Long texts that do come
#: back (a system prompt, a conversation's history) are few, and fit in the small memos.
LONG_TEXT = 2_048
LONG_TEXT_MEMO = 256


def _normalized(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


_normalize_short = lru_cache(maxsize=16384)(_normalized)
_normalize_long = lru_cache(maxsize=LONG_TEXT_MEMO)(_normalized)


def normalize_text(text: str) -> str:
    """NFKC, collapse runs of white space, trim.  Case is kept: it can change meaning.

    Memoised: system prompts and earlier turns of a conversation come back on every request
    (a long text in a memo of its own, see :data:`LONG_TEXT`).
    """
    return (_normalize_short if len(text) <= LONG_TEXT else _normalize_long)(text)


def _canonical(value: Any) -> Any:
    if isinstance(value, (dict, abc.Mapping)):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_canonical(x) for x in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 ask for the same thing
    if isinstance(value, bool):
        # True and 1 too: the params memo (a tuple of the items) cannot tell them apart, so a
        # digest that did made the key depend on which of the two a process saw first
        return int(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


class CacheKeyPolicy:
    """Builds the key of a request inside its namespace.

    A key is a digest of per-message digests plus a digest of the parameters.  Each message's
    digest is memoised on its (role, content) text, so a conversation costs one dictionary lookup
    per message however long its history: the system prompt and the earlier turns come back on
    every request, and normalising and hashing the whole history again each time grew with it.
    """

    PARAMS_MEMO_SIZE = 4096

    def __init__(self, mode: str = "prompt_params") -> None:
        self.mode = v.choice("cache_key_mode", mode, KEY_MODES)
        self._normalise = self.mode != "exact"
        self._params: dict[Any, tuple[bytes, str]] = {}

    def key(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
        return self.key_from(self.digests(messages), params)

    def digests(self, messages: Sequence[Mapping[str, Any]]) -> list[bytes]:
        """Each message's digest in this policy's mode, for :meth:`key_from` and :meth:`context_from`:
        a request's exact key and its semantic namespace's context hash the same messages, and
        hashing them once serves both (see :meth:`context_from`)."""
        normalise = self._normalise
        return [_message_digest(m, normalise) for m in messages]

    def key_from(self, digests: Sequence[bytes], params: Mapping[str, Any]) -> str:
        """:meth:`key` from the messages' :meth:`digests`."""
        # fixed-size digests: the concatenation is unambiguous (one update, as many updates would hash)
        return hashlib.blake2b(_KEY_DOMAIN + b"".join(digests) + self._params_entry(params)[0],
                               digest_size=16).hexdigest()

    def context_from(self, messages: Sequence[Mapping[str, Any]], digests: Sequence[bytes] | None) -> str:
        """:func:`context_fingerprint` of ``messages``, from this policy's :meth:`digests` of them
        when they are the context's own (the normalising mode: ``prompt_params``, the default);
        otherwise, or without ``digests``, computed afresh."""
        if digests is None or not self._normalise:
            return context_fingerprint(messages)
        return _context(digests[:-1]) if len(digests) > 1 else ""

    def namespace_key(self, params: Mapping[str, Any]) -> str:
        """``key((), params)``: the parameters' part of a semantic-cache namespace, memoised with
        their digest."""
        return self._params_entry(params)[1]

    def _params_entry(self, params: Mapping[str, Any]) -> tuple[bytes, str]:
        """The parameters' digest and :meth:`namespace_key`, memoised on their items."""
        try:
            memo_key = tuple(sorted(params.items()))
            hash(memo_key)
        except TypeError:  # unhashable values (tool schemas, stop lists): compute directly
            return self._compute_entry(params)
        found = self._params.get(memo_key)
        if found is None:
            if len(self._params) >= self.PARAMS_MEMO_SIZE:
                self._params.clear()
            found = self._params[memo_key] = self._compute_entry(params)
        return found

    def _compute_entry(self, params: Mapping[str, Any]) -> tuple[bytes, str]:
        digest = self._compute_params(params)
        return digest, hashlib.blake2b(_KEY_DOMAIN + digest, digest_size=16).hexdigest()

    def _compute_params(self, params: Mapping[str, Any]) -> bytes:
        if self.mode == "exact":
            kept = {k: params[k] for k in params if k not in IGNORED_PARAMS}
        else:
            kept = {k: params[k] for k in ANSWER_PARAMS if params.get(k) is not None}
        payload = json.dumps(_canonical(kept), ensure_ascii=False, separators=(",", ":"))
        return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_KEY_DOMAIN = b"llmlab/cache-key/2"
_CONTEXT_DOMAIN = b"llmlab/context/2"


def _message_digest(message: Mapping[str, Any], normalise: bool) -> bytes:
    role = message.get("role", "")
    content = message.get("content") or ""
    parts = ""
    if type(content) is not str:
        if isinstance(content, (list, tuple)):  # content parts: their text, and a digest of the rest
            parts = attachments_fingerprint(message, every_part=not normalise)  # exact: the shape too
            content = content_text(content)
        else:
            content = str(content)
    digest = (_text_digest if len(content) <= LONG_TEXT else _long_text_digest)(
        role if type(role) is str else str(role), content, normalise)
    if parts:  # not memoised: an inline image's URL is megabytes, and the memos keep their keys
        digest = hashlib.blake2b(digest + parts.encode("ascii"), digest_size=16).digest()
    if len(message) > 2:  # a name or tool calls change what the turn says: get_weather(Seoul) ≠ (Busan)
        extra = {k: message[k] for k in _TURN_FIELDS if message.get(k) is not None}
        if extra:
            payload = json.dumps(_canonical(extra), ensure_ascii=False, separators=(",", ":"))
            digest = hashlib.blake2b(digest + payload.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return digest


#: message fields other than role and content that belong to what a turn says
_TURN_FIELDS = ("name", "tool_calls", "tool_call_id", "function_call")


def _digest(role: str, content: str, normalise: bool) -> bytes:
    payload = json.dumps([role, normalize_text(content) if normalise else content], ensure_ascii=False,
                         separators=(",", ":"))
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_text_digest = lru_cache(maxsize=65_536)(_digest)
_long_text_digest = lru_cache(maxsize=LONG_TEXT_MEMO)(_digest)  # texts above LONG_TEXT characters


def attachments_fingerprint(message: Mapping[str, Any], *, every_part: bool = False) -> str:
    """A digest of a message's content parts other than text (images, audio, files), or of every
    part with ``every_part``; ``""`` when there are none (string content always).

    The semantic cache compares only the text of the last user turn, so its namespace includes
    this: the same question about another image must not be answered from the cache.
    """
    content = message.get("content")
    if content.__class__ is str or not isinstance(content, (list, tuple)):
        return ""
    kept = [_canonical(p) for p in content if every_part or not is_text_part(p)]
    if not kept:
        return ""
    payload = json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def context_fingerprint(messages: Sequence[Mapping[str, Any]]) -> str:
    """A short digest of everything before the last user message (system prompt, history).

    The semantic cache compares only the last user turn, so its namespace must include the
    context: the same words mean different things in different conversations.
    """
    if len(messages) <= 1:
        return ""
    return _context([_message_digest(m, True) for m in messages[:-1]])


def _context(digests: Sequence[bytes]) -> str:
    """The context fingerprint of messages whose normalised digests are ``digests``."""
    return hashlib.blake2b(_CONTEXT_DOMAIN + b"".join(digests), digest_size=8).hexdigest()
