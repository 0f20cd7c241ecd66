"""Deployments' credentials kept out of litellm's own log records.

llmlab never logs a deployment's params, but litellm does when its debug logging is on
(``litellm._turn_on_debug()``, ``LITELLM_LOG=DEBUG``): every call is logged as a ``curl`` command
with its headers and body.  litellm masks a header whose *name* holds ``key``, ``token``,
``secret``, ``password`` or ``authorization``, and values shaped like known keys; a credential in
any other header went out as written — ``extra_headers={"X-Gateway-Auth": "…"}`` (a proxy's or
an API gateway's own auth header), which llmlab's own redaction treats as a credential
(:func:`llmlab.errors.is_secret_name`).

:func:`remember` notes the credential-named values of the deployments a gateway is built with
(the values :func:`~llmlab.provider_errors.redact_secrets` takes out of provider errors), and
:func:`install` puts a filter on litellm's loggers that replaces them by ``***`` in each record
— its message, and the traceback it carries — before any handler sees it.  Filters on the
emitting loggers, because a filter on the root logger or on one handler does not see, or does
not cover, records litellm's loggers send elsewhere.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Mapping

from .provider_errors import _secret_values

#: the loggers litellm (and the OpenAI client under it) write requests to
LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai._base_client", "httpx")

_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first: a key is never half-replaced by one it contains
_lock = threading.Lock()


def remember(params: Iterable[Mapping[str, Any]]) -> None:
    """Note the credential-named values of these deployments' params (``api_key``, an
    ``extra_headers`` entry named like a key, token, password or auth …)."""
    global _ordered
    found = {value for p in params for value in _secret_values(p)}
    if found - _secrets:
        with _lock:
            _secrets.update(found)
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every remembered credential replaced by ``***``."""
    for value in _ordered:
        if value in text:
            text = text.replace(value, "***")
    return text


class _RedactSecrets(logging.Filter):
    """Rewrites a record whose message or traceback holds a remembered credential."""

    _format = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it as it would have
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._format.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = _RedactSecrets()


def install() -> None:
    """Put the filter on litellm's loggers (once; called when litellm is imported)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
