"""Break-even and net saving of a semantic cache."""
from __future__ import annotations

import math

import pytest

from llmlab.economics import break_even_hit_rate, semantic_cache_net_saving
from llmlab.errors import ConfigError


def test_break_even_is_embedding_over_llm_cost():
    assert break_even_hit_rate(0.0001, 0.01) == pytest.approx(0.01)
    assert break_even_hit_rate(0.0, 0.01) == 0.0          # a local embedder pays from the first hit
    assert break_even_hit_rate(0.02, 0.01) == pytest.approx(2.0)  # > 1: can never pay


def test_net_saving_arithmetic():
    r = semantic_cache_net_saving(requests=10_000, hit_rate=0.3, llm_cost=0.002, embedding_cost=0.00001)
    assert r["hits"] == pytest.approx(3_000)
    assert r["gross_saving"] == pytest.approx(6.0)
    assert r["embedding_spend"] == pytest.approx(0.1)
    assert r["false_hit_penalty"] == 0.0
    assert r["net_saving"] == pytest.approx(5.9) and r["pays_off"] is True
    assert r["break_even_hit_rate"] == pytest.approx(0.005)


def test_false_hits_can_sink_the_saving():
    kw = dict(requests=10_000, hit_rate=0.3, llm_cost=0.002, embedding_cost=0.0)
    ok = semantic_cache_net_saving(**kw, false_hit_rate=0.01, false_hit_penalty=0.05)
    assert ok["false_hits"] == pytest.approx(30) and ok["false_hit_penalty"] == pytest.approx(1.5)
    assert ok["net_saving"] == pytest.approx(4.5)
    bad = semantic_cache_net_saving(**kw, false_hit_rate=0.05, false_hit_penalty=0.05)
    assert bad["net_saving"] < 0 and bad["pays_off"] is False
    assert math.isinf(bad["break_even_hit_rate"])  # each hit loses money on average: no hit rate helps


def test_break_even_with_false_hits_is_where_net_crosses_zero():
    r = semantic_cache_net_saving(requests=1_000, hit_rate=0.5, llm_cost=0.01, embedding_cost=0.001,
                                  false_hit_rate=0.1, false_hit_penalty=0.02)
    h = r["break_even_hit_rate"]
    at = semantic_cache_net_saving(requests=1_000, hit_rate=h, llm_cost=0.01, embedding_cost=0.001,
                                   false_hit_rate=0.1, false_hit_penalty=0.02)
    assert at["net_saving"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kwargs,field", [
    (dict(requests=-1), "requests"),
    (dict(hit_rate=1.2), "hit_rate"),
    (dict(hit_rate=-0.1), "hit_rate"),
    (dict(llm_cost=-0.01), "llm_cost"),
    (dict(embedding_cost=-1e-6), "embedding_cost"),
    (dict(false_hit_rate=2), "false_hit_rate"),
    (dict(false_hit_penalty=-5), "false_hit_penalty"),
    (dict(hit_rate="0.3"), "hit_rate"),
])
def test_invalid_inputs_name_the_field(kwargs, field):
    base = dict(requests=100, hit_rate=0.3, llm_cost=0.01, embedding_cost=0.0001)
    base.update(kwargs)
    with pytest.raises(ConfigError) as info:
        semantic_cache_net_saving(**base)
    assert info.value.field == field and isinstance(info.value, ValueError)


def test_break_even_validates_too():
    with pytest.raises(ConfigError) as info:
        break_even_hit_rate(-1, 0.01)
    assert info.value.field == "embedding_cost"
    with pytest.raises(ConfigError) as info:
        break_even_hit_rate(0.001, 0)
    assert info.value.field == "llm_cost"


@pytest.mark.parametrize("field", ["requests", "llm_cost", "embedding_cost", "false_hit_penalty"])
def test_infinite_amounts_are_refused_not_turned_into_nan(field):
    args = {"requests": 100, "hit_rate": 0.5, "llm_cost": 0.01, "embedding_cost": 0.0001, "false_hit_rate": 0.0,
            "false_hit_penalty": 0.0, field: float("inf")}
    with pytest.raises(ConfigError, match=f"^{field}=inf is invalid: allowed a finite number >= 0"):
        semantic_cache_net_saving(**args)
