"""The guardrail stage protocol: what the pipeline calls, and what a guard returns.

Guards are plain objects with no I/O, like the rest of the pipeline's stages: they take
messages (or an answer) and return a *verdict*. The pipeline, not the guard, decides what a
verdict means for the request (refuse, continue with rewritten messages, unmask the answer).
Keeping the verdicts small frozen dataclasses makes them cheap to log and easy to assert on.

가드레일 단계의 프로토콜입니다. 가드는 I/O 없이 메시지(또는 답변)를 받아 판정(verdict)을
돌려줄 뿐이고, 요청을 거절할지·마스킹된 메시지로 계속할지는 파이프라인이 결정합니다.

Rule for every guard: a `Finding.detail` must never contain the raw sensitive value (the
e-mail address, the card number, the leaked key). Findings end up in logs and ledgers; a
guard that leaks what it was asked to hide would be worse than no guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from .._fastinit import fast_frozen_init
from ..errors import ConfigError

__all__ = [
    "Finding",
    "GuardrailConfigError",
    "InputGuard",
    "InputVerdict",
    "OutputGuard",
    "OutputVerdict",
    "check_flag",
    "check_has",
    "check_name",
    "check_strings",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})


class GuardrailConfigError(ConfigError):
    """A guard was configured with a value it cannot work with.

    Raised at construction time, never per request, so a typo in a config file fails at
    start-up. The message names the field, the allowed values and what was given.
    """

    def __init__(self, field: str, allowed: Any, value: Any) -> None:
        if isinstance(allowed, (tuple, list, frozenset, set)):
            allowed_text = "one of " + ", ".join(repr(a) for a in allowed)
        else:
            allowed_text = str(allowed)
        super().__init__(field, value, allowed_text)
        self.allowed = allowed
        self.args = (f"{field} must be {allowed_text} (got {value!r})",)

    def __str__(self) -> str:
        return self.args[0]


def check_strings(field: str, value: Any, what: str = "non-empty strings", *, options: Iterable[str] | None = None,
                  at_least_one: bool = False) -> tuple[str, ...]:
    """``value`` as a tuple of strings, else :class:`GuardrailConfigError` naming ``field``.

    A bare string is refused, not read as a collection: ``blocked_terms="password"`` used to
    become the letters p, a, s … and ``roles="user"`` the roles u, s, e, r, so the guard quietly
    matched nothing.  So are None, a mapping and anything not iterable.  Each item must be a
    non-empty string (one of ``options`` when given); ``at_least_one`` refuses an empty
    collection, for settings where none means a guard that never acts.
    """
    allowed = f"a list of {what}" + (" (at least one)" if at_least_one else "")
    if isinstance(value, (str, bytes, bytearray)):
        raise GuardrailConfigError(field, f"{allowed}, not a bare string (write [{value!r}])", value)
    if value is None or isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise GuardrailConfigError(field, allowed, value)
    items = tuple(value)
    known = None if options is None else tuple(options)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise GuardrailConfigError(field, allowed, item)
        if known is not None and item not in known:
            raise GuardrailConfigError(field, known, item)
    if at_least_one and not items:
        raise GuardrailConfigError(field, allowed, value)
    return items


def check_flag(field: str, value: Any) -> bool:
    """True or False, else :class:`GuardrailConfigError` (``"no"`` would be read as true)."""
    if not isinstance(value, bool):
        raise GuardrailConfigError(field, "True or False", value)
    return value


def check_name(field: str, value: Any) -> str:
    """A guard's name (it labels findings and log lines): a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise GuardrailConfigError(field, "a non-empty string", value)
    return value


def check_has(field: str, value: Any, method: str, allowed: str) -> Any:
    """``value`` when it has a callable ``method`` (a detector, a masker), else
    :class:`GuardrailConfigError`: a wrong object failed only on the first request that needed it."""
    if not callable(getattr(value, method, None)):
        raise GuardrailConfigError(field, allowed, value if isinstance(value, (str, int, float, type(None)))
                                   else type(value).__name__)
    return value


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a guard noticed.

    `kind` is a dotted category (`pii.email`, `injection.override`, `output.secret`);
    `detail` is a human-readable note that never repeats the sensitive value; `start`/`end`
    are character offsets in the text that was checked (-1 when not applicable).
    """

    kind: str
    detail: str
    start: int = -1
    end: int = -1


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class InputVerdict:
    """The result of an input guard.

    `messages` has the same roles, in the same order, as the input (contents possibly
    rewritten, e.g. masked); `blocked` is a reason when the request must be refused;
    `restore` maps placeholders back to originals so the answer can be unmasked.
    """

    messages: tuple[dict, ...]
    blocked: str | None = None
    findings: tuple[Finding, ...] = ()
    restore: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class OutputVerdict:
    """The result of an output guard: the (possibly redacted) text and whether to block."""

    text: str
    blocked: str | None = None
    findings: tuple[Finding, ...] = ()


@runtime_checkable
class InputGuard(Protocol):
    """A stage run on the request's messages before any model (or cache) sees them."""

    name: str

    def check_input(self, messages: Sequence[Mapping[str, str]]) -> InputVerdict: ...


@runtime_checkable
class OutputGuard(Protocol):
    """A stage run on the answer text before it is returned (and before it is cached)."""

    name: str

    def check_output(self, text: str) -> OutputVerdict: ...
