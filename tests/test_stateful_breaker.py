"""Model-based (stateful) test of the circuit breaker: hypothesis admits calls, finishes them with
every kind of result, cancels them, loses them, lets time pass (its own clock) and sends bursts of
requests at the instant a cooldown ends, against a reference written here from the docstrings of
:class:`llmlab.fallback.CircuitBreaker` and :func:`llmlab.fallback.judge` and the README:

* closed → open after ``failure_threshold`` consecutive failures, or when at least ``min_calls``
  of the last ``window`` calls hold a failure share ≥ ``failure_ratio`` (with ``slow_call_s``: a
  slow share ≥ ``slow_call_ratio``);
* open: every call skipped until ``cooldown_s`` has passed, then *one* probe at a time — however
  many requests arrive at that instant; a probe that answers (fast) closes it, a failed or slow
  one opens it again for another cooldown;
* a 429 or params refused before sending give no verdict (a probe's slot goes back); a bad request
  or a context overflow is the request's fault, a success; refused credentials and a model that is
  gone (404) are failures; a hedge's cancelled loser gives no verdict unless it was slow;
* a verdict counts only in the generation (state) that admitted its call; a cancelled call gives
  its probe slot back; a call that never comes back holds its slot (live calls always end, by their
  timeout at the latest);
* a streamed half-open probe is judged at its first token (a success, slow past ``slow_call_s``);
  when that closed the breaker, the call's end counts as a call of the closed state, else (opened
  again) it has had its verdict.  A first token of any other call changes nothing.
"""
from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from llmlab.effects import Call, CallError, CallResult, Deployment, ErrorKind
from llmlab.fallback import CircuitBreaker, _verdict

