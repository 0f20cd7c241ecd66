"""The embedded defaults: the lecture's three models and its routing, no API keys needed to construct."""
from __future__ import annotations

from .effects import Deployment


def default_deployments() -> list[Deployment]:
    """gpt-4o, gpt-4o-mini and Claude Sonnet 4 as in the lecture (prices from the lecture's table)."""
    return [
        Deployment("gpt-4o", "gpt-4o", context_window=128_000, max_output_tokens=16_384),
        Deployment("gpt-4o-mini", "gpt-4o-mini", context_window=128_000, max_output_tokens=16_384),
        Deployment("claude-sonnet-4-20250514", "anthropic/claude-sonnet-4-20250514",
                   context_window=200_000, max_output_tokens=8_192, price_model="claude-sonnet-4-20250514"),
    ]


#: the lecture's fallback chain: GPT-4o → Claude → the small model
DEFAULT_FALLBACKS = {
    "gpt-4o": ["claude-sonnet-4-20250514", "gpt-4o-mini"],
    "gpt-4o-mini": ["gpt-4o", "claude-sonnet-4-20250514"],
    "claude-sonnet-4-20250514": ["gpt-4o", "gpt-4o-mini"],
}
