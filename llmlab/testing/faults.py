"""Fault plans for the fake provider: which request gets which failure, decided without I/O.

Why a plan object instead of flags on the server: tests need two kinds of scripting. Unit tests
want *exact* sequences ("the first two calls get 429, the third succeeds") so an assertion can
name the attempt that recovered; load tests want *rates* ("5 % of calls fail") that are still
reproducible, so every random choice comes from one seeded RNG. Both are per model, because
fallback logic is about one model failing while another works.

The plan only decides; the server (`fake_provider.py`) carries the decision out. That keeps
this module testable with no sockets, the way h11 keeps HTTP logic apart from I/O.

장애 계획: 모델별로 "처음 2번은 429" 같은 결정적 시퀀스나, 시드 고정 난수에 따른 확률적 장애를
정합니다. 결정만 하고 실제 지연·오류 응답은 서버가 수행합니다.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Decision", "Fault", "FaultPlan", "ModelRule"]

ERROR_STATUSES = (400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 529)


@dataclass(frozen=True, slots=True)
class Fault:
    """One failure to inflict on one request. Build with the class methods.

    kinds: ``"status"`` (an HTTP error with OpenAI error JSON, optional ``Retry-After``),
    ``"hang"`` (never answer; the client must time out), ``"cut_stream"`` (close the connection
    after `after_chunks` SSE events, or halfway through a JSON body), ``"malformed"`` (200 with a
    body that is not valid JSON / a broken SSE event).
    """

    kind: str
    status: int = 0
    retry_after_s: float | None = None
    after_chunks: int = 0

    @classmethod
    def rate_limited(cls, retry_after_s: float | None = 1.0) -> Fault:
        """429 Too Many Requests with ``Retry-After`` (seconds) when `retry_after_s` is set."""
        return cls("status", 429, retry_after_s)

    @classmethod
    def error(cls, status: int = 500, retry_after_s: float | None = None) -> Fault:
        """Any HTTP error status, e.g. 500, 502, 503, or Anthropic's 529 "overloaded"."""
        if status not in ERROR_STATUSES:
            raise ValueError(f"Fault.error status must be one of {ERROR_STATUSES} (got {status!r})")
        return cls("status", status, retry_after_s)

    @classmethod
    def server_error(cls) -> Fault:
        return cls.error(500)

    @classmethod
    def unavailable(cls, retry_after_s: float | None = None) -> Fault:
        return cls.error(503, retry_after_s)

    @classmethod
    def overloaded(cls) -> Fault:
        return cls.error(529)

    @classmethod
    def hang(cls) -> Fault:
        return cls("hang")

    @classmethod
    def cut_stream(cls, after_chunks: int = 2) -> Fault:
        if after_chunks < 0:
            raise ValueError(f"Fault.cut_stream after_chunks must be >= 0 (got {after_chunks!r})")
        return cls("cut_stream", after_chunks=after_chunks)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @property
    def label(self) -> str:
        """Short name used in stats: ``"429"``, ``"hang"``, ``"cut_stream"``, …"""
        return str(self.status) if self.kind == "status" else self.kind


@dataclass(frozen=True, slots=True)
class Decision:
    """What the server does with one request: wait, then answer normally or inflict `fault`.

    `latency_s` is spent before the response starts (status line and headers); for streams,
    `ttft_s` is spent before the first content chunk and `chunk_delay_s` between chunks, and
    while it waits for the first content chunk a stream sends an SSE comment every
    `keepalive_s` (0: none), as OpenRouter and others keep a slow stream's connection busy.
    A non-streamed answer's body comes in :data:`TRICKLE_PIECES` pieces, each `trickle_s` after
    the last (0: at once, with its headers): the connection is never silent for long, so a
    client's per-read timeout never fires, however long the whole body takes.
    """

    latency_s: float = 0.0
    ttft_s: float = 0.0
    chunk_delay_s: float = 0.0
    fault: Fault | None = None
    keepalive_s: float = 0.0
    trickle_s: float = 0.0


#: how many pieces a trickled body comes in (see :class:`Decision`)
TRICKLE_PIECES = 10


