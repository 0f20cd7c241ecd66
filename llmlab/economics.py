"""When does a semantic cache pay for itself?

Every request is embedded (the lookup needs the vector) whether it hits or not; only hits save
a model call.  So the cache pays when ``hit_rate × llm_cost ≥ embedding_cost`` — with a local
embedder (``embedding_cost = 0``) from the first hit, with a provider embedding at a hit rate
of ``embedding_cost / llm_cost`` (text-embedding-3-small at 20 tokens ≈ $4e-7 against a
gpt-4o-mini answer of 500 prompt + 200 completion tokens ≈ $1.95e-4: 0.2 %).  What the lecture
adds and this module prices: a *false* hit serves a wrong answer with full confidence; give it
a cost (a support ticket, a refund, churn) and it can outweigh the savings long before the
embedding bill does.
"""
from __future__ import annotations

from typing import Any

from . import _validate as v

__all__ = ["break_even_hit_rate", "semantic_cache_net_saving"]


def break_even_hit_rate(embedding_cost: float, llm_cost: float) -> float:
    """The hit rate above which embedding every query pays: ``embedding_cost / llm_cost``.

    A result above 1 means the cache can never pay (an embedding dearer than the call it saves).
    """
    e = v.amount("embedding_cost", embedding_cost)
    c = v.positive("llm_cost", llm_cost)
    assert e is not None and c is not None
    return e / c


def semantic_cache_net_saving(requests: float, hit_rate: float, llm_cost: float, embedding_cost: float,
                              false_hit_rate: float = 0.0, false_hit_penalty: float = 0.0) -> dict[str, Any]:
    """Money saved by a semantic cache over ``requests`` requests (all costs in USD per request).

    ``hit_rate``: share of requests answered from the cache.  ``false_hit_rate``: share of those
    *hits* that were wrong (served an answer to a different question); each costs
    ``false_hit_penalty``.  Returns::

        {"requests", "hits", "false_hits", "gross_saving", "embedding_spend",
         "false_hit_penalty", "net_saving", "break_even_hit_rate", "pays_off"}

    ``gross_saving = hits × llm_cost`` (every hit skips a call, right or wrong),
    ``embedding_spend = requests × embedding_cost``, ``net = gross − embedding − penalty``.
    """
    n = v.amount("requests", requests)
    h = v.probability("hit_rate", hit_rate)
    c = v.amount("llm_cost", llm_cost)
    e = v.amount("embedding_cost", embedding_cost)
    f = v.probability("false_hit_rate", false_hit_rate)
    p = v.amount("false_hit_penalty", false_hit_penalty)
    hits = n * h
    false_hits = hits * f
    gross = hits * c
    embedding = n * e
    penalty = false_hits * p
    net = gross - embedding - penalty
    if c > 0:
        # hit rate at which net = 0, false hits included: h·n·(c − f·p) = n·e
        per_hit = c - f * p
        break_even = e / per_hit if per_hit > 0 else float("inf")
    else:
        break_even = 0.0 if e == 0 and p * f == 0 else float("inf")
    return {"requests": n, "hits": hits, "false_hits": false_hits, "gross_saving": gross,
            "embedding_spend": embedding, "false_hit_penalty": penalty, "net_saving": net,
            "break_even_hit_rate": break_even, "pays_off": net > 0}
