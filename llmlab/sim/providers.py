"""Simulated providers: what a deployment does to a call, in virtual time.

Per call, in this order (each step can end the call with a :class:`~llmlab.effects.CallError`,
never an exception — the pipeline sees exactly what the live driver would give it):

1. outage ``down`` → 503 after ``down_latency_s`` (or a hang until the deployment's timeout);
2. provider rate limits (requests/min, tokens/min with ``max_tokens`` counted, as OpenAI does)
   → 429 with ``retry_after_s`` = the time until the request would fit, from when it was sent
   (rounded up to the millisecond); a request larger than the whole tokens/min limit never
   fits, and its 429 has no ``Retry-After`` (OpenAI's "Request too large … must be reduced"):
   a made-up 60 s hint had a gateway that honours long hints wait minutes for nothing;
3. concurrency ``capacity``: a FIFO queue; waiting longer than the timeout → timeout error;
4. latency = TTFT (lognormal around the published median) + output tokens ÷ tokens/s;
   degraded by a ``slow`` outage (in force when the call leaves the queue: a window that began or
   ended while it queued applies as the server is then, ``down`` included);
5. errors at the baseline rate (+ an ``errors`` outage's rate) → 500 or 529;
6. the call's timeout (on the whole call, or on the first token when streaming): its deployment's
   ``timeout_s``, or what is left of the request's deadline when less (``Call.timeout_s``).

Randomness is *counter-based*: every draw is a hash of ``(request key, deployment, call
number)``, not the next number of a shared stream.  So the policy run and the baseline run see
the same draws for the same request on the same deployment (common random numbers), whatever
else happened in between — and no ``random.Random`` is seeded per request (≈ 4 µs each).
"""
from __future__ import annotations

import math
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any, Generator, Mapping

from ..effects import Call, CallError, CallResult, ErrorKind
from ..request import answer_token_limit
from ..routing import LABELS
from ..tokens import estimate_message_tokens
from .outages import OutageState, Window

if TYPE_CHECKING:
    import simpy

    from .scenario import ProviderConfig

M64 = 0xFFFFFFFFFFFFFFFF
GOLDEN = 0x9E3779B97F4A7C15
TWO_PI = 2.0 * math.pi
INV32 = 1.0 / 4294967296.0
INV53 = 1.0 / 9007199254740992.0
_EXP_SALT = 0xD1B54A32D192ED03
#: a simulated error's kind (500 or 529) is drawn on its own: its delay has ``u4``
_KIND_SALT = 0x8CB92BA72F3D8DD7
#: tokens of the classifier's instruction (llmlab.routing.CLASSIFIER_PROMPT) plus chat framing
CLASSIFY_PROMPT_TOKENS = 70
#: the longest a single simulated wait may last: a year.  A lognormal's far tail with a large
#: sigma, a speed near zero or a latency typed with too many zeros would otherwise push the
#: virtual clock past the calendar (monthly budgets date every request: an internal error) or
#: overflow a float (the call failed as a simulator error).
MAX_DELAY_S = 366 * 86_400.0


def growth(x: float) -> float:
    """``e^x`` for a lognormal factor, without OverflowError (``MAX_DELAY_S`` bounds the wait).

    Bounds here and in the per-call code below are conditional expressions, not ``min``/``max``:
    the builtins parse their arguments and iterate over them, ≈ 7 calls a request that cost
    ≈ 1 % of a run's instructions.  ``b if b < a else a`` is ``min(a, b)`` exactly (NaN and ties
    included), ``b if b > a else a`` is ``max(a, b)``."""
    return math.exp(700.0 if 700.0 < x else x)


