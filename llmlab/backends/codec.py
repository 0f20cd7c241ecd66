"""How cache entries cross the network: versioned JSON, never pickle.

A shared cache is shared with every process that can reach it.  Unpickling a value read from
Redis would let anyone who can write one key run code inside every gateway, so entries are
plain JSON and decoding validates the shape field by field.  A value that does not decode is
reported as :class:`CodecError`, which the stores treat as a miss.

One entry is one JSON object::

    {"f": 1, "w": <written_at>, "t": "answer", "v": {CachedAnswer fields}}

``w`` is the caller's clock at write time: freshness is judged against it, not against
Redis' own expiry (which only bounds how long a stale entry stays available to the last
resort).  ``t`` is ``"answer"`` for a :class:`~llmlab.effects.CachedAnswer` and ``"json"``
for any other JSON-native value.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

from ..effects import CachedAnswer
from ..errors import LLMLabError

FORMAT = 1
#: refuse to decode entries larger than this (a corrupted or hostile value, not an answer)
MAX_ENTRY_BYTES = 8 * 1024 * 1024
_MAX_DEPTH = 20


class CodecError(LLMLabError, ValueError):
    """Bytes read from a shared store are not a valid llmlab entry (treated as a cache miss)."""


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Metadata as JSON-native values; anything else is kept as its (bounded) ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return repr(value)[:200]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    return repr(value)[:200]


def encode_entry(value: Any, written_at: float) -> bytes:
    """Serialise ``value`` (a CachedAnswer or a JSON-native value) with its write time."""
    if isinstance(value, CachedAnswer):
        body = {"text": value.text, "model": value.model, "prompt_tokens": int(value.prompt_tokens),
                "completion_tokens": int(value.completion_tokens), "cost_usd": float(value.cost_usd),
                "created_at": float(value.created_at), "metadata": _jsonable(dict(value.metadata or {}))}
        kind = "answer"
    else:
        body, kind = value, "json"
    try:
        data = json.dumps({"f": FORMAT, "w": float(written_at), "t": kind, "v": body}, ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False)
        return data.encode("utf-8", "surrogatepass")
    except (TypeError, ValueError) as exc:
        raise CodecError(f"cannot encode a {type(value).__name__} as a cache entry: {exc}") from exc


def _number(body: Mapping[str, Any], name: str, *, integer: bool = False, signed: bool = False) -> Any:
    """A finite number (non-negative unless ``signed``): ``json`` reads ``NaN``, ``Infinity`` and
    ``1e400`` as floats, and an entry written at ``NaN`` was never stale (every age comparison
    with it is false), so a planted one was served as fresh until Redis expired it."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float) if not integer else int):
        raise CodecError(f"field {name!r} is {type(value).__name__}, expected {'int' if integer else 'number'}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int beyond any float
        finite = False
    if not finite or (value < 0 and not signed):
        raise CodecError(f"field {name!r} is {value!r:.40}, expected a finite number{'' if signed else ' >= 0'}")
    return value


def decode_entry(data: bytes | str, *, answer: bool = False) -> tuple[Any, float]:
    """Return ``(value, written_at)``; raise :class:`CodecError` for anything malformed.

    ``answer=True``: only a :class:`~llmlab.effects.CachedAnswer` is valid (what the gateway's
    caches hold; a ``"json"`` entry at such a key was written by something else, and served as
    a hit it failed the request as an internal error)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"entry is {type(data).__name__}, expected bytes")
    if len(data) > MAX_ENTRY_BYTES:
        raise CodecError(f"entry of {len(data)} bytes exceeds {MAX_ENTRY_BYTES}")
    try:
        obj = json.loads(bytes(data).decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CodecError(f"entry is not llmlab JSON: {type(exc).__name__}") from exc
    if not isinstance(obj, dict) or obj.get("f") != FORMAT:
        raise CodecError("entry has no llmlab format marker (written by something else?)")
    written_at = _number(obj, "w", signed=True)
    kind, body = obj.get("t"), obj.get("v")
    if kind == "json" and not answer:
        return body, float(written_at)
    if kind == "json":
        raise CodecError("a plain JSON entry where an answer was expected (not written by the gateway)")
    if kind != "answer" or not isinstance(body, dict):
        raise CodecError(f"unknown entry type {kind!r}")
    text, model, metadata = body.get("text"), body.get("model"), body.get("metadata", {})
    if not isinstance(text, str) or not isinstance(model, str):
        raise CodecError("answer entry needs string 'text' and 'model'")
    if not isinstance(metadata, dict):
        raise CodecError("answer entry 'metadata' must be an object")
    answer = CachedAnswer(text, model, _number(body, "prompt_tokens", integer=True),
                          _number(body, "completion_tokens", integer=True), float(_number(body, "cost_usd")),
                          float(_number(body, "created_at", signed=True)), metadata)
    return answer, float(written_at)
