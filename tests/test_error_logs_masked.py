"""The gateway's error log lines (an internal error, a ledger or its sink that failed) carry the
failure's traceback with PII masked and credentials hidden, as the request log does: a database
sink's error quotes the row it could not write ("Failing row contains (…)"), the answer with the
caller's own e-mail put back in it."""
from __future__ import annotations

import io
import json
import logging

import pytest

from llmlab import Deployment, FixedRouter, Ledger
from llmlab.logs import JsonFormatter

EMAIL = "kim.minsu@example.com"
KEY = "sk-proj-0123456789abcdefSECRETKEY"


@pytest.fixture
def error_log():
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("llmlab")
    logger.addHandler(handler)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)


def _failing_row(outcome):
    raise ValueError(f"null value in column violates not-null constraint; Failing row contains ({outcome.text})")


def test_a_failing_sinks_error_is_logged_with_the_pii_masked(make_gateway, driver, error_log):
    driver.default = lambda call: "We will write to " + call.messages[-1]["content"].split()[-1]
    gw = make_gateway(ledger=Ledger(sink=_failing_row))
    out = gw.complete(f"Please write to {EMAIL}")
    assert out.text == f"We will write to {EMAIL}"  # the caller still gets its own value back
    lines = [json.loads(line) for line in error_log.getvalue().splitlines()]
    failed = [line for line in lines if line["message"].startswith("llmlab ledger sink failed")]
    assert failed and "Failing row contains (We will write to [EMAIL_1])" in json.dumps(failed)
    assert EMAIL not in error_log.getvalue()


def test_an_internal_errors_message_and_log_hide_pii_and_keys(make_gateway, driver, error_log):
    class Router(FixedRouter):  # a router of one's own that fails quoting what it was given
        def decide(self, request):
            raise RuntimeError(f"cannot route {request.metadata['owner']} with {KEY}")
            yield

    gw = make_gateway(deployments=[Deployment("gpt-4o", "gpt-4o", params={"api_key": KEY})], router=Router("gpt-4o"),
                      fallbacks={})
    out = gw.complete("hello", metadata={"owner": EMAIL})
    assert out.error.code == "gateway_error" and "cannot route" in out.error.message
    text = error_log.getvalue() + out.error.message
    assert "llmlab internal error" in text and "RuntimeError" in text and "Traceback" in text
    assert EMAIL not in text and KEY not in text
