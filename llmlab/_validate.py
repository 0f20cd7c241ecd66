"""Small validators that turn bad settings into :class:`ConfigError` naming the field."""
from __future__ import annotations

import math
from typing import Any, Sequence

from .errors import ConfigError


def number(field: str, value: Any, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, allow_none: bool = False) -> float | None:
    """Return ``value`` as a float if it lies in the range, else raise ConfigError."""
    if value is None and allow_none:
        return None
    lo_txt = "-inf" if lo is None else f"{lo:g}"
    hi_txt = "inf" if hi is None else f"{hi:g}"
    allowed = f"a number in {'(' if lo_open else '['}{lo_txt}, {hi_txt}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, allowed)
    v = float(value)
    if math.isnan(v) or (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        raise ConfigError(field, value, allowed)
    return v


def amount(field: str, value: Any) -> float:
    """A finite quantity >= 0 (money, counts): infinity would turn 0 × inf into NaN downstream."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ConfigError(field, value, "a finite number >= 0")
    return float(value)


def duration(field: str, value: Any, *, zero: bool = True) -> float:
    """A finite number of seconds, >= 0 (``zero=False``: > 0).  Infinity is no duration: a live
    call's timer or sleep given one failed with "timestamp out of range" (or slept forever)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (not zero and value == 0):
        raise ConfigError(field, value, f"a finite number of seconds {'>=' if zero else '>'} 0")
    return float(value)


def positive(field: str, value: Any, *, allow_none: bool = False) -> float | None:
    return number(field, value, lo=0.0, lo_open=True, allow_none=allow_none)


def non_negative(field: str, value: Any, *, allow_none: bool = False) -> float | None:
    return number(field, value, lo=0.0, allow_none=allow_none)


def probability(field: str, value: Any) -> float:
    return number(field, value, lo=0.0, hi=1.0)  # type: ignore[return-value]


def integer(field: str, value: Any, *, lo: int = 0, hi: int | None = None) -> int:
    allowed = f"an integer >= {lo}" + ("" if hi is None else f" and <= {hi}")
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise ConfigError(field, value, allowed)
    return value


def flag(field: str, value: Any) -> bool:
    """True or False, nothing truthy: ``keep="no"`` would read as True."""
    if not isinstance(value, bool):
        raise ConfigError(field, value, "True or False")
    return value


def choice(field: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ConfigError(field, value, "one of " + ", ".join(repr(o) for o in options))
    return value


def key_name(field: str, key: Any, what: str) -> str:
    """A key requests are matched by (a tenant id, a plan): a non-empty string.  Any other key
    could never match a request, so its setting would silently never apply."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{field} key", key,
                          f"{what}: a non-empty string, as requests carry (this key never matches)")
    return key


def first_few(names: Sequence[str], most: int) -> str:
    """``names`` comma-separated for a message, the first ``most`` of them and "…" for the rest:
    a log's tenants or a header may run to thousands."""
    return ", ".join(names[:most]) + (", …" if len(names) > most else "")