def _check_probability(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be a number in [0, 1] (got {p!r})")
    return float(p)


def _check_seconds(name: str, s: float) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < math.inf:  # nan fails too
        raise ValueError(f"{name} must be a finite number of seconds >= 0 (got {s!r})")
    return float(s)


@dataclass
class ModelRule:
    """Timing and faults for one model (or, as `FaultPlan.default`, for every model).

    Timing fields left as None fall back to the plan's default rule. Methods return `self`, so
    rules read as sentences: ``plan.model("gpt-4o").first(2, Fault.rate_limited()).randomly(0.1, Fault.error(503))``.
    """

    latency_s: float | tuple[float, float] | None = None
    ttft_s: float | None = None
    chunk_delay_s: float | None = None
    keepalive_s: float | None = None
    trickle_s: float | None = None
    script: deque = field(default_factory=deque)
    random_faults: list[tuple[float, Fault]] = field(default_factory=list)

    def latency(self, seconds: float | None = None, *, low: float | None = None, high: float | None = None) -> ModelRule:
        """Fixed latency (`seconds`) or uniform in [`low`, `high`] drawn from the plan's RNG."""
        if seconds is not None:
            self.latency_s = _check_seconds("latency", seconds)
        elif low is not None and high is not None:
            low, high = _check_seconds("latency low", low), _check_seconds("latency high", high)
            if high < low:
                raise ValueError(f"latency high must be >= low (got low={low}, high={high})")
            self.latency_s = (low, high)
        else:
            raise ValueError("latency needs either seconds or both low and high")
        return self

    def stream_timing(self, *, ttft_s: float | None = None, chunk_delay_s: float | None = None,
                      keepalive_s: float | None = None) -> ModelRule:
        """Delay before the first streamed chunk, and between chunks; an SSE comment every
        ``keepalive_s`` while the first chunk is awaited (0: none)."""
        if ttft_s is not None:
            self.ttft_s = _check_seconds("ttft_s", ttft_s)
        if chunk_delay_s is not None:
            self.chunk_delay_s = _check_seconds("chunk_delay_s", chunk_delay_s)
        if keepalive_s is not None:
            self.keepalive_s = _check_seconds("keepalive_s", keepalive_s)
        return self

    def body_timing(self, *, trickle_s: float | None = None) -> ModelRule:
        """A non-streamed answer's body in :data:`TRICKLE_PIECES` pieces ``trickle_s`` apart,
        after headers sent at once (0: the whole body at once)."""
        if trickle_s is not None:
            self.trickle_s = _check_seconds("trickle_s", trickle_s)
        return self

    def then(self, *faults: Fault | None) -> ModelRule:
        """Append to the deterministic script: one entry per request, None = a healthy answer."""
        self.script.extend(faults)
        return self

    def first(self, n: int, fault: Fault) -> ModelRule:
        """The next `n` requests get `fault` (appended to the script)."""
        return self.then(*([fault] * n))

    def randomly(self, probability: float, fault: Fault) -> ModelRule:
        """Once the script is used up, each request gets `fault` with this probability."""
        self.random_faults.append((_check_probability(probability), fault))
        return self


class FaultPlan:
    """Per-model fault rules plus one seeded RNG. Thread-safe: the server may run in a thread.

    Resolution for a request to model M: M's script, else the default script; else M's random
    faults, then the default's, each drawn in order (first hit wins); else healthy.
    Same seed and same request order → same decisions.
    """

    def __init__(self, *, seed: int = 0, latency_s: float = 0.0, ttft_s: float = 0.0,
                 chunk_delay_s: float = 0.0, error_rate: float = 0.0, error_status: int = 500,
                 retry_after_s: float | None = 1.0, keepalive_s: float = 0.0, trickle_s: float = 0.0) -> None:
        """``retry_after_s``: the ``Retry-After`` of random 429 and 503 errors (None: no header)."""
        self.seed = seed
        self.default = ModelRule(latency_s=_check_seconds("latency_s", latency_s),
                                 ttft_s=_check_seconds("ttft_s", ttft_s),
                                 chunk_delay_s=_check_seconds("chunk_delay_s", chunk_delay_s),
                                 keepalive_s=_check_seconds("keepalive_s", keepalive_s),
                                 trickle_s=_check_seconds("trickle_s", trickle_s))
        if retry_after_s is not None:
            _check_seconds("retry_after_s", retry_after_s)
        if error_rate:
            self.default.randomly(error_rate, Fault.error(error_status, retry_after_s if error_status in (429, 503)
                                                          else None))
        self._rules: dict[str, ModelRule] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def model(self, name: str) -> ModelRule:
        """The rule for `name` (created on first use; ``"*"`` is the default rule)."""
        if name == "*":
            return self.default
        with self._lock:
            return self._rules.setdefault(name, ModelRule())

    @property
    def models(self) -> tuple[str, ...]:
        """Models that have a rule of their own."""
        with self._lock:
            return tuple(self._rules)

    def decide(self, model: str) -> Decision:
        with self._lock:
            rule = self._rules.get(model)
            rules = (rule, self.default) if rule is not None else (self.default,)
            fault: Fault | None = None
            scripted = False
            for r in rules:
                if r.script:
                    fault, scripted = r.script.popleft(), True
                    break
            if not scripted:
                for r in rules:
                    for p, candidate in r.random_faults:
                        if self._rng.random() < p:
                            fault = candidate
                            break
                    if fault is not None:
                        break
            latency = next(r.latency_s for r in rules if r.latency_s is not None)
            if isinstance(latency, tuple):
                latency = self._rng.uniform(*latency)
            return Decision(
                latency_s=latency,
                ttft_s=next(r.ttft_s for r in rules if r.ttft_s is not None),
                chunk_delay_s=next(r.chunk_delay_s for r in rules if r.chunk_delay_s is not None),
                fault=fault,
                keepalive_s=next(r.keepalive_s for r in rules if r.keepalive_s is not None),
                trickle_s=next(r.trickle_s for r in rules if r.trickle_s is not None),
            )
