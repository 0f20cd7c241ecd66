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


def test_a_failing_ledger_sink_is_logged_and_the_caller_still_gets_the_answer(make_gateway, caplog):
    """Before: the sink's exception came out of complete() (and out of the stream at its end): the
    request was served, billed and counted, and the caller lost the answer."""
    import asyncio

    from llmlab import Ledger

    class Broken(Ledger):
        def record(self, outcome):
            raise RuntimeError("database down")

    def sink(outcome):
        raise RuntimeError("queue down")

    gw = make_gateway(ledger=Ledger(sink=sink))
    with caplog.at_level(logging.ERROR, logger="llmlab"):
        assert gw.complete("hello", tenant="acme").ok
        assert "".join(gw.stream("hello again", tenant="acme"))
        assert asyncio.run(gw.acomplete("and once more", tenant="acme")).ok
    assert len(gw.ledger) == 3 and gw.ledger.spend_by_tenant()["acme"] > 0
    assert [r.getMessage() for r in caplog.records].count("llmlab ledger sink failed") == 3
    caplog.clear()
    own = make_gateway(ledger=Broken())
    with caplog.at_level(logging.ERROR, logger="llmlab"):
        assert own.complete("hello", tenant="acme").ok
    assert [r.getMessage() for r in caplog.records] == ["llmlab ledger failed to record a request"]


def test_a_sink_or_a_log_handler_added_after_the_gateway_is_built_still_hears_every_request(make_gateway):
    """Regression guard for the pipeline's shortcut past its announcement when nothing listens
    (no sink, request log off): whatever is set later is heard from the next request on."""
    from llmlab.ledger import Ledger

    notified = []

    class Notifying(Ledger):  # a notify() of its own is user code: never skipped
        def notify(self, outcome):
            notified.append(outcome.request_id)

    gw = make_gateway()
    gw.complete("one")
    heard = []
    gw.ledger.sink = heard.append
    gw.complete("two")
    assert len(heard) == 1
    gw.ledger.sink = None
    stream = io.StringIO()
    handler = log_requests_as_json(stream)
    try:
        gw.complete("three")
    finally:
        logging.getLogger("llmlab").removeHandler(handler)
    assert len(stream.getvalue().splitlines()) == 1 and len(heard) == 1
    make_gateway(ledger=Notifying()).complete("four")
    assert len(notified) == 1