SETTINGS = settings(max_examples=150, stateful_step_count=50, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

CONFIGS = [
    dict(failure_threshold=3, failure_ratio=0.5, window=6, min_calls=4, cooldown_s=10.0),
    dict(failure_threshold=2, failure_ratio=1.0, window=4, min_calls=4, cooldown_s=0.0),
    dict(failure_threshold=5, failure_ratio=0.4, window=5, min_calls=3, cooldown_s=5.0, slow_call_s=2.0,
         slow_call_ratio=0.5),
    dict(failure_threshold=1, failure_ratio=0.5, window=20, min_calls=10, cooldown_s=30.0, slow_call_s=1.0,
         slow_call_ratio=1.0),
]
RESULTS = ["ok", *[k for k in ErrorKind if k is not ErrorKind.CIRCUIT_OPEN]]
FAILURES = {ErrorKind.TIMEOUT, ErrorKind.SERVER, ErrorKind.OVERLOADED, ErrorKind.CONNECTION, ErrorKind.MALFORMED,
            ErrorKind.AUTH, ErrorKind.NOT_FOUND}
CALL = Call(Deployment("a", "gpt-4o"), ({"role": "user", "content": "q"},), {})


class Reference:
    """The breaker as its documentation describes it, in plain terms."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = {"slow_call_s": None, "slow_call_ratio": 0.5, **cfg}
        self.state, self.generation, self.opened_at = "closed", 0, 0.0
        self.consecutive = 0
        self.recent: list[tuple[bool, bool]] = []  # (failed, slow), the last `window` calls
        self.probe_out = False
        self.times_opened = self.slow_opens = 0

    def _move(self, state: str) -> None:
        self.state, self.generation = state, self.generation + 1

    def admit(self, now: float) -> int | None:
        if self.state == "open" and now - self.opened_at >= self.cfg["cooldown_s"]:
            self._move("half_open")
            self.probe_out = False
        if self.state == "closed":
            return self.generation
        if self.state == "half_open" and not self.probe_out:
            self.probe_out = True
            return self.generation
        return None

    def _share(self, index: int) -> float:
        if len(self.recent) < self.cfg["min_calls"]:
            return 0.0
        return sum(r[index] for r in self.recent) / len(self.recent)

    def _too_slow(self) -> bool:
        return self.cfg["slow_call_s"] is not None and self._share(1) >= self.cfg["slow_call_ratio"]

    def _open(self, now: float, slow: bool) -> None:
        self.times_opened += 1
        self.slow_opens += slow
        self._move("open")
        self.opened_at = now
        self.probe_out = False

    def _push(self, failed: bool, slow: bool) -> None:
        self.recent = (self.recent + [(failed, slow)])[-self.cfg["window"]:]

    def success(self, now: float, slow: bool) -> None:
        self.consecutive = 0
        self._push(False, slow)
        if self.state == "half_open":
            if slow:
                self._open(now, True)
            else:
                self._move("closed")
                self.recent, self.probe_out = [], False
        elif slow and self._too_slow():
            self._open(now, True)

    def failure(self, now: float, slow: bool) -> None:
        self.consecutive += 1
        self._push(True, slow)
        if self.state == "half_open" or self.consecutive >= self.cfg["failure_threshold"] \
                or self._share(0) >= self.cfg["failure_ratio"]:
            self._open(now, False)
        elif self._too_slow():
            self._open(now, True)

    def verdict(self, ticket: int, result: str | ErrorKind, took: float, now: float) -> None:
        if ticket != self.generation:
            return  # a call admitted before the breaker changed state says nothing of the present
        slow = self.cfg["slow_call_s"] is not None and took > self.cfg["slow_call_s"]
        if result == "ok":
            self.success(now, slow)
        elif result in (ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_WINDOW):
            self.success(now, False)
        elif result in FAILURES:
            self.failure(now, slow)
        elif result is ErrorKind.CANCELLED and slow:
            self.success(now, True)
        else:  # a 429, params refused before sending, a hedge's fast loser: no verdict
            self.release(ticket)

    def first_token(self, ticket: int, took: float, now: float) -> int | None:
        if self.state != "half_open" or ticket != self.generation:
            return ticket
        self.success(now, self.cfg["slow_call_s"] is not None and took > self.cfg["slow_call_s"])
        return self.generation if self.state == "closed" else None

    def release(self, ticket: int) -> None:
        if ticket == self.generation:
            self.probe_out = False


def outcome(result: str | ErrorKind, took: float) -> CallResult | CallError:
    if result == "ok":
        return CallResult("answer", 5, 5, took, took)
    return CallError(result, "scripted", took)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_700_000_000.0
        self.in_flight: list[int] = []  # tickets of calls admitted and not yet finished
        self.lost: list[int] = []       # calls that never came back
        self.streaming: list[int] = []  # streamed calls whose first token came: the tickets their end counts with

    @initialize(cfg=st.sampled_from(CONFIGS))
    def build(self, cfg: dict) -> None:
        self.breaker = CircuitBreaker(**cfg)
        self.ref = Reference(cfg)

    def _admit(self) -> None:
        got, expected = self.breaker.admit(self.now), self.ref.admit(self.now)
        assert (got is None) == (expected is None), (got, expected, self.breaker, self.ref.state)
        if got is not None:
            self.in_flight.append(got)

    @rule()
    def request(self) -> None:
        self._admit()

    @rule(n=st.integers(2, 6))
    def burst_when_the_cooldown_ends(self, n: int) -> None:
        """Several requests at once, the instant the cooldown is over: one probe goes out."""
        if self.breaker.state == CircuitBreaker.OPEN:
            self.now = max(self.now, self.breaker.opened_at + self.breaker.cooldown_s)
        before = len(self.in_flight)
        for _ in range(n):
            self._admit()
        if self.breaker.state == CircuitBreaker.HALF_OPEN:
            assert len(self.in_flight) - before <= 1

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10), result=st.sampled_from(RESULTS), took=st.sampled_from([0.1, 1.5, 3.0]))
    def call_returns(self, i: int, result: str | ErrorKind, took: float) -> None:
        ticket = self.in_flight.pop(i % len(self.in_flight))
        self.now += 0.001
        _verdict(self.breaker, ticket, CALL, outcome(result, took), self.now)
        self.ref.verdict(ticket, result, took, self.now)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10), took=st.sampled_from([0.1, 1.5, 3.0]))
    def first_token_comes(self, i: int, took: float) -> None:
        """A streamed call's first token, ``took`` after sending (as ``run_chain`` hands it on)."""
        ticket = self.in_flight.pop(i % len(self.in_flight))
        self.now += 0.001
        got, expected = self.breaker.first_token(self.now, ticket, took), self.ref.first_token(ticket, took, self.now)
        assert got == expected, (got, expected, self.breaker)
        if got is not None:  # None: the first token opened the breaker again, the call's verdict given
            self.streaming.append(got)

    @precondition(lambda self: self.streaming)
    @rule(i=st.integers(0, 10), result=st.sampled_from(RESULTS), took=st.sampled_from([0.1, 1.5, 3.0]))
    def stream_ends(self, i: int, result: str | ErrorKind, took: float) -> None:
        """A streamed call ends after its first token: judged with the ticket that token left it."""
        ticket = self.streaming.pop(i % len(self.streaming))
        self.now += 0.001
        _verdict(self.breaker, ticket, CALL, outcome(result, took), self.now)
        self.ref.verdict(ticket, result, took, self.now)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def call_cancelled(self, i: int) -> None:
        """The caller left mid-call (or the call's task was cancelled): the probe slot goes back."""
        ticket = self.in_flight.pop(i % len(self.in_flight))
        self.breaker.release_probe(ticket)
        self.ref.release(ticket)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def call_never_returns(self, i: int) -> None:
        self.lost.append(self.in_flight.pop(i % len(self.in_flight)))

    @rule(seconds=st.sampled_from([0.5, 4.0, 5.0, 10.0, 31.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def agrees_with_the_reference(self) -> None:
        if not hasattr(self, "ref"):
            return
        b, r = self.breaker, self.ref
        assert (b.state, b.generation, b.consecutive_failures, b.times_opened, b.slow_opens) == \
               (r.state, r.generation, r.consecutive, r.times_opened, r.slow_opens), (b, vars(r))
        if b.state == b.OPEN:
            assert b.opened_at == r.opened_at

    @invariant()
    def one_probe_at_a_time(self) -> None:
        if hasattr(self, "ref") and self.breaker.state == CircuitBreaker.HALF_OPEN:
            assert sum(t == self.breaker.generation for t in self.in_flight + self.lost + self.streaming) <= 1


def test_the_breaker_behaves_as_documented():
    run_state_machine_as_test(BreakerMachine, settings=SETTINGS)
