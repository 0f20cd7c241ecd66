"""Deployments' credentials kept out of litellm's own log records.

llmlab never logs a deployment's params, but litellm does when its debug logging is on
(``litellm._turn_on_debug()``, ``LITELLM_LOG=DEBUG``): every call is logged as a ``curl`` command
with its headers and body.  litellm masks a header whose *name* holds ``key``, ``token``,
``secret``, ``password`` or ``authorization``, and values shaped like known keys; a credential in
any other header went out as written — ``extra_headers={"X-Gateway-Auth": "…"}`` (a proxy's or
an API gateway's own auth header), which llmlab's own redaction treats as a credential
(:func:`llmlab.errors.is_secret_name`).

:func:`remember` notes the credential-named values of the deployments a gateway is built with
(the values :func:`~llmlab.provider_errors.redact_secrets` takes out of provider errors) for as
long as that gateway lives, and
:func:`install` puts a filter on litellm's loggers that replaces them by ``***`` in each record
— its message, and the traceback it carries — before any handler sees it.  Filters on the
emitting loggers, because a filter on the root logger or on one handler does not see, or does
not cover, records litellm's loggers send elsewhere.
"""
from __future__ import annotations

import collections
import logging
import threading
import weakref
from typing import Any, Iterable, Mapping

from .provider_errors import _secret_values

#: the loggers litellm (and the OpenAI client under it) write requests to
LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai._base_client", "httpx")

#: each remembered credential, with how many live gateways hold it
_secrets: collections.Counter[str] = collections.Counter()
_ordered: tuple[str, ...] = ()  # longest first: a key is never half-replaced by one it contains
_lock = threading.Lock()
#: the credentials of gateways collected since, to forget (appended by a finalizer, which must not
#: take ``_lock``: a collection can run inside :func:`remember` on the thread that holds it)
_gone: collections.deque[frozenset[str]] = collections.deque()


def remember(owner: object, params: Iterable[Mapping[str, Any]]) -> None:
    """Note the credential-named values of these deployments' params (``api_key``, an
    ``extra_headers`` entry named like a key, token, password or auth …) while ``owner`` (the
    gateway built with them) lives.  Kept for good, every gateway ever built added its keys: a
    service building a gateway per customer's own key held every key it had seen, and each log
    record and error text was searched for all of them (≈ 1 µs more per key and 2 KB of text)."""
    found = frozenset(value for p in params for value in _secret_values(p))
    if not found:
        return
    with _lock:
        _forget_gone()
        _secrets.update(found)
        _reorder()
    weakref.finalize(owner, _gone.append, found)


def _reorder() -> None:
    global _ordered
    _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def _forget_gone() -> None:
    """Drop the credentials of collected gateways that no live one shares (under ``_lock``)."""
    changed = False
    while _gone:
        for value in _gone.popleft():
            _secrets[value] -= 1
            if _secrets[value] <= 0:
                del _secrets[value]
                changed = True
    if changed:
        _reorder()


def redact(text: str) -> str:
    """``text`` with every credential of a live gateway replaced by ``***``."""
    if _gone:
        with _lock:
            _forget_gone()
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
