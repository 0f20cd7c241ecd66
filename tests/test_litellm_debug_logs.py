"""With litellm's own debug logging on, a deployment's credentials stay out of its log records:
litellm masks headers named like a key or token, not a proxy's own ``X-…-Auth`` header."""
from __future__ import annotations

import io
import logging

import pytest

from llmlab import Deployment, FixedRouter, Gateway, RetryPolicy
from llmlab.testing import FakeProvider
from llmlab.testing.faults import FaultPlan

KEY = "sk-proj-0123456789abcdefSECRETKEY"
GATEWAY_AUTH = "gw-auth-8c1f2e9d7b6a5"


@pytest.fixture
def litellm_debug_log():
    """litellm's loggers at DEBUG into a buffer, restored afterwards."""
    from llmlab.live import import_litellm

    import_litellm()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    loggers = [logging.getLogger(name) for name in ("LiteLLM", "openai._base_client", "httpx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)


@pytest.mark.parametrize("status", [None, 401])
def test_a_deployments_credentials_are_not_in_litellms_debug_log(litellm_debug_log, status):
    plan = FaultPlan(error_rate=1.0, error_status=status) if status else FaultPlan()
    with FakeProvider(plan) as fp:
        params = {"api_base": fp.base_url, "api_key": KEY, "extra_headers": {"X-Gateway-Auth": GATEWAY_AUTH}}
        gw = Gateway([Deployment("m", "openai/gpt-4o-mini", params, price_model="gpt-4o-mini", timeout_s=5)],
                     router=FixedRouter("m"), retry=RetryPolicy(max_retries=0))
        out = gw.complete("hello there")
        assert fp.stats.total == 1 and (out.ok if status is None else out.error.code == "provider_rejected")
    text = litellm_debug_log.getvalue()
    assert "POST Request Sent from LiteLLM" in text  # the record that printed the headers
    assert GATEWAY_AUTH not in text and KEY not in text and "X-Gateway-Auth: ***" in text



def test_credentials_are_remembered_while_their_gateway_lives_not_for_good():
    """A service that builds a gateway per customer's own key kept every key it had ever seen, and
    searched each log record and error text for all of them; a key is forgotten with the last
    gateway that holds it."""
    import gc

    from llmlab import secret_logs
    from llmlab.scripted import ScriptedDriver

    def gateway(key: str) -> Gateway:
        return Gateway([Deployment("m", "gpt-4o-mini", {"api_key": key})], router=FixedRouter("m"),
                       driver=ScriptedDriver())

    shared = "sk-shared-0123456789abcdef"
    keeper = gateway(shared)
    dropped = [gateway(f"sk-customer-{i:04d}-abcdef") for i in range(50)] + [gateway(shared)]
    assert secret_logs.redact("sk-customer-0007-abcdef") == "***"
    del dropped
    gc.collect()
    assert secret_logs.redact("key sk-customer-0007-abcdef") == "key sk-customer-0007-abcdef"
    assert not any(k.startswith("sk-customer-") for k in secret_logs._secrets)
    assert secret_logs.redact(f"key {shared}") == "key ***"  # the live gateway still holds it
    del keeper
