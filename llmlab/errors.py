"""Typed errors.

Two families, kept apart on purpose:

* :class:`ConfigError` — raised at construction time, before any traffic flows, when a
  setting is out of range.  It names the field, the value and what is allowed, so the fix
  is obvious from the message alone.
* :class:`GatewayError` — the *outcome* of a request that could not be answered (rate
  limited, over budget, every provider failed, blocked by a guardrail, rejected by the
  provider).  The gateway returns these inside a :class:`~llmlab.effects.Outcome`; callers
  who prefer exceptions call ``outcome.raise_for_error()``.
"""
from __future__ import annotations

import math
import re
from collections import abc
from typing import Any

#: setting names whose values are credentials (``api_key``, ``x-api-key``, ``Authorization``,
#: ``aws_secret_access_key``, ``aws_web_identity_token``, ``azure_ad_token``), never repeated in a
#: message; not ``max_tokens`` or ``input_cost_per_token``
_SECRET_NAME = re.compile(
    r"^(?:.*[_\-.])?(?:api[_-]?key|access[_-]?key|secret(?:[_-]?access)?[_-]?key|private[_-]?key|secret|password|"
    r"passwd|credentials?|authorization|auth|(?:access|auth|bearer|refresh|session|id|identity|ad|api)[_-]?token)$|"
    r"^(?:key|token)$", re.IGNORECASE)
#: credentials written inside text: OpenAI-style keys, bearer tokens, a URL's user:password@
_SECRET_TEXT = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*"
                          r"|(?<=://)[^/@\s:]*:[^/@\s]+(?=@)")


def is_secret_name(name: Any) -> bool:
    return isinstance(name, str) and _SECRET_NAME.match(name) is not None


def redact_text(text: str) -> str:
    """``text`` with key-shaped strings, bearer tokens and URL passwords replaced by ``***``."""
    return _SECRET_TEXT.sub("***", text)


def shown(field: str, value: Any) -> Any:
    """``value`` as an error message may repeat it (applications log these messages): a
    message's text only by its shape (it may hold PII), credentials hidden — the value of a
    credential-named field or key, at any depth, and credentials written inside text."""
    if isinstance(value, _Shape):  # already described by its shape
        return value
    if field.startswith(("messages", "prompt", "params.stop", "params.user")) and not field.endswith((".role", ".type")) and \
            not isinstance(value, (type(None), bool, int, float)):
        size = f" of length {len(value)}" if hasattr(value, "__len__") else ""
        return _Shape(f"<{type(value).__name__}{size}>")
    if is_secret_name(re.split(r"[.\[]", field)[-1].strip("]'\"")) and value is not None:
        return _Shape("***")
    return _hidden(value)


