"""What a provider's failure means: litellm's exceptions as llmlab's error kinds.

litellm raises its own exception classes, mostly OpenAI's, whose status codes and messages vary
by provider (a 403 as a bare ``APIError``, Bedrock's 424 as a ``BadRequestError``, a refused
connection several causes deep).  The fallback chain needs one answer per failure — retry, move
on, or stop — so every exception becomes an :class:`~llmlab.effects.ErrorKind` here, with the
provider's ``Retry-After`` and a message with its credentials redacted.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import math
import re
import sys
import time
from collections import abc
from typing import Any, Mapping

from .effects import Call, CallError, ErrorKind
from .errors import is_secret_name, redact_text


def _retry_after(exc: BaseException) -> float | None:
    """The provider's ``Retry-After`` in seconds: ``retry-after-ms``, delay-seconds or an HTTP date
    (RFC 9110; a date in the past is 0).  A value that is no delay (negative, NaN, infinite,
    unparseable, or not digits with an optional fraction: ``1e300``, ``1_000``) is None, as if absent: it must not
    reach the backoff or the ledger as a number.  A delay beyond :data:`MAX_RETRY_AFTER_S` is held
    to it: "retry in 3 years" is a provider's bug, and the caller's ``user_message`` repeats it."""
    headers: Any = None
    response = getattr(exc, "response", None)
    if response is not None:
        headers = getattr(response, "headers", None)
    headers = headers or getattr(exc, "litellm_response_headers", None) or {}
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        millis = headers.get("retry-after-ms")
    except (AttributeError, TypeError):
        return None
    # OpenAI's finer hint wins, as its own SDK does; a nonsense one does not hide Retry-After
    delay = _delay(float(millis) / 1000.0) if _DECIMAL.fullmatch(str(millis).strip()) else None
    if delay is not None:
        return delay
    if value is None:
        return None
    if _DECIMAL.fullmatch(str(value).strip()):
        return _delay(float(value))
    import email.utils  # here, not at import llmlab: ~3 ms for a header form few providers send

    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=datetime.timezone.utc)
    return _delay(max(0.0, when.timestamp() - time.time()))


#: the longest a live wait lasts (a day), whatever a setting or a provider says: a call's timeout
#: (a much longer timer failed inside the HTTP client, "timestamp out of range for platform
#: time_t"), a retry's backoff, and a ``Retry-After`` ("retry in 3 years" is a provider's bug)
MAX_WAIT_S = 86_400.0
#: the longest ``Retry-After`` believed: a longer one is held to it
MAX_RETRY_AFTER_S = MAX_WAIT_S
#: a delay as written: ASCII digits (RFC 9110's delay-seconds), with a fraction as some servers
#: and OpenAI's ``retry-after-ms`` write it; no sign, exponent or digit separator
_DECIMAL = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?", re.ASCII)


def _delay(seconds: float) -> float | None:
    return min(seconds, MAX_RETRY_AFTER_S) if math.isfinite(seconds) and seconds >= 0 else None


def _refused_before_sending(exc: BaseException) -> bool:
    """The openai client could not even build the request (no API key, above all): it raises a
    bare ``openai.OpenAIError`` — every HTTP failure is a subclass — which litellm re-raises as
    a 500 ``InternalServerError``.  Retrying cannot help, and the provider was never asked."""
    bare = getattr(sys.modules.get("openai"), "OpenAIError", None)
    return bare is not None and any(type(link) is bare for link in _causes(exc, 8))


def _causes(exc: BaseException, limit: int) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, outermost first (at most ``limit``)."""
    chain = [exc]
    while len(chain) < limit:
        cause = chain[-1].__cause__ or chain[-1].__context__
        if cause is None:
            break
        chain.append(cause)
    return chain


def _status(exc: BaseException) -> int | None:
    """The HTTP status the provider answered with.  litellm raises Anthropic's 529 (and an
    ``overloaded_error`` body) as a 500 InternalServerError and keeps the 529 only in
    ``provider_status_code``: read as 500, an overloaded provider was logged as a server error."""
    upstream = getattr(exc, "provider_status_code", None)
    status = upstream if isinstance(upstream, int) and not isinstance(upstream, bool) else None
    return status if status is not None else getattr(exc, "status_code", None)


def _unwrapped(exc: BaseException) -> BaseException:
    """What failed, under litellm's ``MidStreamFallbackError``: a failure after a stream's first
    chunk comes wrapped in it, a ServiceUnavailableError whatever happened, so a dropped
    connection or a mid-stream ``api_error`` event read as ``overloaded``."""
    inner = getattr(exc, "original_exception", None)
    if type(exc).__name__ == "MidStreamFallbackError" and isinstance(inner, BaseException):
        return inner
    return exc


#: Bedrock's status for the model failing behind it (ModelErrorException, and mid-stream
#: ModelStreamErrorException, which AWS documents as "retry your request"): a server error
FAILED_DEPENDENCY = 424
#: litellm's status for a 200 from Bedrock's Converse route whose body it could not read (not
#: JSON: a proxy's page, say); Bedrock itself never answers 422.  A malformed response, retried
#: and fallen back from as on the other routes, not a request the provider rejected
UNREADABLE = 422