def mix64(x: int) -> int:
    """SplitMix64's finaliser: a well-mixed 64-bit hash of ``x``."""
    x = (x + GOLDEN) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def uniforms(key: int) -> tuple[float, float, float, float]:
    """Four independent uniforms in (0, 1) from one key (two hashes, 32 bits each)."""
    a = mix64(key)
    b = mix64(key ^ 0x5851F42D4C957F2D)
    return (((a & 0xFFFFFFFF) + 0.5) * INV32, ((a >> 32) + 0.5) * INV32,
            ((b & 0xFFFFFFFF) + 0.5) * INV32, ((b >> 32) + 0.5) * INV32)


def uniform(key: int) -> float:
    """One uniform in (0, 1) from ``key``, 53 bits: a draw of its own beside :func:`uniforms`'
    four (the key salted apart), so a step that needs another number takes no other's."""
    return ((mix64(key) >> 11) + 0.5) * INV53


def salt_of(name: str) -> int:
    return mix64(zlib.crc32(name.encode("utf-8")) * GOLDEN & M64)


class SlotPool:
    """A FIFO counting semaphore (what ``simpy.Resource`` does, one event cheaper per call).

    A free slot is taken without yielding; only callers that must queue get an event.  A waiter
    that gives up (timeout) is marked dead and skipped when a slot is handed on.
    """

    __slots__ = ("env", "capacity", "free", "waiters")

    def __init__(self, env: "simpy.Environment", capacity: int) -> None:
        self.env = env
        self.capacity = capacity
        self.free = capacity
        self.waiters: deque[list] = deque()  # [event, alive]

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            entry = waiters.popleft()
            if entry[1]:
                entry[0].succeed()  # the slot passes straight to the next waiter
                return
        self.free += 1

    @property
    def queued(self) -> int:
        return sum(1 for e in self.waiters if e[1])


#: slack on a bucket's level: refills summed in floating point land a hair short of a whole
#: request at the very instant the wait said it would fit
BUCKET_EPS = 1e-9


class TokenBucket:
    """Per-minute limit refilled continuously (capacity / 60 per second)."""

    __slots__ = ("capacity", "level", "updated")

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.level = capacity
        self.updated = 0.0

    def wait_for(self, amount: float, now: float) -> float:
        if now > self.updated:
            level = self.level + (now - self.updated) * self.capacity / 60.0
            self.level = level if level < self.capacity else self.capacity  # min(capacity, level)
            self.updated = now
        if amount <= self.level + BUCKET_EPS:
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.level) * 60.0 / self.capacity


Buckets = tuple[TokenBucket | None, TokenBucket | None]  # requests/min, tokens/min


def own_buckets(config: "ProviderConfig") -> Buckets:
    """A fresh pair of per-minute buckets for ``config``'s limits (None where it sets none)."""
    return (TokenBucket(config.rpm) if config.rpm is not None else None,
            TokenBucket(config.tpm) if config.tpm is not None else None)


def shared_buckets(configs: Mapping[str, "ProviderConfig"]) -> dict[str, Buckets]:
    """One bucket pair per ``rate_limit_group`` among ``configs``.  Providers count requests and
    tokens per account and model (OpenAI per organisation and model), not per gateway deployment:
    two deployments of one model on one key drain one limit, and a fallback from one to the other
    meets the same 429s.  The scenario checks that a group's members set the same limits."""
    out: dict[str, Buckets] = {}
    for config in configs.values():
        if config.rate_limit_group is not None and config.rate_limit_group not in out:
            out[config.rate_limit_group] = own_buckets(config)
    return out


class Hold:
    """What a raced call holds at its provider (a slot, or a place in the queue), so a cancel can
    give it back, and the event its first token fires (streamed calls)."""

    __slots__ = ("first", "slot", "entry")

    def __init__(self, first: Any) -> None:
        self.first = first
        self.slot = False
        self.entry: list | None = None


