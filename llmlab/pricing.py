"""Prices, per-request cost and the monthly cost formula.

The price book starts from litellm's bundled ``model_prices_and_context_window_backup.json``,
read *directly* from the installed package: importing litellm costs seconds and, without
``LITELLM_LOCAL_MODEL_COST_MAP``, reaches for the network.  The lecture's table ships as
overrides.  litellm's own ``completion_cost`` returns ``0.0`` for a model it does not know
(``claude-sonnet-4-20250514`` is missing from its map); llmlab raises
:class:`~llmlab.errors.UnknownModelPrice` instead, because a silent $0 breaks every budget.
"""
from __future__ import annotations

import importlib.util
import json
import os
import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from . import _validate as v
from .errors import ConfigError, UnknownModelPrice

PER_MILLION = 1_000_000.0

#: The lecture's price table, USD per 1M tokens (input, output).
LECTURE_PRICES: Mapping[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "claude-sonnet-4-20250514": (3.00, 15.00),
}


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices in USD per token (the unit litellm's map uses)."""

    input_per_token: float
    output_per_token: float = 0.0
    context_window: int | None = None
    #: prompt tokens the provider read from its prompt cache, and wrote to it (litellm's
    #: ``cache_read_input_token_cost`` / ``cache_creation_input_token_cost``); None: the input
    #: price.  Anthropic bills a read at 0.1× and a write at 1.25× the input price, OpenAI and
    #: Azure a read at 0.5× (automatically, for a prompt of 1,024 tokens or more)
    cache_read_per_token: float | None = None
    cache_write_per_token: float | None = None

    @classmethod
    def per_million(cls, input_usd: float, output_usd: float = 0.0, context_window: int | None = None) -> "ModelPrice":
        v.amount("input_usd_per_1m", input_usd)
        v.amount("output_usd_per_1m", output_usd)
        return cls(input_usd / PER_MILLION, output_usd / PER_MILLION, context_window)

    def __post_init__(self) -> None:
        # finite: an infinite price made every request's cost inf (NaN for 0 tokens × inf) and
        # broke budgets' arithmetic (an OverflowError converting it for the Redis counters)
        v.amount("input_per_token", self.input_per_token)
        v.amount("output_per_token", self.output_per_token)
        for name in ("cache_read_per_token", "cache_write_per_token"):
            if getattr(self, name) is not None:
                v.amount(name, getattr(self, name))

    def cost(self, prompt_tokens: int, completion_tokens: int = 0, cached_tokens: int = 0,
             cache_write_tokens: int = 0) -> float:
        """USD for a call; ``cached_tokens`` and ``cache_write_tokens`` are the part of
        ``prompt_tokens`` the provider read from and wrote to its prompt cache."""
        cost = prompt_tokens * self.input_per_token + completion_tokens * self.output_per_token
        if cached_tokens and self.cache_read_per_token is not None:
            cost += cached_tokens * (self.cache_read_per_token - self.input_per_token)
        if cache_write_tokens and self.cache_write_per_token is not None:
            cost += cache_write_tokens * (self.cache_write_per_token - self.input_per_token)
        return cost

    def bound(self, prompt_tokens: float, completion_tokens: float) -> float:
        """The most a call with these token counts can cost, for budget reservations: every
        prompt token at the dearer of the input and the cache-write rate (Anthropic bills a
        prompt it caches at 1.25× the input price)."""
        write = self.cache_write_per_token
        per_prompt = write if write is not None and write > self.input_per_token else self.input_per_token
        return prompt_tokens * per_prompt + completion_tokens * self.output_per_token


def litellm_price_file() -> str | None:
    """Path of litellm's bundled price map, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model_prices_and_context_window_backup.json")
    return path if os.path.exists(path) else None


@lru_cache(maxsize=1)
def _litellm_prices() -> Mapping[str, ModelPrice]:
    path = litellm_price_file()
    if path is None:
        return {}
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    prices: dict[str, ModelPrice] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "input_cost_per_token" not in entry:
            continue  # 'sample_spec' and entries without a price are unpriced, not free
        try:
            inp = float(entry["input_cost_per_token"])
            out = float(entry.get("output_cost_per_token") or 0.0)
        except (TypeError, ValueError):
            continue
        window = entry.get("max_input_tokens") or entry.get("max_tokens")
        try:
            prices[name] = ModelPrice(inp, out, int(window) if isinstance(window, (int, float)) else None,
                                      _rate(entry.get("cache_read_input_token_cost")),
                                      _rate(entry.get("cache_creation_input_token_cost")))
        except ConfigError:  # a negative or non-finite price in the map: that model is unpriced, not the map
            continue
    return prices


def _rate(value: object) -> float | None:
    """A price map's optional per-token rate, or None when absent or no price."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        return None
    return float(value)


def _strip_provider(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model


class PriceBook:
    """Look up prices by model name; overrides win over litellm's map.

    Lookup tries the exact name, then the name without a provider prefix
    (``openai/gpt-4o`` → ``gpt-4o``), because litellm's keys carry no prefix.
    """

    def __init__(self, overrides: Mapping[str, ModelPrice | tuple[float, float]] | None = None,
                 *, include_litellm: bool = True) -> None:
        self._base: Mapping[str, ModelPrice] = _litellm_prices() if include_litellm else {}
        self._overrides: dict[str, ModelPrice] = {}
        self._add(overrides)

    def _add(self, overrides: Mapping[str, ModelPrice | tuple[float, float]] | None) -> None:
        if not isinstance(overrides, (Mapping, type(None))):
            raise ConfigError("prices", overrides, "a mapping of model → ModelPrice or (input_usd_per_1m, output_usd_per_1m)")
        for model, price in (overrides or {}).items():
            if not isinstance(model, str) or not model:  # looked up by name: 123 raised TypeError later
                raise ConfigError("prices", model, "model names (text) as the keys")
            if isinstance(price, ModelPrice):
                self._overrides[model] = price
            elif isinstance(price, (tuple, list)) and 1 <= len(price) <= 3:
                try:
                    self._overrides[model] = self._cache_rates_kept(model, ModelPrice.per_million(*price))
                except ConfigError as exc:  # name the model: a gateway's prices= may list several
                    raise ConfigError(f"prices[{model!r}].{exc.field}", exc.value, exc.allowed) from None
            else:
                raise ConfigError(f"prices[{model!r}]", price,
                                  "a ModelPrice or (input_usd_per_1m, output_usd_per_1m) numbers")

    def __repr__(self) -> str:
        """The models priced by override, by name (their prices: :meth:`price`)."""
        return f"PriceBook(overrides={sorted(self._overrides)}, litellm_models={len(self._base)})"

    @classmethod
    def default(cls) -> "PriceBook":
        """litellm's map plus the lecture's table."""
        return cls(LECTURE_PRICES)

    def _cache_rates_kept(self, model: str, price: ModelPrice) -> ModelPrice:
        """An (input, output) override with the model's prompt-cache discounts from litellm's map,
        as ratios of its input price: the lecture's ``gpt-4o`` row charged cached tokens in full."""
        base = self._base.get(model) or self._base.get(_strip_provider(model))
        if base is None or not base.input_per_token:
            return price
        ratio = price.input_per_token / base.input_per_token
        return dataclasses.replace(price, **{name: rate * ratio for name in ("cache_read_per_token",
                                                                            "cache_write_per_token")
                                             if (rate := getattr(base, name)) is not None})

    def with_overrides(self, overrides: Mapping[str, ModelPrice | tuple[float, float]]) -> "PriceBook":
        if not isinstance(overrides, Mapping):  # {**None} raised TypeError
            raise ConfigError("prices", overrides, "a mapping of model → ModelPrice or (input_usd_per_1m, output_usd_per_1m)")
        book = PriceBook(include_litellm=False)
        book._base = self._base
        book._add({**self._overrides, **overrides})
        return book

    def find(self, model: str) -> ModelPrice | None:
        for name in (model, _strip_provider(model)):
            price = self._overrides.get(name) or self._base.get(name)
            if price is not None:
                return price
        return None

    def __contains__(self, model: str) -> bool:
        return self.find(model) is not None

    def price(self, model: str) -> ModelPrice:
        price = self.find(model)
        if price is None:
            raise UnknownModelPrice(model)
        return price

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int = 0) -> float:
        """USD for one call."""
        return self.price(model).cost(prompt_tokens, completion_tokens)

    def embedding_cost(self, model: str, tokens: int) -> float:
        """USD for embedding ``tokens`` input tokens (embedding models bill input only)."""
        return self.price(model).cost(tokens, 0)

    def monthly_cost(self, daily_requests: float, input_tokens: float, output_tokens: float, model: str) -> float:
        return monthly_cost(daily_requests, input_tokens, output_tokens, model, prices=self)


def monthly_cost(daily_requests: float, input_tokens: float, output_tokens: float, model: str,
                 *, prices: PriceBook | None = None, days: int = 30) -> float:
    """The lecture's formula: ``daily × 30 × (in × P_in + out × P_out)`` in USD."""
    v.non_negative("daily_requests", daily_requests)
    v.non_negative("input_tokens", input_tokens)
    v.non_negative("output_tokens", output_tokens)
    price = (prices or PriceBook.default()).price(model)
    return daily_requests * days * (input_tokens * price.input_per_token + output_tokens * price.output_per_token)
