"""Retries, circuit breakers and the ordered fallback chain.

Error classes decide what happens next:

=================  =============================================================
rate limit         retry the same deployment (waiting at least ``Retry-After``)
timeout/5xx/529    retry, then move to the next deployment
context window     skip to the next deployment with a *larger* window
auth (401/403)     no retry, the next deployment (each has its own key); a breaker failure
not found (404)    the same: the deployment's model or route is gone (retired, renamed)
bad request        stop at once with a typed error: retrying cannot help
=================  =============================================================

Backoff is exponential with full jitter and a cap, and it really waits: the chain *yields*
``Sleep`` and the driver sleeps (the lecture's sample called ``asyncio.sleep`` without
``await`` and so never waited at all).  Jitter comes from an injected ``random.Random`` so
simulations reproduce exactly.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Container, Generator, Sequence

from . import _validate as v
from .effects import FATAL, Attempt, Call, CallError, CallResult, Deployment, Effect, ErrorKind, Race, Sleep
from .errors import ClientDisconnected, ConfigError
from .hedging import Hedge, hedge_target
from .request_deadline import MIN_CALL_S, call_time_left


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-deployment retry settings.

    ``max_retries`` retries after the first try (so ``max_retries + 1`` calls at most), retry
    ``n`` (from 0) waiting a uniform draw from ``[0, min(cap_s, base_s × 2ⁿ)]`` seconds (full
    jitter), or the provider's ``Retry-After`` when that is longer.  A ``Retry-After`` longer
    than ``max_retry_after_s`` is not worth waiting for: the chain moves on to the next
    deployment instead.
    """

    max_retries: int = 2
    base_s: float = 0.5
    cap_s: float = 8.0
    max_retry_after_s: float = 20.0

    def __post_init__(self) -> None:
        v.integer("retry.max_retries", self.max_retries, lo=0, hi=20)
        v.duration("retry.base_s", self.base_s)
        v.duration("retry.cap_s", self.cap_s)
        v.duration("retry.max_retry_after_s", self.max_retry_after_s)
        if self.cap_s < self.base_s:
            raise ConfigError("retry.cap_s", self.cap_s, f">= retry.base_s ({self.base_s:g}): the cap bounds the backoff")

    def delay(self, retry_index: int, retry_after_s: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before retry number ``retry_index`` (0-based); None = don't retry here."""
        if retry_after_s is not None and retry_after_s > self.max_retry_after_s:
            return None
        backoff = rng.uniform(0.0, min(self.cap_s, self.base_s * (2.0 ** retry_index)))  # full jitter
        return max(backoff, retry_after_s or 0.0)


class CircuitBreaker:
    """Closed → open after failures → half-open probe after a cooldown → closed on success.

    Opens after ``failure_threshold`` consecutive failures, or when at least ``min_calls`` of the
    last ``window`` calls include a share of failures ≥ ``failure_ratio`` (``min_calls`` above
    ``window`` turns that rule off; with ``slow_call_s`` set it is refused).  While open, the
    deployment is skipped without a call; after ``cooldown_s`` one probe request is let through.

    A provider can also fail by answering too slowly: with ``slow_call_s`` set, a successful call
    slower than that (time to first token when streaming, whole call otherwise) is *slow*, and a
    share of slow calls ≥ ``slow_call_ratio`` in the window opens the breaker just the same; a slow
    half-open probe keeps it open.  Without it a degraded-but-answering provider trips neither a
    timeout nor the breaker, and every user waits for it (the pattern of resilience4j's
    slow-call rate).

    Every state change starts a new *generation*.  :meth:`admit` hands a call the current one as
    its ticket, and a verdict counts only in the generation that admitted its call: under real
    concurrency hundreds of calls admitted while the breaker was closed come back after it opened
    — their failures must not cut a later half-open probe short (re-opening a recovered provider
    again and again), and a late success must not close a breaker the probe has not yet cleared.
    Verdicts recorded without a ticket always count (single-caller use, teaching).
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failure_threshold: int = 5, failure_ratio: float = 0.5, window: int = 20,
                 min_calls: int = 10, cooldown_s: float = 30.0, slow_call_s: float | None = None,
                 slow_call_ratio: float = 0.5) -> None:
        self.failure_threshold = v.integer("breaker.failure_threshold", failure_threshold, lo=1)
        self.failure_ratio = v.number("breaker.failure_ratio", failure_ratio, lo=0.0, hi=1.0, lo_open=True)
        self.window = v.integer("breaker.window", window, lo=1)
        self.min_calls = v.integer("breaker.min_calls", min_calls, lo=1)
        self.cooldown_s = v.non_negative("breaker.cooldown_s", cooldown_s)
        self.slow_call_s = None if slow_call_s is None else v.positive("breaker.slow_call_s", slow_call_s)
        self.slow_call_ratio = v.number("breaker.slow_call_ratio", slow_call_ratio, lo=0.0, hi=1.0, lo_open=True)
        if self.slow_call_s is not None and self.min_calls > self.window:
            # the slow share is taken over the last `window` calls once there are `min_calls`: never.
            # breaker={"slow_call_s": 2, "window": 5} (min_calls 10 by default) never opened for slowness
            raise ConfigError("breaker.min_calls", self.min_calls, f"<= breaker.window ({self.window}) when "
                              "slow_call_s is set: the slow-call share counts once the window holds min_calls calls")
        self.state = self.CLOSED
        self.generation = 0
        self.opened_at = 0.0
        self.consecutive_failures = 0
        self._failed: list[bool] = []  # the window of recent calls: did each fail, was each slow
        self._slow: list[bool] = []
        self._probe_in_flight = False
        self.times_opened = 0
        self.slow_opens = 0  # how many of those openings were for slowness
        self.stale_verdicts = 0  # verdicts ignored because their call was admitted in an earlier generation

    def __repr__(self) -> str:
        """Its state and settings: ``gw.pipeline.breakers`` showed ``<… object at 0x…>`` each."""
        slow = ("" if self.slow_call_s is None
                else f", slow_call_s={self.slow_call_s:g}, slow_call_ratio={self.slow_call_ratio:g}")
        return (f"CircuitBreaker(state={self.state!r}, times_opened={self.times_opened}, failure_threshold="
                f"{self.failure_threshold}, failure_ratio={self.failure_ratio:g}, window={self.window}, "
                f"min_calls={self.min_calls}, cooldown_s={self.cooldown_s:g}{slow})")

    def _enter(self, state: str) -> None:
        self.state = state
        self.generation += 1

    def admit(self, now: float) -> int | None:
        """The generation to hand in with the call's verdict, or None when the call must be skipped."""
        if self.state == self.CLOSED:
            return self.generation
        if self.state == self.OPEN and now < self.opened_at:
            # the clock was stepped back (NTP, a VM resumed): the cooldown counts from now, else the
            # deployment stayed skipped for the whole step too (an hour back: an hour without it)
            self.opened_at = now
        if self.state == self.OPEN and now - self.opened_at >= self.cooldown_s:
            self._enter(self.HALF_OPEN)
            self._probe_in_flight = False
        if self.state == self.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return self.generation
        return None

    def allow(self, now: float) -> bool:
        """May a call go out now?  (:meth:`admit` without the ticket.)"""
        return self.admit(now) is not None

    def current(self, ticket: int | None) -> bool:
        """Is a verdict with this ticket still about the breaker's present state?"""
        return ticket is None or ticket == self.generation

    def release_probe(self, ticket: int | None = None) -> None:
        """Free the half-open probe slot without a verdict (the probe was cancelled)."""
        if self.current(ticket):
            self._probe_in_flight = False

    def first_token(self, now: float, ticket: int | None, ttft_s: float) -> int | None:
        """A streamed call's first token came ``ttft_s`` after sending.  For the half-open probe
        that is its verdict, given now (a success; slow past ``slow_call_s``, which opens the
        breaker again): the deployment answers, and waiting for the stream's end held the one
        probe slot — every other request skipped the deployment — for the whole stream, seconds
        to tens of seconds of a recovery.  No verdict for any other call.

        Returns the ticket the call's end is judged with (:func:`judge`): the new closed
        generation's when the token closed the breaker — from then on the call counts as one of
        the closed state's, a stream cut after it as one failure like any cut stream — ``ticket``
        itself for a call that is no probe, and None when the token opened the breaker again:
        the call has had its verdict."""
        if self.state != self.HALF_OPEN or not self.current(ticket):
            return ticket
        self.record_success(now, ticket, slow=self.slow_call_s is not None and ttft_s > self.slow_call_s)
        return self.generation if self.state == self.CLOSED else None

    def is_slow(self, call: Call, result: CallResult | CallError) -> bool:
        """Did this call take longer than ``slow_call_s``?  The time to first token for a streamed
        answer, the whole call otherwise; a failure counts by how long it took (a timeout is slow)."""
        if self.slow_call_s is None:
            return False
        ttft = getattr(result, "ttft_s", None)
        took = ttft if call.stream and ttft is not None else result.latency_s
        return took > self.slow_call_s

    def _remember(self, failed: bool, slow: bool) -> None:
        self._failed.append(failed)
        self._slow.append(slow)
        if len(self._failed) > self.window:
            del self._failed[0], self._slow[0]

    def _share(self, flags: list[bool]) -> float:
        return sum(flags) / len(flags) if len(flags) >= self.min_calls else 0.0

    def _too_slow(self) -> bool:
        return self.slow_call_s is not None and self._share(self._slow) >= self.slow_call_ratio

    def _open(self, now: float, *, for_slowness: bool = False) -> None:
        if self.state != self.OPEN:
            self.times_opened += 1
            self.slow_opens += for_slowness
            self._enter(self.OPEN)
        self.opened_at = now
        self._probe_in_flight = False

    def _stale(self, ticket: int | None) -> bool:
        """A verdict from an earlier generation: counted, and otherwise ignored."""
        if self.current(ticket):
            return False
        self.stale_verdicts += 1
        return True

    def record_success(self, now: float, ticket: int | None = None, *, slow: bool = False) -> None:
        """The call answered (``slow``: later than ``slow_call_s``, see :meth:`is_slow`)."""
        if self._stale(ticket):
            return
        self.consecutive_failures = 0
        self._remember(False, slow)
        if slow and (self.state == self.HALF_OPEN or (self.state == self.CLOSED and self._too_slow())):
            self._open(now, for_slowness=True)  # answering, but too slowly to keep sending users there
        elif not slow and self.state != self.CLOSED:
            self._enter(self.CLOSED)
            self._failed.clear()
            self._slow.clear()
            self._probe_in_flight = False

    def record_failure(self, now: float, ticket: int | None = None, *, slow: bool = False) -> None:
        if self._stale(ticket):
            return
        self.consecutive_failures += 1
        self._remember(True, slow)
        if self.state == self.OPEN:
            return
        if (self.state == self.HALF_OPEN or self.consecutive_failures >= self.failure_threshold
                or self._share(self._failed) >= self.failure_ratio):
            self._open(now)
        elif self._too_slow():
            self._open(now, for_slowness=True)


@dataclass(slots=True)
class ChainResult:
    """How a chain ended: ``result`` from ``deployment``, or ``error`` after every option."""

    result: CallResult | None
    deployment: Deployment | None
    attempts: list[Attempt] = field(default_factory=list)
    error: CallError | None = None
    #: the ``before_call`` hook refused a call: the chain ended without making it (``error`` is
    #: the last call's, if any)
    stopped: bool = False
    #: the request's deadline kept the chain from a call or a wait (llmlab.request_deadline)
    expired: bool = False

    @property
    def fatal(self) -> bool:
        """The request's fault: a fatal error, or params that every deployment tried refused
        before sending (no provider failed: no retry hint, no last-resort answer)."""
        if self.error is None:
            return False
        if self.error.kind is ErrorKind.UNSUPPORTED:
            return all((a.error or "").startswith(ErrorKind.UNSUPPORTED.value) for a in self.attempts)
        if self.error.kind in UNSERVED_BY_SETUP:  # no deployment tried takes the gateway's key or has the model
            return credentials_refused(self.attempts, ())
        return self.error.kind in FATAL


#: a deployment's own setup, not an outage, kept it from answering: the gateway's key refused
#: (401/403) or its model not there (404).  Retrying later cannot help until someone fixes it
UNSERVED_BY_SETUP = (ErrorKind.AUTH, ErrorKind.NOT_FOUND)
_SETUP_PREFIXES = tuple(kind.value for kind in UNSERVED_BY_SETUP)


def credentials_refused(attempts: Sequence[Attempt], refusing: Container[str]) -> bool:
    """Whether no deployment of a chain's ``attempts`` can take the request as the gateway is set
    up: each called refused the gateway's credentials or has no such model (a 404: every
    deployment answering 404 was told "retry in 30 s" as if in an outage), and each skipped by
    its open breaker is in ``refusing`` (its last call was refused so).  A deployment skipped for its breaker otherwise may be in an outage that
    ends: the request failed, it was not rejected (a retry hint, the last-resort answer) — taken
    for a refusal, one deployment down and the others' keys refused read "could not be
    processed".  A deployment skipped for too small a window could not answer either way."""
    judged = [a for a in attempts if a.purpose != "skip" or a.error == ErrorKind.CIRCUIT_OPEN.value]
    return bool(judged) and all(a.deployment in refusing if a.purpose == "skip"
                                else (a.error or "").startswith(_SETUP_PREFIXES) for a in judged)


def completion_bound(call: Call) -> int:
    """The most completion tokens ``call`` can be billed: the ``max_tokens`` it is sent with (the
    deployment's output limit without one) for each of its ``n`` choices."""
    choices = call.params.get("n")
    per_choice = call.params.get("max_tokens") or call.deployment.max_output_tokens
    return per_choice * (choices if isinstance(choices, int) and choices > 0 else 1)


def prompt_bound(call: Call) -> int:
    """The most prompt tokens ``call`` can be billed, as its request's budget hold counts them:
    the UTF-8 bytes of its messages and of its tool or schema parameters
    (:func:`~llmlab.tokens.max_message_tokens`, :func:`~llmlab.tokens.max_params_tokens`) and
    each image at its model's bound.  Not :func:`counted_prompt`, the tokenizer's estimate: a
    provider whose tokenizer splits the text finer bills more than that."""
    from .image_tokens import image_details, images_bound
    from .tokens import max_message_tokens, max_params_tokens

    return (max_message_tokens(call.messages) + max_params_tokens(call.params)
            + images_bound(call.deployment, image_details(call.messages)))


def counted_prompt(call: Call) -> int:
    """``call``'s prompt tokens counted locally, for a bill the provider did not report: the text
    (exact for OpenAI's tokenizers, see :mod:`llmlab.tokens`) and each image at its model's
    bound, the figure its hold took (:mod:`llmlab.image_tokens`)."""
    from .image_tokens import image_details, images_bound
    from .tokens import count_message_tokens

    return count_message_tokens(call.messages, call.deployment.model) + images_bound(call.deployment,
                                                                                     image_details(call.messages))


def streamed_part(call: Call, text: str, latency_s: float) -> CallResult:
    """What a provider bills for a stream that ended early (cut by the provider or by the driver,
    or left by the caller): the prompt (:func:`counted_prompt`) and the tokens it sent, counted
    locally, never more than the call could be billed (:func:`completion_bound`)."""
    from .tokens import count_tokens

    return CallResult(text, counted_prompt(call), min(count_tokens(text, call.deployment.model), completion_bound(call)),
                      latency_s, None)


def billed_part(call: Call, error: CallError) -> CallResult | None:
    """What the provider billed for a call that failed, None when nothing: the usage it reported
    for an answer that could not be used (with the prompt's cache reads and writes), else the
    part of a stream it sent (:func:`streamed_part`)."""
    if error.billed is not None:
        prompt, completion, *cache = error.billed
        return CallResult("", prompt, completion, error.latency_s, None, (), *cache)
    return streamed_part(call, error.partial_text, error.latency_s) if error.partial_text else None


def judge(breaker: CircuitBreaker, ticket: int | None, call: Call, result: CallResult | CallError,
          now: float) -> None:
    """Tell ``breaker`` what one call's result says of its deployment's health.

    A fatal error or a context overflow is the request's fault (the provider answered at once): a
    success for the breaker.  Refused credentials (authentication) and a model that is gone (404)
    are the deployment's: a failure, so that its breaker opens and later requests skip it at once
    until the key or the model name is fixed.  A 429 is
    throttling, not failing: no verdict, and a half-open probe slot is freed — counted as failures,
    30 % random 429s opened the breaker and turned a 1 s Retry-After into a cooldown-long outage.  Params refused before sending: the provider was
    not asked, no verdict either.  A slow answer (``slow_call_s``) counts as slow.  A call its
    request's deadline cut (:func:`cut_by_deadline`) says no more than a cancelled one: with 0.4 s
    left, a healthy provider's 0.8 s answer would have counted as its failure, and a tight
    deadline in an outage drill opened the breakers of the deployments that were still answering."""
    if result.ok:
        breaker.record_success(now, ticket, slow=breaker.is_slow(call, result))
    elif result.kind in FATAL or result.kind is ErrorKind.CONTEXT_WINDOW:
        breaker.record_success(now, ticket)
    elif result.kind is ErrorKind.RATE_LIMIT or result.kind is ErrorKind.UNSUPPORTED:
        breaker.release_probe(ticket)
    elif cut_by_deadline(call, result):
        _said_nothing(breaker, ticket, call, result, now)
    else:
        breaker.record_failure(now, ticket, slow=breaker.is_slow(call, result))


def cut_by_deadline(call: Call, result: CallResult | CallError) -> bool:
    """Whether ``result`` is a timeout that only the request's deadline set: the call's timeout
    was shorter than its deployment's (:attr:`~llmlab.effects.Call.deadline_bound`) and it failed
    before reaching the deployment's own ``timeout_s``."""
    return (not result.ok and result.kind is ErrorKind.TIMEOUT and call.deadline_bound
            and result.latency_s < call.deployment.timeout_s)


def _said_nothing(breaker: CircuitBreaker, ticket: int | None, call: Call, result: CallResult | CallError,
                  now: float) -> None:
    """The verdict on a call the gateway ended for its own reasons (a race lost, the request's
    deadline): none, the probe slot back — unless it had already waited past the breaker's
    ``slow_call_s``, which is a slow call."""
    if breaker.is_slow(call, result):
        breaker.record_success(now, ticket, slow=True)
    else:
        breaker.release_probe(ticket)


def run_chain(chain: Sequence[Deployment], make_call: Callable[[Deployment], Call],
              retry_for: Callable[[Deployment], RetryPolicy], breaker_for: Callable[[str], CircuitBreaker],
              price: Callable[[Deployment, CallResult], float], clock: Callable[[], float],
              rng: random.Random, before_call: Callable[[Deployment, Sequence[Attempt]], bool] | None = None,
              hedge: Hedge | None = None,
              before_hedge: Callable[[Deployment, Sequence[Attempt], float], bool] | None = None,
              deadline: float | None = None) -> Generator[Effect, Any, ChainResult]:
    """Try each deployment in order with retries; return the first success or the last error.

    ``before_call(deployment, attempts)``, when given, is asked before every call with the
    attempts this chain has recorded so far (their costs include what failed calls were billed);
    False ends the chain at once without the call (``ChainResult.stopped``).  The pipeline uses
    it to keep a budget's hold above what a retry or a fallback may still bill: the chain itself
    knows nothing of budgets.

    With ``hedge``, the chain's first answering call is a :class:`~llmlab.effects.Race` against
    the next deployment whose breaker is closed (:mod:`llmlab.hedging`); ``before_hedge`` is asked
    as ``before_call`` is, with the loser's bill as a third argument, and False sends no hedge.
    The hedge's call is recorded as a ``"hedge"`` attempt; the chain goes on from the first
    call's result unless the hedge won — and when the hedge won and then broke (a stream cut after
    its first token), by calling the first deployment again at once, as its retry.

    ``deadline`` (the ``clock`` reading the request must end by; :mod:`llmlab.request_deadline`):
    each call is sent with what is left (``Call.left_s``), a wait that would end past it moves on
    to the next deployment instead, and once too little is left the chain ends without a call
    (``ChainResult.expired``)."""
    out = ChainResult(None, None)
    min_window = 0
    called = False
    for index, dep in enumerate(chain):
        if dep.context_window <= min_window:
            out.attempts.append(Attempt(dep.name, dep.model, "skip", False,
                                        f"skipped: context window {dep.context_window} ≤ {min_window}", 0.0))
            continue
        breaker = breaker_for(dep.name)
        ticket = breaker.admit(clock())
        if ticket is None:
            out.attempts.append(_skipped_open(dep))
            out.error = out.error or CallError(ErrorKind.CIRCUIT_OPEN, f"circuit open for {dep.name}")
            continue
        policy = retry_for(dep)
        waited = 0.0
        for retry in range(policy.max_retries + 1):
            call = make_call(dep)
            if deadline is not None:
                left = call_time_left(deadline, clock())
                if left is None:  # no call starts after the request's deadline
                    breaker.release_probe(ticket)
                    out.expired = True
                    out.error = out.error or CallError(ErrorKind.TIMEOUT, f"{dep.name} not called: no time left")
                    return out
                call = replace(call, left_s=left)
                # a call goes out with time left: a wait skipped before it (a Retry-After past the
                # deadline) did not end the chain, and if this call fails on its own the request
                # failed for that, not for its deadline
                out.expired = False
            if before_call is not None:
                try:
                    go = before_call(dep, out.attempts)
                except BaseException:
                    breaker.release_probe(ticket)
                    raise
                if not go:
                    breaker.release_probe(ticket)  # admitted, never called: a half-open probe's slot goes back
                    out.stopped = True
                    return out
            probe = None
            if call.stream and breaker.state == breaker.HALF_OPEN and breaker.current(ticket):
                probe = _StreamedProbe(breaker, ticket, clock)  # judged at its first token
                call = replace(call, on_first_token=probe.answering)
            second = None
            if hedge is not None and not called and call.purpose == "answer" and hedge.wait_for(call) < math.inf \
                    and (deadline is None or hedge.wait_for(call) + MIN_CALL_S <= left):  # a hedge due in time
                try:
                    second = _hedge_call(chain, index, call, make_call, breaker_for, min_window, price, out,
                                         before_hedge, clock)
                except BaseException:  # as before_call: admitted, never called — a half-open probe's slot goes back
                    breaker.release_probe(ticket)
                    raise
                if second is not None and deadline is not None:  # sent later, with less left
                    second = (replace(second[0], left_s=left - hedge.wait_for(call)), second[1])
            called = True
            hedged = None
            try:
                if second is None:
                    result = yield call
                else:
                    target = breaker_for(second[0].deployment.name)  # still closed once the hedge is due
                    raced = yield Race(call, second[0], hedge.wait_for(call), lambda: target.state == target.CLOSED)
                    result, hedged = raced.first, raced.second
            except (GeneratorExit, ClientDisconnected) as exc:  # cancelled mid-call: never strand a half-open probe
                decided = getattr(exc, "race", None) if second is not None else None
                if decided is not None:  # left during the winner's stream: the loser was billed all the same
                    lost_call, lost_ticket = (call, ticket) if decided.winner == 1 else second
                    _record(out, lost_call, decided.loser, price, "hedge" if decided.winner == 0 else call.purpose,
                            0.0 if decided.winner == 0 else waited)
                    _verdict(breaker_for(lost_call.deployment.name), lost_ticket, lost_call, decided.loser, clock())
                breaker.release_probe(ticket)
                _hand_over(exc, out)
                raise
            _record(out, call, result, price, call.purpose, waited)
            if probe is None or not probe.answered:
                _verdict(breaker, ticket, call, result, clock())
            elif probe.ticket is not None:  # its first token closed the breaker: judged as a call of that state
                ticket = probe.ticket
                _verdict(breaker, ticket, call, result, clock())
            # (else its first token came too slowly and opened the breaker again: it has had its verdict)
            if deadline is not None and cut_by_deadline(call, result):
                out.expired = True  # whatever follows, this call had all the time there was
            if hedged is not None:  # sent after the first call: recorded after it, whichever won
                hedge_call, hedge_ticket = second
                _record(out, hedge_call, hedged, price, "hedge", 0.0)
                _verdict(breaker_for(hedge_call.deployment.name), hedge_ticket, hedge_call, hedged, clock())
                if hedged.ok:
                    out.result, out.deployment, out.error = hedged, hedge_call.deployment, None
                    return out
            if result.ok:
                out.result, out.deployment, out.error = result, dep, None
                return out
            # a first call that lost to a hedge which then failed (a stream cut after its first
            # token): the chain goes on as after the first call's failure, and the hedge's error is
            # the one to report — "cancelled: … started answering first" explained nothing
            out.error = hedged if hedged is not None and result.kind is ErrorKind.CANCELLED else result
            if result.kind in FATAL:
                return out
            if result.kind is ErrorKind.CONTEXT_WINDOW:
                min_window = dep.context_window
                break
            if result.kind is ErrorKind.UNSUPPORTED:  # this deployment cannot take the request: the next may
                break
            if result.kind in UNSERVED_BY_SETUP:
                break  # its credentials are refused, or its model is gone (a retry would be too): the next has its own
            if retry == policy.max_retries or not breaker.current(ticket):  # opened, or re-admitted others
                break
            # a first call that lost its race to a hedge which then broke never failed: called again
            # at once — a backoff gives a failing provider room, and this one was answering
            delay = 0.0 if result.kind is ErrorKind.CANCELLED else policy.delay(retry, result.retry_after_s, rng)
            if delay is None:
                break
            if deadline is not None and delay > 0 and clock() + delay > deadline:
                out.expired = True  # a wait that would end past the deadline is not started: the next deployment
                break
            if delay > 0:
                try:
                    yield Sleep(delay)
                except ClientDisconnected as exc:
                    _hand_over(exc, out)
                    raise
            if result.kind in (ErrorKind.RATE_LIMIT, ErrorKind.CANCELLED) or not breaker.current(ticket):
                # the 429 or the lost race gave a half-open probe's slot back (judge, _verdict), or the
                # breaker moved on while we waited: the retry goes out only if the breaker admits it
                # now — else two probes ran at once, and a cancelled retry freed the other's slot
                ticket = breaker.admit(clock())
                if ticket is None:
                    out.attempts.append(_skipped_open(dep))
                    break
            waited = delay
    return out


def _record(out: ChainResult, call: Call, result: CallResult | CallError, price: Callable[[Deployment, CallResult], float],
            purpose: str, waited: float) -> None:
    """Add ``call``'s attempt to ``out``: its bill, or what its failure was billed (``billed_part``)."""
    dep = call.deployment
    if result.ok:
        out.attempts.append(Attempt(dep.name, dep.model, purpose, True, None, result.latency_s, result.prompt_tokens,
                                    result.completion_tokens, price(dep, result), None, waited))
        return
    billed = billed_part(call, result)
    said = f"{result.kind.value}: {result.message}" if not cut_by_deadline(call, result) \
        else f"{result.kind.value}: cut by the request's deadline ({result.message})"
    out.attempts.append(Attempt(dep.name, dep.model, purpose, False, said[:300],
                                result.latency_s, *((billed.prompt_tokens, billed.completion_tokens, price(dep, billed))
                                                    if billed is not None else (0, 0, 0.0)),
                                retry_after_s=result.retry_after_s, waited_s=waited))


def _verdict(breaker: CircuitBreaker, ticket: int | None, call: Call, result: CallResult | CallError,
             now: float) -> None:
    """:func:`judge`, but for a call cancelled because a hedge race's other call won: that says
    nothing of its provider (:func:`_said_nothing`) — a slow call still counts as slow (else a
    provider too slow to ever win a race never trips its breaker, and every request pays for a hedge)."""
    if result.ok or result.kind is not ErrorKind.CANCELLED:
        judge(breaker, ticket, call, result, now)
    else:
        _said_nothing(breaker, ticket, call, result, now)


def _hedge_call(chain: Sequence[Deployment], index: int, call: Call, make_call: Callable[[Deployment], Call],
                breaker_for: Callable[[str], CircuitBreaker], min_window: int,
                price: Callable[[Deployment, CallResult], float], out: ChainResult,
                before_hedge: Callable[[Deployment, Sequence[Attempt], float], bool] | None,
                clock: Callable[[], float]) -> tuple[Call, int | None] | None:
    """The call a hedge of ``call`` (``chain[index]``'s) sends, with its breaker's ticket; None
    when there is no deployment to hedge to (:func:`~llmlab.hedging.hedge_target`) or the budget
    cannot also hold the loser's bill at its worst, at the dearer of the two deployments: the
    prompt (:func:`prompt_bound`, as the request's hold counts it) and every token it may
    answer.  A loser is usually billed its prompt and what it had streamed, but two calls that
    start answering together are both billed in full — the hold must cover that, or a capped
    tenant's spend overshoots its cap."""
    target = hedge_target(chain, index, lambda name: breaker_for(name).state == CircuitBreaker.CLOSED, min_window)
    if target is None:
        return None
    second = make_call(target)
    if before_hedge is not None:
        loser = max(price(c.deployment, CallResult("", prompt_bound(c), completion_bound(c), 0.0))
                    for c in (call, second))
        if not before_hedge(target, out.attempts, loser):
            return None
    return second, breaker_for(target.name).admit(clock())


class _StreamedProbe:
    """The first-token hook of a streamed half-open probe (``Call.on_first_token``): the probe's
    verdict as the token comes (:meth:`CircuitBreaker.first_token`), and the ticket its end is
    judged with.  Drivers call it once, at most; a second call changes nothing."""

    __slots__ = ("breaker", "ticket", "clock", "answered")

    def __init__(self, breaker: CircuitBreaker, ticket: int | None, clock: Callable[[], float]) -> None:
        self.breaker, self.ticket, self.clock = breaker, ticket, clock
        self.answered = False

    def answering(self, ttft_s: float) -> None:
        if not self.answered:
            self.answered = True
            self.ticket = self.breaker.first_token(self.clock(), self.ticket, ttft_s)


def _skipped_open(dep: Deployment) -> Attempt:
    """The attempt a chain records for a deployment its breaker did not admit (no call made)."""
    return Attempt(dep.name, dep.model, "skip", False, ErrorKind.CIRCUIT_OPEN.value, 0.0)


def _hand_over(exc: BaseException, out: ChainResult) -> None:
    """A caller who leaves mid-chain ends it with ClientDisconnected, not a result: the attempts
    made so far (a cut stream the provider billed) ride on the exception, or they were never
    recorded nor charged to the budget."""
    if isinstance(exc, ClientDisconnected):
        exc.attempts[:0] = out.attempts