class SimProvider:
    """One deployment's simulated provider.  ``serve(call, key)`` is a SimPy generator."""

    def __init__(self, env: "simpy.Environment", name: str, config: "ProviderConfig",
                 windows: list[Window] | None = None, buckets: "Buckets | None" = None) -> None:
        self.env = env
        self.name = name
        self.config = config
        self.model = config.model
        self.salt = salt_of(name)
        c = config
        self.ttft_s, self.ttft_sigma, self.ttft_dist = c.ttft_s, c.ttft_sigma, c.ttft_dist
        self.tps, self.tps_sigma = c.tokens_per_s, c.tokens_per_s_sigma
        self.error_rate, self.overloaded_share = c.error_rate, c.overloaded_share
        self.error_latency_s, self.rate_limit_latency_s = c.error_latency_s, c.rate_limit_latency_s
        self.down_latency_s, self.down_hangs = c.down_latency_s, c.down_mode == "hang"
        self.classifier_accuracy = c.classifier_accuracy
        self.context_window = c.context_window
        self.max_output_tokens = c.max_output_tokens  # the model's own limit, whatever a call asks
        self.refusal_rate = dict(c.refusal_rate)
        self.slots = SlotPool(env, c.capacity) if c.capacity is not None else None
        self.rpm, self.tpm = own_buckets(c) if buckets is None else buckets
        self.outage = OutageState(windows or ())
        # counters (cheap enough for the hot path; the validation tests read them)
        self.calls = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.in_system = 0
        self.served = 0  # calls that got a slot (or needed none)
        self.wait_total = 0.0  # time spent queueing for a slot, over ``served``

    def cancel(self, hold: "Hold") -> None:
        """A raced call interrupted because the other won: give back the slot it holds, or its
        place in the queue (a slot handed to it at the same moment goes to the next caller)."""
        self.in_system -= 1
        self.errors["cancelled"] = self.errors.get("cancelled", 0) + 1
        entry = hold.entry
        if hold.slot or (entry is not None and entry[0].triggered):
            self.slots.release()
        elif entry is not None:
            entry[1] = False

    # ------------------------------------------------------------------ helpers
    def _fail(self, kind: ErrorKind, message: str, start: float, status: int | None = None,
              retry_after_s: float | None = None) -> CallError:
        self.errors[kind.value] = self.errors.get(kind.value, 0) + 1
        self.in_system -= 1
        return CallError(kind, message, self.env._now - start, retry_after_s, status)

    def _tokens(self, call: Call) -> tuple[int, int, bool]:
        """``(prompt tokens, output tokens, cut)``: ``cut`` when the answer the traffic describes is
        longer than ``max_tokens`` (``max_completion_tokens``), or than the deployment's
        ``max_output_tokens`` — a provider's own limit, applied to a call sent without a bound
        or with a larger one (finish reason ``length``).  The gateway sends every call with the
        smaller of the two; a call made without it was billed, timed and returned whole past
        the limit.  An answer exactly the bound long is whole — an agent's tool-choosing call is
        sent with ``max_tokens`` = its length, and every one of them was reported cut (37 % of
        realtime-chat's model answers, 3 % really were)."""
        meta = call.metadata
        prompt = meta.get("prompt_tokens")
        if prompt is None:
            prompt = estimate_message_tokens(call.messages)
        if call.purpose == "classify":
            return CLASSIFY_PROMPT_TOKENS + int(meta.get("query_tokens", prompt)), 1, False
        out = int(meta.get("answer_tokens", 200))
        cap = self.max_output_tokens
        limit = answer_token_limit(call.params)
        if limit and limit < cap:
            cap = limit
        return (int(prompt), cap, True) if out > cap else (int(prompt), out, False)

    def prompt_tokens(self, call: Call) -> int:
        """The prompt ``call`` is billed (what a cancelled race loser pays)."""
        return self._tokens(call)[0]

    def _text(self, call: Call, u: float) -> str:
        meta = call.metadata
        key = meta.get("answer_key") or meta.get("intent") or "answer"
        category = meta.get("category", "general")
        if call.purpose == "classify":
            if u < self.classifier_accuracy or category not in LABELS:
                return str(category).upper()
            others = [x for x in LABELS if x != category]
            return others[int((u - self.classifier_accuracy) / (1.0 - self.classifier_accuracy) * 2) % 2].upper()
        if self.refusal_rate and u < self.refusal_rate.get(category, 0.0):
            return f"«{key}» I'm not sure how to help with that."
        return f"«{key}» answered by {self.model}."

    def _down(self, start: float, timeout_s: float, waited: float,
              slots: SlotPool | None) -> Generator[Any, Any, CallError]:
        """A call to a deployment that is down: a 503 after ``down_latency_s``, or no answer until
        the timeout (``down_mode = "hang"``, or a 503 that would come after the gateway gave up);
        ``slots``: the queue slot the call holds, given back."""
        left = max(0.0, timeout_s - waited)  # the timeout runs from sending, time in the queue included
        hang = self.down_hangs or self.down_latency_s > left
        yield self.env.timeout(left if hang else self.down_latency_s)
        if slots is not None:
            slots.release()
        if hang:
            return self._fail(ErrorKind.TIMEOUT, f"{self.name}: no response within {timeout_s:g} s (outage)", start)
        return self._fail(ErrorKind.OVERLOADED, f"{self.name}: 503 service unavailable (outage)", start, 503)

    # ------------------------------------------------------------------ the call
    def serve(self, call: Call, key: int, hold: "Hold | None" = None) -> Generator[Any, Any, CallResult | CallError]:
        """Perform one call; returns CallResult or CallError (never raises).  ``hold``: a raced call's
        (:mod:`llmlab.sim.race`) — what it holds, for :meth:`cancel`, and its first-token event."""
        env = self.env
        start = env._now
        self.calls += 1
        self.in_system += 1
        outage = self.outage
        if start >= outage.next_change:
            outage.refresh(start)
        timeout_s = call.timeout_s  # the deployment's, or what is left of the request's deadline
        if outage.down:
            return (yield from self._down(start, timeout_s, 0.0, None))
        prompt, out, cut = self._tokens(call)
        requested = prompt + (call.params.get("max_tokens") or out)
        if requested > self.context_window:  # as OpenAI and Anthropic do: prompt + max_tokens must fit
            yield env.timeout(self.rate_limit_latency_s)  # refused at the front door, like a 429
            return self._fail(ErrorKind.CONTEXT_WINDOW, f"{self.name}: {requested} tokens requested ({prompt} in the "
                              f"messages) exceed the {self.context_window}-token context window", start, 400)
        if self.rpm is not None or self.tpm is not None:
            wait = 0.0
            if self.rpm is not None:
                wait = self.rpm.wait_for(1.0, start)
            if self.tpm is not None:
                tokens_wait = self.tpm.wait_for(requested, start)
                if tokens_wait > wait:
                    wait = tokens_wait
            if wait > 0.0:
                yield env.timeout(self.rate_limit_latency_s)
                if math.isinf(wait):  # larger than the whole tokens/min limit: no wait makes it fit
                    return self._fail(ErrorKind.RATE_LIMIT, f"{self.name}: 429 request too large: "
                                      f"{requested} tokens exceed the "
                                      f"{self.config.tpm:g} tokens/min limit", start, 429)
                # whole milliseconds, rounded up: a client waiting exactly this long gets in (to the
                # nearest, a retry came up to 0.5 ms early, and a wait under 0.5 ms said "Retry-After: 0")
                return self._fail(ErrorKind.RATE_LIMIT, f"{self.name}: 429 rate limit reached", start, 429,
                                  math.ceil(wait * 1000.0) / 1000.0)
            if self.rpm is not None:
                self.rpm.level -= 1.0
            if self.tpm is not None:
                self.tpm.level -= requested
        slots = self.slots
        if slots is not None:
            if slots.free > 0:
                slots.free -= 1
            else:
                entry = [env.event(), True]
                slots.waiters.append(entry)
                if hold is not None:
                    hold.entry = entry
                yield entry[0] | env.timeout(timeout_s)
                if not entry[0].triggered:
                    entry[1] = False
                    return self._fail(ErrorKind.TIMEOUT, f"{self.name}: timed out after {timeout_s:g} s in queue",
                                      start)
            if hold is not None:
                hold.slot = True  # given back by every path from here, right before it returns
        waited = env._now - start
        if waited > 0.0:
            # the server answers a queued call as it is now: a window may have begun or ended while the
            # call queued (as of the last call sent, a slowdown missed the calls dequeued during it)
            if env._now >= outage.next_change:
                outage.refresh(env._now)
            if outage.down:
                return (yield from self._down(start, timeout_s, waited, slots))
        self.served += 1
        self.wait_total += waited
        # latency: one lognormal TTFT (Box-Muller on two counter-based uniforms) + tokens / speed
        u1, u2, u3, u4 = uniforms(key ^ self.salt)
        r = math.sqrt(-2.0 * math.log(u1))
        if self.ttft_dist == "lognormal":
            ttft = self.ttft_s * growth(self.ttft_sigma * r * math.cos(TWO_PI * u2))
        elif self.ttft_dist == "exponential":  # a uniform of its own: u2 is the speed's Box-Muller angle
            ttft = -self.ttft_s * math.log(uniform(key ^ self.salt ^ _EXP_SALT))
        else:
            ttft = self.ttft_s
        tps = self.tps * growth(self.tps_sigma * r * math.sin(TWO_PI * u2)) if self.tps_sigma else self.tps
        if outage.latency_factor != 1.0:
            ttft *= outage.latency_factor
            tps /= outage.latency_factor
        if MAX_DELAY_S < ttft:  # min(ttft, MAX_DELAY_S), see growth()
            ttft = MAX_DELAY_S
        service = ttft + (out / tps if tps > 0.0 else math.inf)
        if MAX_DELAY_S < service:
            service = MAX_DELAY_S
        if u3 < self.error_rate + outage.error_rate:
            delay = self.error_latency_s * (0.5 + u4)
            left = max(0.0, timeout_s - waited)  # the timeout runs from sending, time in the queue included
            yield env.timeout(min(delay, left))
            if slots is not None:
                slots.release()
            if delay > left:  # the error would come after the gateway gave up
                return self._fail(ErrorKind.TIMEOUT, f"{self.name}: timed out after {timeout_s:g} s", start)
            # 529 or 500 on a draw of its own: on u4, which set the delay, every 529 came back
            # sooner than every 500 (a 529's delay lay in the first overloaded_share of the range)
            if u3 >= self.error_rate or uniform(key ^ self.salt ^ _KIND_SALT) < self.overloaded_share:
                # incident errors (an ``errors`` outage's extra rate) are all 529s
                return self._fail(ErrorKind.OVERLOADED, f"{self.name}: 529 overloaded", start, 529)
            return self._fail(ErrorKind.SERVER, f"{self.name}: 500 internal server error", start, 500)
        if waited + (ttft if call.stream else service) > timeout_s:
            yield env.timeout(max(0.0, timeout_s - waited))
            if slots is not None:
                slots.release()
            return self._fail(ErrorKind.TIMEOUT, f"{self.name}: timed out after {timeout_s:g} s", start)
        if call.stream and (hold is not None or call.on_first_token is not None):
            yield env.timeout(ttft)  # a race is decided on the first token, and a half-open probe judged
            if hold is not None:
                hold.first.succeed()
            if call.on_first_token is not None:
                call.on_first_token(waited + ttft)
            service -= ttft
        yield env.timeout(service)
        if slots is not None:
            slots.release()
        self.ok += 1
        self.in_system -= 1
        # a call not streamed shows its caller nothing before its whole answer, as the live driver
        # records it: the provider's first token, 0.7 s into a 4 s answer, read as b2b-saas' TTFT
        took = env._now - start
        return CallResult(self._text(call, u4), prompt, out, took, waited + ttft if call.stream else took, (), 0, 0,
                          "length" if cut else "stop")
