"""A seed is one world and one world only: reproduced exactly, and never shared by another seed.

What must hold: seeds far apart draw different incidents (the outage draw used only a seed's
low 32 bits, so seeds 2**32 apart met the same outages over different traffic); a seed the
per-request draws cannot tell apart from another is refused before the run.
"""
from __future__ import annotations

import pytest

from llmlab.sim import simulate
from llmlab.sim.outages import scenario_windows
from llmlab.sim.run import MAX_SEED
from llmlab.sim.scenario import ScenarioError, load_scenario

STORMY = {"outages.incidents": True, "outages.windows": [], "gateway.cache.embedder": "hashed",
          "providers.gpt-4o.incidents.per_month": 3_000.0, "providers.gpt-4o-mini.incidents.per_month": 3_000.0}


def _incidents(seed: int) -> list[tuple[float, float, str]]:
    sc = load_scenario("b2b-saas", STORMY)
    return [(w.start_s, w.end_s, w.target) for w in scenario_windows(sc, 6 * 3600.0, seed)]


def test_seeds_2_to_the_32_apart_draw_different_incidents():
    assert _incidents(5) and _incidents(5) == _incidents(5)
    assert _incidents(5 + 2**32) != _incidents(5)
    assert _incidents(5 + 2**32) == _incidents(5 + 2**32)


@pytest.mark.parametrize("seed, replications", [(MAX_SEED + 1, 1), (MAX_SEED, 2), (2**70, 1)])
def test_a_seed_past_what_the_draws_tell_apart_is_refused_before_the_run(seed, replications):
    with pytest.raises(ScenarioError, match=r"^seed: a whole number >= 0 and <= "):
        simulate("b2b-saas", requests=10, seed=seed, replications=replications, baseline=False)


def test_the_largest_seed_runs():
    assert simulate("b2b-saas", requests=20, seed=MAX_SEED, baseline=False, overrides=STORMY).summary["seed"] == MAX_SEED


def test_two_hashed_prompts_never_share_a_random_vector():
    """A trace's hashed prompts get random vectors fixed by their text; these two texts have
    the same CRC-32, which seeded them, so they were one vector: a semantic hit at similarity 1."""
    import hashlib

    import numpy as np

    from llmlab.cache.embedders import get_embedder
    from llmlab.sim.driver import EmbedModel

    a, b = (f"<prompt sha256:{hashlib.sha256(str(i).encode()).hexdigest()}>" for i in (55773, 66418))
    model = EmbedModel(get_embedder("hashed"), opaque=[a, b])
    va, vb = (model.embed((t,)).vectors[0] for t in (a, b))
    assert abs(float(np.dot(va, vb))) < 0.5 and np.array_equal(va, model.embed((a,)).vectors[0])
