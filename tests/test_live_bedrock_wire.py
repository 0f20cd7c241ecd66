"""The live path against Amazon Bedrock's Converse API (``POST /model/<id>/converse``, JSON only:
Bedrock streams in AWS's binary event-stream format, not covered here), through litellm's
``bedrock/converse/`` provider pointed at a local server with fake AWS credentials (litellm signs
the request; nobody checks the signature).
"""
from __future__ import annotations

import pytest
from canned_http import CannedServer, running, send_json
from test_live_anthropic_wire import gateway, served

from llmlab import BudgetPolicy, Deployment, RetryPolicy

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"


def converse(text: str, stop: str = "end_turn", **usage: int) -> dict:
    counts = {"inputTokens": 11, "outputTokens": 7, **usage}
    counts["totalTokens"] = sum(counts.values())
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": stop,
            "usage": counts, "metrics": {"latencyMs": 10}}


class Bedrock(CannedServer):
    """Serves each request the next of ``replies`` (``(status, headers, body)``; the last repeats)."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict, dict]] = []
        self.hits = 0
        super().__init__()

    def reply_to(self, handler, body) -> None:
        self.hits += 1
        send_json(handler, *self.replies[min(self.hits, len(self.replies)) - 1])

    def deployment(self, *replies: tuple[int, dict, dict]) -> Deployment:
        self.replies, self.hits = list(replies), 0
        return Deployment("bedrock-claude", f"bedrock/converse/{MODEL}", {
            "api_base": self.base_url, "aws_access_key_id": "AKIAFAKEFAKEFAKE1234",
            "aws_secret_access_key": "fake-secret-fake-secret", "aws_region_name": "us-east-1"},
            price_model="claude-sonnet-4-5", timeout_s=5.0)


@pytest.fixture(scope="module")
def bedrock():
    yield from running(Bedrock)


@pytest.mark.parametrize("how", ["complete", "acomplete"])
def test_a_bedrock_answer_is_billed_what_bedrock_reported_cache_rates_included(bedrock, how):
    dep = bedrock.deployment((200, {}, converse("Hello there", inputTokens=10, outputTokens=5,
                                                cacheReadInputTokens=5_000, cacheWriteInputTokens=2_000)))
    gw = gateway(dep, budget=BudgetPolicy(caps={"t": 10.0}))
    out = served(gw, how, tenant="t")
    bill = 10 * 3e-6 + 5_000 * 0.3e-6 + 2_000 * 3.75e-6 + 5 * 15e-6
    assert out.ok and out.text == "Hello there" and out.prompt_tokens == 7_010
    assert out.cost_usd == pytest.approx(bill) and gw.budgets.spent("t", gw.clock()) == pytest.approx(bill)


@pytest.mark.parametrize("how", ["complete", "acomplete"])
def test_an_answer_a_bedrock_guardrail_stopped_is_a_typed_error_never_cached(bedrock, how):
    """``stopReason: guardrail_intervened`` (litellm: finish_reason content_filter) carries the
    guardrail's canned text: it was an answer, cached and served to later askers."""
    dep = bedrock.deployment((200, {}, converse("Sorry, the model cannot answer this.", stop="guardrail_intervened",
                                                inputTokens=40, outputTokens=9)))
    gw = gateway(dep, cache=True)
    first, second = served(gw, how), served(gw, how)
    assert not first.ok and first.error.code == "provider_rejected" and "content_filter" in str(first.error)
    assert (first.attempts[0].prompt_tokens, first.attempts[0].completion_tokens) == (40, 9)
    assert not second.ok and bedrock.hits == 2


@pytest.mark.parametrize("status, kind, error", [
    (429, "rate_limit", "ThrottlingException"), (503, "overloaded", "ServiceUnavailableException"),
    (400, "context_window", "ValidationException"), (403, "authentication", "AccessDeniedException")])
def test_bedrock_errors_map_to_their_kinds(bedrock, status, kind, error):
    message = {"ValidationException": "Input is too long for requested model."}.get(error, "no")
    dep = bedrock.deployment((status, {"x-amzn-ErrorType": f"{error}:http://internal.amazon.com/"}, {"message": message}))
    out = served(gateway(dep, retry=RetryPolicy(max_retries=0)), "complete")
    assert not out.ok and out.attempts[0].error.startswith(f"{kind}:"), out.attempts[0].error
    assert "fake-secret-fake-secret" not in str(out.error) + repr(out.attempts)
