"""How many prompt tokens an image part can be billed, for budget and rate-limit holds.

A request's text is bounded by its UTF-8 bytes (:func:`llmlab.tokens.max_message_tokens`), but an
image is billed by its pixel size, which its URL does not tell: a 30-byte ``https://…`` link can
be billed 1,445 tokens by gpt-4o and 48,169 by gpt-4o-mini, while a 2 MB ``data:`` URL (whose
bytes the old bound counted as 2.7M tokens) is billed the same.  So each image part is held at
the most its deployment's model bills for *any* image at the ``detail`` the part asks for — no
fetch, no decode.  Reservations are settled with the real cost, so a generous bound costs
admission headroom near a cap, never money.

The figures are the providers' published image policies, as litellm 1.110 encodes them
(``litellm_core_utils/token_counter.py``), at their largest image:

* OpenAI tile models: ``base`` tokens, plus ``per_tile`` for each 512-px tile of the image
  scaled to fit 2048 × 2048 and then to a 768-px short side — at most 8 tiles (2048 × 768).
  ``detail: low`` is ``base`` alone.
* OpenAI patch models: 32-px patches up to a budget per detail, times the model's multiplier;
  where a detail has no budget (``original``, the default of gpt-5.6 and gpt-6-astra), the
  deployment's context window — a prompt the provider accepts is no larger.
* Anthropic: ≈ 1,600 tokens for the largest image before Claude 4.7 (≈ 1.15 megapixels at
  750 px a token); 4,784 from Claude 4.7 on (its larger image budget).
* Any other model: :data:`DEFAULT_IMAGE_TOKENS_MAX`, or the deployment's ``image_tokens_max``
  (set it for a model that bills more, such as a Gemini given very large images).
"""
from __future__ import annotations

import math
import re
from collections import abc
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from .effects import Deployment

#: per-image hold for a model whose image policy is not known here (Gemini bills 258 tokens per
#: 768-px tile, so this covers 31 tiles; every documented OpenAI and Anthropic policy at its
#: default detail is listed below, gpt-4o-mini's 48,169 and the 'original' detail among them)
DEFAULT_IMAGE_TOKENS_MAX = 8_192

#: content-part types that carry an image (OpenAI chat's ``image_url``; the Responses API's
#: ``input_image`` and Anthropic's native ``image`` when passed through)
IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})

DETAILS = ("low", "high", "auto", "original")

# OpenAI tile models: (base, per 512-px tile); the largest image has 8 tiles
_TILES = {
    "gpt-4o": (85, 170), "chatgpt-4o-latest": (85, 170), "gpt-4.1": (85, 170),
    "gpt-4o-mini": (2833, 5667),
    "gpt-5": (70, 140), "gpt-5-chat-latest": (70, 140), "gpt-5.1": (70, 140),
    "o1": (75, 150), "o1-pro": (75, 150), "o3": (75, 150),
}
_MOST_TILES = 8

# OpenAI patch models: multiplier, and the most 32-px patches per detail (auto → the default)
_PATCHES_2048 = {"low": 4096, "high": 4096, "auto": 4096, "original": 10_000}  # 2048 px a side
_PATCH_MODELS: dict[str, tuple[float, Mapping[str, int]]] = {
    "gpt-4.1-mini": (1.62, _PATCHES_2048), "gpt-5.2": (1.2, _PATCHES_2048),
    # listed by OpenAI with 1,536-patch images; held here at the 2048-px budget above, which covers it
    "gpt-4.1-nano": (2.46, _PATCHES_2048), "gpt-5-mini": (1.62, _PATCHES_2048),
    "gpt-5-nano": (2.46, _PATCHES_2048), "o4-mini": (1.72, _PATCHES_2048),
    **{m: (1.2, {"low": 4096, "high": 2500, "auto": 2500, "original": 10_000})
       for m in ("gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano")},
    "gpt-5.5": (1.2, {"low": 256, "high": 2500, "auto": 10_000, "original": 10_000}),
    # 'original' (their default) has no patch budget: an image is held at the context window
    **{m: (1.2, {"low": 256, "high": 2500})
       for m in ("gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-6-astra")},
}

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")
# claude-3-5-sonnet…, claude-sonnet-4-5-2025…, anthropic.claude-opus-4-7…: the major and minor version
_CLAUDE = re.compile(r"claude-(?:(?:haiku|sonnet|opus|instant)-)?(\d+)(?:[-.](\d{1,2})(?!\d))?")


def image_token_bound(model: str, detail: str = "auto") -> int | None:
    """The most prompt tokens ``model`` bills for one image at ``detail`` (an unknown detail is
    held at the model's largest); None when its policy sets no limit below the context window;
    :data:`DEFAULT_IMAGE_TOKENS_MAX` for a model not listed here."""
    bound = _listed_bound(model, detail)
    return DEFAULT_IMAGE_TOKENS_MAX if bound is _UNLISTED else bound


_UNLISTED: Any = object()


@lru_cache(maxsize=1024)
def _listed_bound(model: str, detail: str) -> Any:
    """:func:`image_token_bound`, or ``_UNLISTED`` for a model not listed here."""
    name = _DATED.sub("", model.rsplit("/", 1)[-1])
    if detail not in DETAILS:
        bounds = [_listed_bound(model, d) for d in DETAILS]
        return bounds[0] if bounds[0] is _UNLISTED else None if None in bounds else max(bounds)
    if name in _TILES:
        base, per_tile = _TILES[name]
        return base if detail == "low" else base + _MOST_TILES * per_tile
    if name in _PATCH_MODELS:
        multiplier, patches = _PATCH_MODELS[name]
        return math.ceil(patches[detail] * multiplier) if detail in patches else None
    claude = _CLAUDE.search(model)
    if claude is not None:
        version = (int(claude[1]), int(claude[2] or 0))
        return 4_784 if version >= (4, 7) else 1_600
    return _UNLISTED


def image_details(messages: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The ``detail`` of every image part in ``messages`` (``"auto"`` when a part names none);
    empty for a text-only request, found without looking inside any string content."""
    found: list[str] = []
    for m in messages:
        content = m.get("content")
        if content.__class__ is str or not isinstance(content, (list, tuple)):
            continue
        for part in content:
            if isinstance(part, (dict, abc.Mapping)) and part.get("type") in IMAGE_PART_TYPES:
                found.append(_detail(part))
    return tuple(found)


def _detail(part: Mapping[str, Any]) -> str:
    inner = part.get("image_url")
    detail = inner.get("detail") if isinstance(inner, (dict, abc.Mapping)) else part.get("detail")
    return detail if isinstance(detail, str) else "auto"


def images_bound(dep: Deployment, details: Sequence[str]) -> int:
    """Prompt tokens the images of a request (their ``details``) can be billed on ``dep``: its
    own ``image_tokens_max`` per image, else its model's policy — or its price model's, when the
    model string does not name a listed model (an Azure deployment's own name, say); an image
    whose policy has no limit is held at the context window (a prompt the provider takes is no
    larger)."""
    if not details:
        return 0
    if dep.image_tokens_max is not None:
        return dep.image_tokens_max * len(details)
    total = 0
    for detail in details:
        bound = _listed_bound(dep.model, detail)
        if bound is _UNLISTED and dep.price_model:
            bound = _listed_bound(dep.price_model, detail)
        total += (DEFAULT_IMAGE_TOKENS_MAX if bound is _UNLISTED else
                  dep.context_window if bound is None else bound)
    return total
