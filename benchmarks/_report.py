"""How the benchmarks print their results: one JSON object with ``--json``, else aligned lines."""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping, TypeVar

T = TypeVar("T")


def emit(out: Mapping[str, Any], as_json: bool, width: int = 34) -> None:
    if as_json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:{width}s} {value}")


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``fn(*args)`` and the seconds it took: one run, for benchmarks that time a new way and the
    way it replaced in the same process (ratios, not absolute times, carry over between machines)."""
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def speedup(slow_s: float, fast_s: float, digits: int = 1) -> float | None:
    """How many times faster, rounded; None when the fast way took no measurable time."""
    return round(slow_s / fast_s, digits) if fast_s else None