def classify_exception(exc: BaseException) -> ErrorKind:
    """Map litellm's (OpenAI-derived) exception classes to llmlab's error kinds."""
    from .live import import_litellm  # live imports this module: litellm's importer is looked up when needed

    litellm = import_litellm()
    exc = _unwrapped(exc)
    status = _status(exc)
    if _refused_before_sending(exc):  # a missing key: like a 401 (the next deployment has its own), not a 5xx to retry
        return ErrorKind.AUTH
    ordered = [
        ("UnsupportedParamsError", ErrorKind.UNSUPPORTED),  # a 400 litellm raises before sending
        ("ContextWindowExceededError", ErrorKind.CONTEXT_WINDOW),
        ("ContentPolicyViolationError", ErrorKind.BAD_REQUEST),
        ("RateLimitError", ErrorKind.RATE_LIMIT),
        ("Timeout", ErrorKind.TIMEOUT),
        ("AuthenticationError", ErrorKind.AUTH),
        ("PermissionDeniedError", ErrorKind.AUTH),
        ("ServiceUnavailableError", ErrorKind.OVERLOADED),
        ("BadRequestError", ErrorKind.BAD_REQUEST),
        ("NotFoundError", ErrorKind.NOT_FOUND),
        ("UnprocessableEntityError", ErrorKind.BAD_REQUEST),
        ("APIConnectionError", ErrorKind.CONNECTION),
        ("InternalServerError", ErrorKind.SERVER),
        ("BadGatewayError", ErrorKind.SERVER),
    ]
    if status == 529:
        return ErrorKind.OVERLOADED
    if status == FAILED_DEPENDENCY:  # litellm raises it as a 4xx BadRequestError: fatal, never retried
        return ErrorKind.SERVER
    if status == UNREADABLE and getattr(exc, "llm_provider", None) == "bedrock":
        return ErrorKind.MALFORMED
    if status == 429:
        return ErrorKind.RATE_LIMIT
    if status in (401, 403):  # litellm raises a bare APIError for an OpenAI-compatible server's 403
        return ErrorKind.AUTH
    if status == 404:  # the deployment's model or route is gone (a retired model, a renamed Azure
        # deployment): its fault, not the request's — read as a bad request it ended every request
        # with provider_rejected, never reaching the fallback, and the breaker counted a success
        return ErrorKind.NOT_FOUND
    if status in (None, 500) and _transport_failure(exc) is None and any(
            isinstance(cause, json.JSONDecodeError) for cause in _causes(exc, 17)):
        # a 200 whose body or stream event is not JSON: litellm raises it as a 500 (whole) or a
        # connection error (streamed), and the attempt read server_error / connection — not
        # what the provider did (a real 5xx's unreadable body is never parsed as JSON)
        return ErrorKind.MALFORMED
    timeout = getattr(litellm, "Timeout", None)
    bad_request = getattr(litellm, "BadRequestError", None)
    # a socket error under a 400 is the request's: litellm fetching the caller's image URL for
    # Anthropic or Bedrock, not the provider's connection — counted as one, a tenant's dead link
    # opened every breaker of that provider for all tenants
    if _transport_failure(exc) is not None and not (isinstance(timeout, type) and isinstance(exc, timeout)) \
            and not (isinstance(bad_request, type) and isinstance(exc, bad_request)):
        return ErrorKind.CONNECTION
    for name, kind in ordered:
        cls = getattr(litellm, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return kind
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError)):
        return ErrorKind.MALFORMED
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ErrorKind.TIMEOUT
    if isinstance(exc, (ConnectionError, OSError)):
        return ErrorKind.CONNECTION
    if isinstance(status, int) and status >= 500:
        return ErrorKind.SERVER
    return ErrorKind.SERVER


def _transport_failure(exc: BaseException) -> OSError | None:
    """The socket error at the root of ``exc``'s causes (refused, reset, unknown host), if any.

    litellm reports a refused connection or a host that does not resolve as a 500 "Connection
    error.", which read as the provider failing; the cause says what happened."""
    root = _causes(exc, 17)[-1]
    return root if isinstance(root, OSError) and not isinstance(root, TimeoutError) and root is not exc else None


def _to_error(exc: BaseException, call: Call, latency: float, partial: str = "") -> CallError:
    kind = classify_exception(exc)
    text = f"{type(exc).__name__}: {exc}"
    cause = _transport_failure(exc)
    if cause is not None and str(cause) not in text:
        text = f"{text} ({type(cause).__name__}: {cause})"
    message = redact_secrets(text, call.deployment.params)[:250]
    return CallError(kind, message, latency, _retry_after(_unwrapped(exc)), _status(_unwrapped(exc)), partial)


def redact_secrets(text: str, params: Mapping[str, Any]) -> str:
    """``text`` with the deployment's credentials, and anything shaped like a key, replaced by
    ``***``: providers echo keys in 401s ("Incorrect API key provided: sk-…"), and error text is
    kept in outcomes, the ledger and logs."""
    for value in _secret_values(params):
        text = text.replace(value, "***")
    return redact_text(text)


def _secret_values(params: Mapping[str, Any], depth: int = 0) -> list[str]:
    """The credential-named string values of ``params`` at any depth: a key in ``extra_headers``
    (``x-api-key``, ``Authorization: Token …``) is echoed by a 401 as readily as ``api_key``.
    Longest first, so that a key is not half-replaced by a shorter one it contains; with the part
    after an ``Authorization`` scheme (``Token abc…``: a provider may echo the token alone)."""
    found: list[str] = []
    for name, value in params.items():
        if isinstance(value, str):
            if len(value) >= 6 and is_secret_name(name):
                found.append(value)
                scheme, _, credential = value.partition(" ")
                if credential and len(credential) >= 6:
                    found.append(credential.strip())
        elif isinstance(value, abc.Mapping) and depth < 4:
            found += _secret_values(value, depth + 1)
    return sorted(set(found), key=len, reverse=True)