def _hidden(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth < 4 and isinstance(value, (dict, abc.Mapping)):
        return {k: "***" if is_secret_name(k) else _hidden(v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, (list, tuple)):
        items = [_hidden(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


class _Shape(str):
    def __repr__(self) -> str:
        return str(self)


def type_shape(value: Any) -> _Shape:
    """A value named by its type alone (``<list>``): what was wrong with it, not what it says."""
    return _Shape(f"<{type(value).__name__}>")


def _rebuild(cls: type, args: tuple, state: dict) -> "LLMLabError":
    """Unpickle an llmlab error without calling its ``__init__`` (whose signature varies)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class LLMLabError(Exception):
    """Base class of every error llmlab raises on purpose.

    Picklable whatever a subclass's ``__init__`` takes: a sweep's worker processes send their
    errors back to the parent, and a default-pickled error whose ``__init__`` has required
    arguments fails to unpickle there (the pool then reports only that a worker broke).
    """

    def __reduce__(self) -> tuple:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class ConfigError(LLMLabError, ValueError):
    """A setting is invalid.  ``field`` names it, ``allowed`` says what would be accepted."""

    def __init__(self, field: str, value: Any, allowed: str, hint: str = "") -> None:
        self.field = field
        #: as the message shows it, credentials hidden (as InvalidRequest's: an application, or a
        #: sweep's worker pickling the error to its parent, keeps the attributes the message hides)
        self.value = shown(field, value)
        self.allowed = allowed
        self.hint = hint
        message = f"{field}={self.value!r} is invalid: allowed {allowed}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class UnknownModelPrice(ConfigError):
    """A model has no price.  llmlab never silently prices an unknown model at $0."""

    def __init__(self, model: str, where: str = "the Gateway") -> None:
        super().__init__(
            "model",
            model,
            "a model with a known price",
            hint=(
                f"no price for {model!r}: add one with "
                f"PriceBook.default().with_overrides({{{model!r}: (input_usd_per_1m, output_usd_per_1m)}})"
                f" or pass prices= to {where}"
            ),
        )
        self.model = model


class GatewayError(LLMLabError):
    """A request ended without an answer.  ``retry_after_s`` tells the caller when to retry."""

    code: str = "gateway_error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def user_message(self) -> str:
        """A sentence fit to show an end user (no internals, no provider names)."""
        if self.retry_after_s is not None:
            return f"The assistant is temporarily unavailable. Please retry in {self.retry_after_s:.0f} s."
        return "The assistant is temporarily unavailable. Please retry shortly."


class RateLimited(GatewayError):
    """Refused by the tenant's rate limit.  A request larger than the whole per-minute limit can
    never pass (``too_large``): no retry hint, and the fix is a smaller ``max_tokens``."""

    code = "rate_limited"

    def __init__(self, tenant: str, limit: str, retry_after_s: float, tokens: int | None = None) -> None:
        self.too_large = math.isinf(retry_after_s)
        if self.too_large:
            message = (f"tenant {tenant!r}: this request ({tokens if tokens is not None else '?'} tokens at worst) is "
                       f"larger than the whole {limit} limit; lower max_tokens")
        else:
            message = f"tenant {tenant!r} refused by the rate limiter ({limit})"
        super().__init__(message, retry_after_s=None if self.too_large else retry_after_s)
        self.tenant = tenant
        self.limit = limit

    @property
    def user_message(self) -> str:
        # not "temporarily unavailable": nothing is down, this caller sent more than its plan allows
        if self.too_large:
            return "This request is too large for your plan's rate limit."
        # whole seconds of the wait to the millisecond: the limiter rounds its hint up by a microsecond
        # (llmlab.ratelimit.retry_margin_s), and a 30 s wait must not read "retry in 31 s"
        wait = f"in {math.ceil(round(self.retry_after_s, 3))} s" if self.retry_after_s is not None else "shortly"
        return f"Too many requests for your plan right now. Please retry {wait}."


class Overloaded(GatewayError):
    """The gateway already works on as many requests as its :class:`~llmlab.admission.Admission`
    allows and this one found no room to wait, or waited too long.  Refused before any provider
    call, budget hold or breaker count: an overload sheds load instead of spreading failure."""

    code = "overloaded"

    @property
    def user_message(self) -> str:
        wait = f"in {max(1, math.ceil(self.retry_after_s))} s" if self.retry_after_s is not None else "shortly"
        return f"The assistant is busy right now. Please retry {wait}."


class BudgetExceeded(GatewayError):
    """A tenant's monthly cap cannot cover the request's worst case.

    ``reserved_usd`` is what requests still in flight have reserved.  When the request would fit
    once they settle (``spend + needed <= cap``), the refusal is temporary: ``retry_after_s`` is
    set and the user is told to retry, not that the month's budget is gone.
    """

    code = "budget_exceeded"
    #: seconds to wait when only in-flight reservations stand in the way
    IN_FLIGHT_RETRY_S = 2.0

    def __init__(self, tenant: str, spend_usd: float, cap_usd: float, reset_at: float, needed_usd: float,
                 reserved_usd: float = 0.0) -> None:
        self.temporary = reserved_usd > 0 and spend_usd + needed_usd <= cap_usd
        self.too_large = needed_usd > cap_usd  # no spending pattern lets it through: the request must shrink
        held = f" and ${reserved_usd:.4f} is reserved by requests in flight" if reserved_usd > 0 else ""
        fix = "; the request alone exceeds the cap: lower max_tokens or route it to a cheaper model" \
            if self.too_large else ""
        super().__init__(
            f"tenant {tenant!r} would exceed its monthly cap: spent ${spend_usd:.4f} of ${cap_usd:.4f}{held}, "
            f"this request may cost up to ${needed_usd:.4f}{fix}",
            retry_after_s=self.IN_FLIGHT_RETRY_S if self.temporary else None,
        )
        self.tenant = tenant
        self.spend_usd = spend_usd
        self.cap_usd = cap_usd
        self.reset_at = reset_at
        self.needed_usd = needed_usd
        self.reserved_usd = reserved_usd

    @property
    def user_message(self) -> str:
        if self.temporary:
            return "Your organisation's AI budget is fully committed to requests in progress. Please retry shortly."
        if self.too_large:
            return "This request is too large for your organisation's AI budget. Please ask for a shorter answer."
        return "Your organisation has reached its monthly AI budget. It resets at the start of next month."


class BudgetUnavailable(GatewayError):
    """The shared budget store could not be reached and budgets fail closed."""

    code = "budget_unavailable"

    def __init__(self, tenant: str, retry_after_s: float = 5.0) -> None:
        super().__init__(f"budget check for tenant {tenant!r} unavailable (budgets fail closed)",
                         retry_after_s=retry_after_s)
        self.tenant = tenant


class AllProvidersFailed(GatewayError):
    """Every deployment of the chain failed, was skipped by its open breaker, or was too small
    for the prompt, and no last-resort answer was cached.  ``retry_after_s`` is the longest
    ``Retry-After`` a provider sent or the time until an open breaker of the request's own
    deployments lets calls through (5 s when neither applies)."""

    code = "all_providers_failed"


class ClientDisconnected(GatewayError):
    """The caller went away mid-request: closed the stream or cancelled the task.

    The gateway still records the request (one outcome per request, in the ledger) and charges
    what it was billed: ``partial`` is the streamed part of the answer on ``deployment`` (its
    tokens estimated from the text the caller received: a lower bound of what the provider bills);
    ``attempts`` the calls the interrupted fallback chain had already made (a billed, cut stream
    before a retry's sleep or a fallback's StreamReset), which its result would have carried;
    ``race`` the other call of a hedged race decided before the caller left
    (:class:`~llmlab.effects.RaceDecided`: its bill, and whether ``partial`` is the hedge's).
    """

    code = "client_disconnected"

    def __init__(self, message: str = "the client left before the request finished", *, partial: Any = None,
                 deployment: Any = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.deployment = deployment
        self.attempts: list[Any] = []
        self.race: Any = None


class ProviderRejected(GatewayError):
    """The provider refused the request itself (a bad request), or no deployment of the chain takes
    the gateway's credentials (each refused its key, or is skipped by the breaker a refused key
    opened): retrying cannot help until the request or the keys are fixed."""

    code = "provider_rejected"

    @property
    def user_message(self) -> str:
        return "The request could not be processed."


class GuardrailBlocked(GatewayError):
    """An input guard (prompt injection) or an output guard (blocked terms, a leaked secret)
    refused the request or its answer; ``message`` names the guard and the finding."""

    code = "guardrail_blocked"

    @property
    def user_message(self) -> str:
        return "This request cannot be processed because it violates the usage policy."


class InvalidRequest(LLMLabError, ValueError):
    """The request itself is malformed (for example an empty prompt)."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        #: as the message shows it: a message's text by its shape, credentials hidden (an
        #: application that logs the error's attributes must not log what the message hides)
        self.value = shown(field, value)
        self.allowed = allowed
        super().__init__(f"{field}={self.value!r} is invalid: allowed {allowed}")


class MissingExtra(LLMLabError, ImportError):
    """A feature needs an optional dependency group that is not installed.

    ``extra`` is the group to install (``pip install 'llmlab[<extra>]'``), ``package`` the missing
    module.  An ``ImportError`` too, so code that guards an optional import keeps working; a plain
    ``ModuleNotFoundError`` from deep inside llmlab named the module but not which extra brings it.
    """

    def __init__(self, feature: str, package: str, extra: str, detail: str = "") -> None:
        self.feature = feature
        self.package = package
        self.extra = extra
        message = f"{feature} needs the {package!r} package: pip install 'llmlab[{extra}]'"
        if detail:
            message += f" ({detail})"
        super().__init__(message, name=package)


def require_extra(feature: str, package: str, extra: str) -> None:
    """Raise :class:`MissingExtra` unless ``package`` can be imported (it is not imported here)."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise MissingExtra(feature, package, extra)
