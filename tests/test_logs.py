import io
import json
import logging

from llmlab.logs import log_requests_as_json


def test_one_json_line_per_request_without_content_or_keys(make_gateway):
    stream = io.StringIO()
    handler = log_requests_as_json(stream)
    try:
        gw = make_gateway()
        gw.complete("a private question about kim@example.com", tenant="acme", plan="paid")
        gw.complete("a private question about kim@example.com", tenant="acme", plan="paid")
    finally:
        logging.getLogger("llmlab").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["cache"] for line in lines] == ["miss", "exact_hit"]
    assert lines[0]["tenant"] == "acme" and lines[0]["deployment"] == "gpt-4o" and lines[0]["cost_usd"] > 0
    assert "private question" not in stream.getvalue() and "kim@example.com" not in stream.getvalue()


def test_log_content_is_an_explicit_opt_in(make_gateway):
    stream = io.StringIO()
    handler = log_requests_as_json(stream)
    try:
        make_gateway(log_content=True).complete("hello")
    finally:
        logging.getLogger("llmlab").removeHandler(handler)
    assert json.loads(stream.getvalue())["answer"].startswith("ok: scripted answer")
