"""OpenAI-shaped response bodies for the fake provider (pure functions, no I/O).

Kept apart from the server so the shapes can be read in one place and compared with the real
API reference: chat completions, streamed chunks, embeddings, and the error envelope that
OpenAI's (and therefore litellm's) client turns into typed exceptions.

OpenAI 호환 응답 본문(채팅, 스트리밍 청크, 임베딩, 오류 JSON)을 만드는 순수 함수들입니다.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "approx_tokens",
    "chat_completion",
    "chat_chunks",
    "default_reply",
    "embeddings",
    "error_body",
    "image_tokens",
    "prompt_text",
    "pseudo_embedding",
]

FINGERPRINT = "fp_llmlab_fake"

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", None),
    409: ("conflict_error", None),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("service_unavailable", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
    529: ("overloaded_error", "overloaded"),
}


def approx_tokens(text: str) -> int:
    """The fake's token count: ``len(text) // 4 + 1`` (about right for English)."""
    return len(text) // 4 + 1


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


def prompt_text(body: Mapping[str, Any]) -> str:
    """All message contents joined by newlines (what the prompt-token estimate counts)."""
    return "\n".join(_content_text(m.get("content")) for m in body.get("messages") or () if isinstance(m, Mapping))


def default_reply(body: Mapping[str, Any]) -> str:
    """A short answer that depends only on the request: model + start of the last user turn."""
    last = ""
    for m in body.get("messages") or ():
        if isinstance(m, Mapping) and m.get("role") == "user":
            last = _content_text(m.get("content"))
    snippet = " ".join(last.split())[:60]
    return f"Fake answer from {body.get('model', 'model')} to: {snippet}"


def error_body(status: int, message: str) -> dict:
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


#: what the fake bills an image part: gpt-4o's price for its largest image (85 + 8 tiles × 170),
#: 85 at ``detail: low`` — the image's URL is not fetched
IMAGE_TOKENS = {"low": 85, "other": 1445}


def image_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens the fake bills for the ``image_url`` parts of a request's messages."""
    total = 0
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, Mapping) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, Mapping) and part.get("type") == "image_url":
                url = part.get("image_url")
                low = isinstance(url, Mapping) and url.get("detail") == "low"
                total += IMAGE_TOKENS["low" if low else "other"]
    return total


def _usage(body: Mapping[str, Any], completion: str) -> dict:
    p, c = approx_tokens(prompt_text(body)) + image_tokens(body), approx_tokens(completion)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _truncate(reply: str, body: Mapping[str, Any]) -> tuple[str, str]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and approx_tokens(reply) > limit:
        return reply[: limit * 4 - 1], "length"  # approx_tokens of the cut text is then exactly the limit
    return reply, "stop"


def chat_completion(body: Mapping[str, Any], reply: str, *, id: str, created: int) -> dict:
    text, finish = _truncate(reply, body)
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": body.get("model", ""),
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }],
        "usage": _usage(body, text),
    }


def chat_chunks(body: Mapping[str, Any], reply: str, *, id: str, created: int) -> Iterator[dict]:
    """The chunk objects of a streamed answer: role, content pieces, finish, [usage].

    Content is split into word-sized pieces (each keeps its trailing space), like tokens.
    The usage chunk (empty `choices`) comes only when ``stream_options.include_usage`` is
    true; then every other chunk carries ``"usage": null``, as OpenAI does.
    """
    text, finish = _truncate(reply, body)
    opts = body.get("stream_options")
    include_usage = isinstance(opts, Mapping) and bool(opts.get("include_usage"))
    base = {"id": id, "object": "chat.completion.chunk", "created": created,
            "model": body.get("model", ""), "system_fingerprint": FINGERPRINT}

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        c = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])
        if include_usage:
            c["usage"] = None
        return c

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in re.findall(r"\S+\s*|\s+", text):
        yield chunk({"content": piece})
    yield chunk({}, finish)
    if include_usage:
        yield dict(base, choices=[], usage=_usage(body, text))


def pseudo_embedding(text: str, dim: int = 64) -> list[float]:
    """A deterministic unit vector seeded by a hash of `text` (same text → same vector).

    Not semantic at all: paraphrases are as far apart as unrelated texts. It exists so
    embedding calls have realistic shapes and sizes in tests without a model.
    """
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def embeddings(body: Mapping[str, Any], *, default_dim: int) -> dict:
    """Response for ``POST /v1/embeddings``; honours ``dimensions`` and ``encoding_format``.

    The openai client asks for ``encoding_format="base64"`` by default (little-endian
    float32), so both that and plain float lists are supported.
    """
    raw = body.get("input", "")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        inputs = [raw]
    else:
        inputs = list(raw) if isinstance(raw, list) else [raw]
    texts = [x if isinstance(x, str) else json.dumps(x) for x in inputs]
    dims = body.get("dimensions")
    dim = dims if isinstance(dims, int) and 0 < dims <= 8192 else default_dim
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i, t in enumerate(texts):
        vec = pseudo_embedding(t, dim)
        emb: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode("ascii") if b64 else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(approx_tokens(t) for t in texts)
    return {"object": "list", "data": data, "model": body.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
