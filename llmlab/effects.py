"""Effects the pipeline asks a driver to perform, and the values that flow back.

The pipeline performs no I/O (the way h11 keeps HTTP logic free of sockets).  It *yields*
one of these effects and receives the outcome:

    result = yield Call(deployment, messages, params)   # CallResult or CallError, never raises
    raced = yield Race(call, hedge_call, after_s)        # RaceResult (a hedged call, llmlab.hedging)
    yield Sleep(seconds)                                 # wait before a retry
    result = yield Embed(embedder, texts)               # EmbedResult
    refusal = yield ADMIT                                # None, or Overloaded (llmlab.admission)
    landed = yield JoinFlight(flight, wait_s)            # bool: an identical request's call (llmlab.coalescing)

A driver — live (litellm, real clock) or simulated (SimPy, virtual time) — performs them.
Drivers turn every provider failure into a :class:`CallError`, so the pipeline's control flow
never depends on exceptions crossing the yield.
"""
from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ._fastinit import fast_frozen_init
from .errors import GatewayError

Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to reach one model: a name the router uses, the price key, and call settings.

    ``params`` are passed to the provider call (for litellm: ``api_base``, ``api_key``,
    ``mock_response`` …).  They are never logged and ``repr`` hides them, because they may hold
    secrets.  ``context_window`` (prompt tokens it takes; a larger one is tried on overflow),
    ``max_output_tokens`` (the most an answer may have: what budgets hold when a request sets no
    ``max_tokens``) and ``timeout_s`` describe the deployment; ``price_model`` is the price-book
    key when it differs from ``model``.  ``image_tokens_max`` is what one image part is held at
    (prompt tokens); None takes the model's published image policy (:mod:`llmlab.image_tokens`).
    """

    name: str
    model: str
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    context_window: int = 128_000
    max_output_tokens: int = 4_096
    timeout_s: float = 60.0
    price_model: str | None = None  # price-book key when it differs from ``model``
    image_tokens_max: int | None = None  # prompt tokens one image part can be billed; None: the model's policy

    @property
    def price_key(self) -> str:
        return self.price_model or self.model


# ----------------------------------------------------------------------------- effects
@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Call:
    """Ask ``deployment`` for a chat completion."""

    deployment: Deployment
    messages: tuple[Message, ...]
    params: Mapping[str, Any]
    stream: bool = False
    purpose: str = "answer"  # "answer", "classify" or "cascade"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # a streamed answer's placeholders → the caller's values, put back into the chunks the caller
    # sees (``unmask_answers``; see llmlab.placeholders); never sent anywhere, and hidden from
    # ``repr`` as ``Deployment.params`` is: the messages carry only placeholders, and a driver or
    # debug log printing the effect must not show the PII the masker took out
    restore: Mapping[str, str] | None = field(default=None, repr=False)
    # a streamed answer's output guards, run over the chunks before the caller sees them
    # (llmlab.stream_guard): ``guard(masked_text) -> (text, blocked)``; None without output guards
    guard: Callable[[str], tuple[str, bool]] | None = field(default=None, repr=False, compare=False)
    # what was left of the request's deadline when the call was sent (llmlab.request_deadline);
    # None: the request has none, and the call has its deployment's ``timeout_s``
    left_s: float | None = None
    # a streamed half-open probe's hook (llmlab.fallback.run_chain): the driver calls it with the
    # seconds from sending to the first token, when that token comes — the probe's verdict is
    # given then, not at the stream's end (its breaker's one slot was held for the whole stream)
    on_first_token: Callable[[float], None] | None = field(default=None, repr=False, compare=False)

    @property
    def timeout_s(self) -> float:
        """How long the driver waits for this call (for its first token when streamed): its
        deployment's ``timeout_s``, or what is left of its request's deadline when that is less."""
        own = self.deployment.timeout_s
        left = self.left_s
        return own if left is None or left >= own else left

    @property
    def deadline_bound(self) -> bool:
        """Whether the request's deadline, not the deployment's own ``timeout_s``, bounds this
        call: its timeout then says nothing of the deployment's health (see :func:`llmlab.fallback.judge`)."""
        return self.left_s is not None and self.left_s < self.deployment.timeout_s


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (real time live, virtual time in the simulator)."""

    seconds: float


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Embed:
    """Embed ``texts`` with ``embedder`` (an object with ``embed(texts) -> ndarray``)."""

    embedder: Any
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Race:
    """A hedged call: send ``first``; if it has not started answering after ``after_s`` seconds
    (its first token when streaming, its whole answer otherwise), send ``second`` too, and take
    whichever starts answering first.  The other is cancelled (:data:`ErrorKind.CANCELLED`).

    Value: a :class:`RaceResult`.  Yielded only by a gateway built with a hedge
    (:mod:`llmlab.hedging`), and only to a driver that races (``races = True``).  The two calls
    carry the same messages and stream setting; ``first`` is the one the chain routed to.
    ``send_second``, when given, is asked when the second call is due: False sends none (its
    deployment's breaker left the closed state during the wait), and the first call goes on alone."""

    first: Call
    second: Call
    after_s: float
    send_second: Callable[[], bool] | None = None

    def second_due(self) -> bool:
        """Whether the second call goes out now that it is due (see ``send_second``)."""
        return self.send_second is None or self.send_second()

    # what the run loops read of a streamed effect: the first call's (the second streams only if it wins)
    @property
    def stream(self) -> bool:
        return self.first.stream

    @property
    def deployment(self) -> Deployment:
        return self.first.deployment

    @property
    def guard(self) -> Callable[[str], tuple[str, bool]] | None:
        return self.first.guard

    @property
    def restore(self) -> Mapping[str, str] | None:
        return self.first.restore


@dataclass(frozen=True, slots=True)
class Admit:
    """Wait for a place among the requests the gateway works on at once (:mod:`llmlab.admission`).

    Value: None once admitted, else the :class:`~llmlab.errors.Overloaded` refusal to record.
    Yielded only by a gateway built with an admission, and answered by the run loops
    (:mod:`llmlab.runloop`), never by a driver: a synchronous request is admitted at once."""


@dataclass(frozen=True, slots=True)
class JoinFlight:
    """Wait until ``flight`` — an identical request already on the model path — lands, for at
    most ``wait_s`` seconds (:mod:`llmlab.coalescing`).  Value: True once it landed, False when
    the time ran out first.  Yielded only by a gateway built with ``coalesce``; answered by the
    run loops (a thread's or an event loop's wait) and by the simulator (virtual time), never by
    a live driver."""

    flight: Any  # llmlab.coalescing.Flight
    wait_s: float


#: the one Admit effect (it carries nothing)
ADMIT = Admit()

Effect = Call | Sleep | Embed | Admit | Race | JoinFlight


# ----------------------------------------------------------------------------- results
class ErrorKind(str, enum.Enum):
    """What went wrong with a provider call; decides retry and fallback behaviour."""

    RATE_LIMIT = "rate_limit"          # retry (honour Retry-After), then next deployment
    TIMEOUT = "timeout"                # retry, then next deployment
    SERVER = "server_error"            # 5xx: retry, then next deployment
    OVERLOADED = "overloaded"          # 529 / 503: retry, then next deployment
    CONNECTION = "connection"          # could not connect / stream cut: retry, then next
    MALFORMED = "malformed_response"   # unparseable body: retry, then next
    CONTEXT_WINDOW = "context_window"  # a deployment with a larger window
    AUTH = "authentication"            # this deployment's credentials: no retry, next deployment (and a breaker failure)
    NOT_FOUND = "not_found"            # 404: this deployment's model or route does not exist (retired, renamed): as AUTH
    BAD_REQUEST = "bad_request"        # no retry, typed error at once
    UNSUPPORTED = "unsupported_params"  # refused before sending (a param the provider does not take): next deployment
    CIRCUIT_OPEN = "circuit_open"      # the breaker skipped this deployment
    CANCELLED = "cancelled"            # the gateway cancelled it: a hedge's loser (says nothing of the provider)


RETRYABLE = frozenset({ErrorKind.RATE_LIMIT, ErrorKind.TIMEOUT, ErrorKind.SERVER, ErrorKind.OVERLOADED,
                       ErrorKind.CONNECTION, ErrorKind.MALFORMED})
#: the request's own fault: no retry, no fallback.  Not AUTH: a key that is wrong, expired or missing
#: is one deployment's (each provider has its own), and the next deployment may well answer
FATAL = frozenset({ErrorKind.BAD_REQUEST})


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class CallResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    ttft_s: float | None = None
    #: the functions the model asked the caller to run (OpenAI's ``message.tool_calls`` shape:
    #: ``{"id", "type": "function", "function": {"name", "arguments"}}``), often with no text
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    #: of ``prompt_tokens``, those the provider read from its prompt cache and wrote to it: they
    #: are priced at the model's cache rates (:meth:`llmlab.pricing.ModelPrice.cost`)
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    #: why the provider stopped: ``"stop"``, ``"length"`` (cut at ``max_tokens``), ``"tool_calls"``…;
    #: None when it did not say
    finish_reason: str | None = None

    ok = True


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class CallError:
    kind: ErrorKind
    message: str
    latency_s: float = 0.0
    retry_after_s: float | None = None
    status: int | None = None
    partial_text: str = ""  # text already streamed before a mid-stream failure
    #: the tokens a failed answer's usage reported: (prompt, completion), or (prompt, completion,
    #: cached, cache_write) when part of the prompt was read from or written to the prompt cache
    billed: tuple[int, ...] | None = None

    ok = False


@dataclass(frozen=True, slots=True)
class RaceResult:
    """How a :class:`Race` ended: ``first``'s result, and ``second``'s — None when it was never
    sent (``first`` answered, or failed, within ``after_s``).  At most one of them is ok; a call
    that lost is a :data:`ErrorKind.CANCELLED` error carrying what the provider billed for it
    (``billed``: its prompt once the provider had read it, and whatever it had streamed)."""

    first: CallResult | CallError
    second: CallResult | CallError | None = None

    @property
    def winner(self) -> int | None:
        """Which call answered: 0 the first, 1 the hedge; None when neither did."""
        if self.first.ok:
            return 0
        return 1 if self.second is not None and self.second.ok else None

    @property
    def ok(self) -> bool:
        """Whether one of the calls answered (what a streamed answer's run loop asks of a result)."""
        return self.winner is not None


@dataclass(frozen=True, slots=True)
class RaceDecided:
    """A streamed race decided, before its winner's stream (what a live driver yields first): the
    call that did not win — cancelled and billed, or failed on its own — ``loser``, and which
    call won (``winner``: 0 the first, 1 the hedge).  Its :class:`RaceResult` comes only at the
    end of the winner's stream: a caller who leaves before then is still billed the loser
    (:class:`~llmlab.errors.ClientDisconnected` carries this)."""

    winner: int
    loser: CallResult | CallError


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class EmbedResult:
    vectors: Any  # numpy array (n, dim)
    cost_usd: float = 0.0
    latency_s: float = 0.0


def embedding_cost(embedder: Any, texts: list[str]) -> float:
    """What ``embedder`` charges for ``texts`` (local embedders have no ``cost_usd``: free)."""
    cost = getattr(embedder, "cost_usd", None)
    return float(cost(texts)) if callable(cost) else 0.0


# ----------------------------------------------------------------------------- records
@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider call (or skipped deployment) made while serving a request."""

    deployment: str
    model: str
    purpose: str
    ok: bool
    error: str | None
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retry_after_s: float | None = None
    waited_s: float = 0.0  # backoff slept before this attempt

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class OutcomeKind(str, enum.Enum):
    """How a request ended (``Outcome.kind``): every kind but ``ERROR`` carries an answer."""

    MODEL = "model"              # answered by a model
    CACHE = "cache"              # answered from the exact or semantic cache
    LAST_RESORT = "last_resort"  # every provider failed; a similar cached answer was served
    RULE = "rule"                # answered by a rule (classifier said FAQ and a canned answer exists)
    ERROR = "error"              # a typed GatewayError


class CacheOutcome(str, enum.Enum):
    """What the caches did for a request (``Outcome.cache``): ``BYPASS`` when they were not
    consulted (the request said ``cache=False``, the gateway has none, or the request was
    refused before the cache stage), ``MISS``, a hit of either cache, or the last-resort answer
    served after every provider failed."""

    BYPASS = "bypass"
    MISS = "miss"
    EXACT_HIT = "exact_hit"
    SEMANTIC_HIT = "semantic_hit"
    LAST_RESORT_HIT = "last_resort_hit"


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What the caches store: the answer and enough about it to report a hit honestly."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    created_at: float
    metadata: Mapping[str, Any] = field(default_factory=dict)  # e.g. the intent of the filling request


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Outcome:
    """Exactly one per request: an answer (model, cache, last resort, rule) or a typed error.

    ``text`` is the answer (the caller's own PII put back), ``None`` for an error; ``model`` the
    model that wrote it (``"rule"`` for a rule's answer) and ``deployment`` the deployment that
    served it (``None`` for cache, rule and error outcomes).  ``prompt_tokens`` and
    ``completion_tokens`` are those of the call that produced the answer (0 for a cache hit, a
    rule or an error); ``cost_usd`` is everything the request was billed — failed and
    interrupted attempts, a classifier call, cascade stages, a priced embedding — and
    ``attempts`` itemise the calls.  ``latency_s`` runs from the request's start
    (``started_at``, the gateway clock's epoch seconds) to its outcome; ``ttft_s`` is the first
    streamed token's time, or ``latency_s`` for an answer that was not streamed (``None`` for an
    error).  ``route_tier`` and ``route_reason`` say how the router decided; ``similarity`` is a
    semantic hit's cosine; ``guard_findings`` name what the guardrails found (``"pii:pii.email"``);
    ``metadata`` is the request's own.  ``tool_calls`` are the functions the model asked the
    caller to run (OpenAI's ``message.tool_calls`` shape), ``()`` for a plain answer; the text is
    then often empty.  Such an answer is never cached: it is a step of the caller's agent loop.
    ``finish_reason`` is the provider's for a model answer (``"length"``: cut at ``max_tokens``,
    so a tool call's arguments may not be whole JSON), None otherwise or when it did not say.
    ``coalesced_with`` is the id of the identical request in flight this one waited for
    (:mod:`llmlab.coalescing`): answered from the cache that request filled when ``kind`` is
    ``CACHE``; None when it waited for none.
    """

    request_id: str
    tenant: str
    plan: str
    kind: OutcomeKind
    text: str | None
    model: str | None
    deployment: str | None
    attempts: tuple[Attempt, ...]
    cache: CacheOutcome
    route_tier: str | None
    route_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    ttft_s: float | None
    started_at: float
    error: GatewayError | None = None
    similarity: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    guard_findings: tuple[str, ...] = ()
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    finish_reason: str | None = None
    coalesced_with: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind is not OutcomeKind.ERROR

    def raise_for_error(self) -> "Outcome":
        """Raise :attr:`error` when the request failed; else return the outcome.

        A copy is raised (same type, message and fields): a raised exception keeps every frame
        it passes through on its ``__traceback__``, and the ledger keeps this outcome — raising
        ``error`` itself pinned each caller's frame and locals (a web request's body, say) for as
        long as the process ran.
        """
        if self.error is not None:
            raise copy.copy(self.error)
        return self

    @property
    def retries(self) -> int:
        """Provider calls made because the previous one failed (retries and fallbacks).

        A classifier call, a cascade escalation after an accepted-then-rejected answer and a
        skipped deployment are not retries.
        """
        calls = [a for a in self.attempts if a.purpose in ("answer", "cascade")]
        return sum(1 for before in calls[:-1] if not before.ok)
