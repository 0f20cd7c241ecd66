"""Structured logging: one JSON line per request from the ``llmlab`` logger.

The pipeline attaches a dict (``record.llmlab``) to each request's log record: ids, tenant,
route, cache outcome, tokens, cost, latency, error code.  Prompts and answers are never in it
unless the Gateway was built with ``log_content=True``, and provider keys never are.
"""
from __future__ import annotations

import json
import logging
import traceback
from typing import IO, Any, Callable


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object (the ``llmlab`` fields merged in when present)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                   "message": record.getMessage()}
        extra = getattr(record, "llmlab", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a traceback already formatted (and scrubbed: see log_failure)
            payload["exception"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False, default=str)


def log_requests_as_json(stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Attach a JSON-lines handler to the ``llmlab`` logger and return it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("llmlab")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def log_failure(logger: logging.Logger, message: str, exc: BaseException, scrub: Callable[[str], str],
                **extra: Any) -> None:
    """Log ``message`` at ERROR with ``exc``'s traceback as ``scrub`` leaves it (PII masked,
    credentials hidden), where a handler shows a traceback (``exc_text``; ``"exception"`` in
    :class:`JsonFormatter`'s lines).  With ``exc_info`` the traceback was formatted by the handler,
    as raised: the message of a user object that failed (a sink quoting the row it could not
    write, a router quoting the request) went to the logs as written."""
    if not logger.isEnabledFor(logging.ERROR):
        return
    fn, lno, func, _ = logger.findCaller(stacklevel=2)
    record = logger.makeRecord(logger.name, logging.ERROR, fn, lno, message, (), None, func, extra or None)
    record.exc_text = scrub("".join(traceback.format_exception(exc)).rstrip("\n"))
    logger.handle(record)
