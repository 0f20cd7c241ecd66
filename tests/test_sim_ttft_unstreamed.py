"""A turn that is not streamed shows its user nothing before the whole answer: its TTFT is its latency.

The simulated provider reported the time to its own first token whether or not the call
streamed, so b2b-saas (no streaming) read "TTFT p95 0.76 s" beside a P95 latency of 4.15 s, a
first token no user of it sees; the live driver records a call not streamed with its TTFT at its
latency, and notebook 06 says as much ("without streaming, first token is the whole answer").
An SLO on TTFT judged that invisible token.
"""
from __future__ import annotations

import numpy as np

from llmlab.sim import simulate

HASHED = {"gateway.cache.embedder": "hashed"}


def test_a_turn_not_streamed_has_its_first_token_with_its_whole_answer():
    run = simulate("b2b-saas", requests=200, seed=3, baseline=False, overrides={**HASHED, "traffic.stream": False})
    answered = run.turns[run.turns["outcome"] == "model"]
    assert len(answered) > 100
    np.testing.assert_allclose(answered["ttft_s"], answered["latency_s"], rtol=0, atol=1e-6)
    assert abs(run.summary["ttft_p95_s"] - run.summary["p95_latency_s"]) < 0.05 * run.summary["p95_latency_s"]


def test_a_streamed_turn_still_has_its_first_token_before_its_end():
    run = simulate("b2b-saas", requests=200, seed=3, baseline=False, overrides={**HASHED, "traffic.stream": True})
    answered = run.turns[run.turns["outcome"] == "model"]
    assert (answered["ttft_s"] < answered["latency_s"] - 0.05).mean() > 0.9
