"""Structured logging: one JSON line per request from the ``llmlab`` logger.

The pipeline attaches a dict (``record.llmlab``) to each request's log record: ids, tenant,
route, cache outcome, tokens, cost, latency, error code.  Prompts and answers are never in it
unless the Gateway was built with ``log_content=True``, and provider keys never are.
"""
from __future__ import annotations

import json
import logging
from typing import IO


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
        return json.dumps(payload, ensure_ascii=False, default=str)


def log_requests_as_json(stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Attach a JSON-lines handler to the ``llmlab`` logger and return it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("llmlab")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
