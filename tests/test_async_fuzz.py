"""The async API as a whole under concurrency and cancellation, and what fuzzing it found.

A seeded fuzz runs hundreds of concurrent ``acomplete`` / ``astream`` requests from many tenants
through litellm against the fault-injecting fake provider, with every stage on, cancels a random
subset at random moments, and checks the invariants that must hold once everything settled.
The regressions it found are pinned by the small deterministic tests before it.
"""
from __future__ import annotations

import asyncio

import pytest

from llmlab import CascadeRouter, Deployment, FixedRouter, Gateway, OutcomeKind, RetryPolicy, StreamReset
from llmlab.live import import_litellm
from llmlab.scripted import FakeClock
from llmlab.testing import FakeProvider, Fault, FaultPlan

QUESTION = "Where is my order 1234?"


@pytest.fixture(scope="module", autouse=True)
def _litellm():
    import_litellm()  # paid once, outside the timed parts


def read(gw: Gateway, how: str, prompt: str = QUESTION) -> tuple[list, object]:
    """Every chunk a caller of ``stream`` / ``astream`` receives, and the response."""
    if how == "stream":
        response = gw.stream(prompt)
        return list(response), response

    async def consume():
        response = gw.astream(prompt)
        return [c async for c in response], response

    return asyncio.run(consume())


def after_last_reset(chunks: list) -> str:
    """What a consumer that clears its screen at each StreamReset shows at the end."""
    resets = [i for i, c in enumerate(chunks) if isinstance(c, StreamReset)]
    return "".join(c for c in chunks[resets[-1] + 1 if resets else 0:] if isinstance(c, str))


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_cut_stream_answered_from_the_last_resort_cache_is_reset_first(how):
    """A stream the provider cut midway, with no attempt after it, ends in the last-resort cached
    answer: it came straight behind the cut text, so the caller showed "Fake answer Fake answer
    from …".  Now a StreamReset comes first, as when another attempt starts over."""
    plan = FaultPlan()
    plan.model("gpt-4o").then(None, Fault.cut_stream(3))
    clock = FakeClock()
    with FakeProvider(plan) as fp:
        gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test"})],
                     router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock, cache_ttl_s=60,
                     retry=RetryPolicy(max_retries=0))
        first, _ = read(gw, how)
        clock.advance(120)  # stale: served only when every provider failed
        chunks, response = read(gw, how)
    out = response.outcome
    assert out.kind is OutcomeKind.LAST_RESORT and out.text == "".join(first)
    cut = chunks[:chunks.index(StreamReset("cache"))]
    assert cut and "".join(cut) != out.text  # the cut text was shown, then taken back
    assert after_last_reset(chunks) == out.text


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_cascade_whose_last_stage_is_cut_sends_the_earlier_stages_answer(how):
    """A cascade escalated to a streamed last stage that the provider cut; the request is served
    the earlier stage's answer ("escalation failed") — which never reached a streaming caller:
    it got the cut text only, and ``outcome.text`` said something else."""
    plan = FaultPlan()
    plan.model("gpt-4o").then(Fault.cut_stream(3))
    with FakeProvider(plan) as fp:
        params = {"api_base": fp.base_url, "api_key": "sk-test"}
        gw = Gateway([Deployment("mini", "openai/gpt-4o-mini", params), Deployment("gpt-4o", "openai/gpt-4o", params)],
                     router=CascadeRouter(["mini", "gpt-4o"], accept=lambda text, request: False), fallbacks={},
                     retry=RetryPolicy(max_retries=0))
        chunks, response = read(gw, how)
    out = response.outcome
    assert out.kind is OutcomeKind.MODEL and out.deployment == "mini"
    assert StreamReset("mini") in chunks and after_last_reset(chunks) == out.text
