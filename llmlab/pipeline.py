"""The request pipeline, written once as a generator that performs no I/O.

    guardrails in → rate limit → cache (exact → semantic) → [coalesce] → [admit] → route → budget reserve
      → fallback chain (retries, backoff, circuit breaker; cascade escalation)
      → budget settle → guardrails out → cache fill → ledger

``Pipeline.handle(request)`` yields effects (:mod:`llmlab.effects`) and returns exactly one
:class:`~llmlab.effects.Outcome`.  The live driver (:mod:`llmlab.live`) and the SimPy driver
(:mod:`llmlab.sim.driver`) run the same generator, so the policy tuned in the lab is the
policy that ships.

The budget is reserved *after* routing (the design notes list it before the cache): the
reservation needs the routed deployments' prices, and a cache hit costs nothing, so a tenant
at its cap can still be served from cache.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, replace
from typing import Any, Callable, Generator, Mapping, Protocol, Sequence

from .budgets import BudgetPolicy, MemoryBudgets, RequestHolds, next_month_start
from .cache.keys import CacheKeyPolicy, attachments_fingerprint
from .cache.store import KeyValueStore
from .coalescing import Coalesce, Flights
from .effects import (ADMIT, Attempt, CachedAnswer, CacheOutcome, Call, CallError, CallResult, Deployment, Effect, Embed,
                      FATAL, ErrorKind, JoinFlight, Outcome, OutcomeKind, embedding_cost)
from . import secret_logs
from .errors import (AllProvidersFailed, BudgetExceeded, BudgetUnavailable, ClientDisconnected, GatewayError,
                     GuardrailBlocked, ProviderRejected, RateLimited, redact_text)
from .fallback import (UNSERVED_BY_SETUP, ChainResult, CircuitBreaker, RetryPolicy, billed_part, credentials_refused,
                       judge, run_chain)
from .hedging import Hedge
from .ledger import Ledger
from .logs import log_failure
from .placeholders import restore_placeholders
from .pricing import PriceBook
from .ratelimit import RateLimiterBackend
from .request_deadline import call_time_left, ran_out
from .request import Request, answer_token_limit, content_text
from .routing import RouteDecision, Router, answer_routes, cascade_tier
from .steplock import StepLock
from .stream_guard import OutputCheck
from .image_tokens import image_details, images_bound
from .tokens import max_message_tokens, max_params_tokens

log = logging.getLogger("llmlab.gateway")

#: a coalescing leader's failures after which its followers board again (llmlab.coalescing): its
#: caller left, every provider failed (maybe for a while), it found no place in the admission; a
#: last-resort answer counts too (see Pipeline._land)
_HANDED_ON = frozenset({"client_disconnected", "all_providers_failed", "overloaded"})


class SemanticSlot(Protocol):
    """What the pipeline needs from a semantic cache (see :mod:`llmlab.cache.semantic`)."""

    @property
    def embedder(self) -> Any: ...  # read-only: SharedSemanticCache's is its wrapped cache's

    def lookup(self, namespace: str, text: str, vector: Any, now: float, *, threshold: float | None = None) -> Any: ...

    # ``object``: the pipeline ignores the result (SemanticCache returns whether it stored; a
    # ``None`` here made mypy refuse Gateway(semantic_cache=SemanticCache(…)), the README's example)
    def store(self, namespace: str, text: str, vector: Any, value: Any, now: float) -> object: ...

    def lookup_last_resort(self, namespace: str, text: str, vector: Any, now: float) -> Any: ...


@dataclass(slots=True)
class _State:
    """Everything one request accumulates on its way through the stages."""

    request: Request
    started: float
    messages: tuple
    restore: Mapping[str, str]
    findings: list[str]
    attempts: list[Attempt]
    cache: CacheOutcome = CacheOutcome.BYPASS
    tier: str | None = None
    reason: str = ""
    extra_cost: float = 0.0  # embeddings
    key: str | None = None
    namespace: str | None = None
    vector: Any = None
    rate_tokens: int = 0  # tokens the rate limiter took at the worst case, settled when the request ends
    images: tuple[str, ...] = ()  # the detail of each image part: held per deployment (llmlab.image_tokens)
    flight: Any = None  # the flight this request leads (llmlab.coalescing), landed when it is done
    coalesced_with: str | None = None  # the leader of the last flight this request waited for
    hand_on: bool = False  # it failed in a way that says nothing of its followers' requests (_land)
    deadline: float | None = None  # the clock reading the request must end by (llmlab.request_deadline)
    expired: bool = False  # the deadline kept it from a call or a wait


def _answer_masker() -> Callable[[Any], Any]:
    """:func:`llmlab.guardrails.stages.answer_masker`, imported when guards exist (the guardrails
    take ~40 ms to import, and ``import llmlab`` must stay light)."""
    from .guardrails.stages import answer_masker

    return answer_masker


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _with_arguments(call: Mapping[str, Any], arguments: str) -> Mapping[str, Any]:
    """``call`` (a tool call, OpenAI's shape) with its function's arguments replaced."""
    return {**call, "function": {**call["function"], "arguments": arguments}}


def _billed(attempts: Sequence[Attempt]) -> float:
    """What ``attempts`` were billed: their costs added in order, the same float ``sum`` gives.
    A loop rather than ``sum`` over a generator expression, which costs a generator object and
    its frame on each of the several times a request adds its costs up."""
    total = 0
    for a in attempts:
        total += a.cost_usd
    return total


def _placeholders_back(text: str, restore: Mapping[str, str]) -> str:
    """``text`` with the asker's own masked values (however the model came to write them) as
    their placeholders again.  What the cache keeps: a later asker gets *their* values put back,
    and public details the answer quotes (a help desk's address) stay as written.  Longest value
    first: with kim@example.co as [EMAIL_1] and kim@example.com as [EMAIL_2], the second was
    logged as ``[EMAIL_1]m``."""
    for placeholder, original in sorted(restore.items(), key=lambda item: -len(item[1])):
        if original in text:
            text = text.replace(original, placeholder)
    return text


class Pipeline:
    """The stages wired in order.  Construct through :class:`~llmlab.gateway.Gateway`."""

    def __init__(self, *, deployments: Mapping[str, Deployment], router: Router,
                 fallbacks: Mapping[str, Sequence[str]], prices: PriceBook, clock: Callable[[], float],
                 rng: random.Random, exact_cache: KeyValueStore | None, key_policy: CacheKeyPolicy,
                 semantic_cache: SemanticSlot | None, rate_limiter: RateLimiterBackend | None, budgets: Any,
                 budget_policy: BudgetPolicy | None, retry: RetryPolicy | Mapping[str, RetryPolicy],
                 breaker_factory: Callable[[], CircuitBreaker], input_guards: Sequence[Any] = (),
                 output_guards: Sequence[Any] = (), ledger: Ledger | None = None, unmask_answers: bool = False,
                 default_max_tokens: int = 1024, log_content: bool = False, admits: bool = False,
                 hedge: Hedge | None = None, coalesce: Coalesce | None = None,
                 request_timeout_s: float | None = None) -> None:
        self.deployments = dict(deployments)
        self.router = router
        self.fallbacks = {k: tuple(v) for k, v in fallbacks.items()}
        self.prices = prices
        self.clock = clock
        self.rng = rng
        self.exact_cache = exact_cache
        self.key_policy = key_policy
        self.semantic_cache = semantic_cache
        self.rate_limiter = rate_limiter
        self.budgets = budgets if budgets is not None else MemoryBudgets()
        self.budget_policy = budget_policy
        self._retry = retry
        self._breaker_factory = breaker_factory
        self.breakers: dict[str, CircuitBreaker] = {}
        self.input_guards = tuple(input_guards)
        self.output_guards = tuple(output_guards)
        self.ledger = ledger if ledger is not None else Ledger()
        self.unmask_answers = unmask_answers
        self.default_max_tokens = default_max_tokens
        self.log_content = log_content
        #: whether requests ask for a place (the ADMIT effect) before the model path: a gateway with an Admission
        self.admits = admits
        #: race the chain's first answering call against the next deployment when slow (llmlab.hedging)
        self.hedge = hedge
        #: identical requests in flight at once: one leads, the others wait for its answer (llmlab.coalescing)
        self.flights = Flights(coalesce) if coalesce is not None else None
        #: the deadline over a whole request unless the request sets its own (None: none; llmlab.request_deadline)
        self.request_timeout_s = request_timeout_s
        self._chains: dict[str, tuple[Deployment, ...]] = {}
        self._cascades: dict[tuple[str, ...], list[tuple[Deployment, ...]]] = {}
        #: deployments whose last call refused the gateway's credentials (logged once until one answers)
        self._credentials_refused: set[str] = set()
        self._not_found: set[str] = set()  # deployments whose last call answered 404 (warned about once)
        #: held by the live drivers while the generator runs between effects (see runloop.PipelineRun);
        #: user code (guards, routers, acceptance checks, the ledger's sink, logging) runs outside it
        self.lock = StepLock()
        self._ledger_splits = type(self.ledger).record is Ledger.record
        self._prices = {name: prices.price(d.price_key) for name, d in self.deployments.items()}
        # an embedder that bills (litellm:…) is held against caps; a local one is free
        self._embeddings_priced = semantic_cache is not None and embedding_cost(semantic_cache.embedder, ["x"]) > 0
        # answers go through the PII maskers before they are logged (see _masked_for_log)
        self._answer_maskers = tuple(m for m in map(_answer_masker(), self.input_guards) if m is not None) \
            if self.input_guards else ()
        #: a streamed answer's chunks go through the output guards before the caller sees them
        self._stream_check = OutputCheck(self.output_guards) if self.output_guards else None

    # ------------------------------------------------------------------ helpers
    def chain_for(self, primary: str) -> tuple[Deployment, ...]:
        chain = self._chains.get(primary)
        if chain is None:
            names = [primary, *self.fallbacks.get(primary, self.fallbacks.get("*", ()))]
            seen: list[str] = []
            for n in names:
                if n not in seen:
                    seen.append(n)
            chain = self._chains[primary] = tuple(self.deployments[n] for n in seen)
        return chain

    def cascade_chains(self, first: str, rest: Sequence[str]) -> list[tuple[Deployment, ...]]:
        """Each cascade stage's fallback chain without the cascade's other stages.

        A later stage is reached by escalating and an earlier one has answered (and been
        rejected) or failed already: in a stage's fallback chain either was called a second time —
        ``fallbacks={"gpt-4o-mini": ["gpt-4o"]}`` with stages (gpt-4o-mini, gpt-4o) had gpt-4o
        answer stage 0, be rejected by the cheap stage's check, then answer again as stage 1, each
        held in the budget and billed."""
        key = (first, *rest)
        chains = self._cascades.get(key)
        if chains is None:
            chains = self._cascades[key] = [
                tuple(d for d in self.chain_for(stage) if d.name == stage or d.name not in key) for stage in key]
        return list(chains)

    def breaker(self, name: str) -> CircuitBreaker:
        b = self.breakers.get(name)
        if b is None:
            b = self.breakers[name] = self._breaker_factory()
        return b

    def retry_for(self, dep: Deployment) -> RetryPolicy:
        """One policy for every deployment, or a mapping by deployment name (``"*"`` = default)."""
        if isinstance(self._retry, RetryPolicy):  # checked first: a typing.Mapping check costs µs per call
            return self._retry
        return self._retry.get(dep.name, self._retry.get("*", RetryPolicy()))

    def price_result(self, dep: Deployment, result: CallResult) -> float:
        return self._prices[dep.name].cost(result.prompt_tokens, result.completion_tokens, result.cached_tokens,
                                           result.cache_write_tokens)

    def worst_case_cost(self, chain: Sequence[Deployment], prompt_tokens: int, max_tokens: int | None,
                        choices: int = 1, images: Sequence[str] = ()) -> float:
        """The dearest call ``chain`` can make: each of ``choices`` answers (``n``) billed at its bound,
        and the prompt's images (their ``detail``s) at the most each deployment's model bills for one."""
        return max(self._prices[d.name].bound(
            prompt_tokens + images_bound(d, images) if images else prompt_tokens,
            choices * min(max_tokens or d.max_output_tokens, d.max_output_tokens)) for d in chain)

    # ------------------------------------------------------------------ the pipeline
    def handle(self, request: Request, *, stream: bool = False, hedged: bool = True) -> Generator[Effect, Any, Outcome]:
        """Serve one request.  Never raises for a provider or policy failure; records the outcome.

        ``hedged=False`` serves it without the gateway's hedge: for a driver that would send a race's
        first call alone (the live sync API), so that no budget is held for a hedge never sent."""
        state = _State(request, self.clock(), request.messages, {}, [], [])
        limit = request.request_timeout_s or self.request_timeout_s
        if limit is not None:
            state.deadline = state.started + limit
        try:
            outcome = yield from self._serve(state, stream, self.hedge if hedged else None)
        except ClientDisconnected as exc:  # not a fault of the gateway: recorded, not logged as one
            # recorded without the call it interrupted: the deployment holds credentials
            outcome = self._error(state, ClientDisconnected(*exc.args[:1]))
        except Exception as exc:  # a bug or a user-supplied object failing must not take the gateway down
            # logged outside the lock, as every log line: a handler is user code
            scrub = self._scrubber(state.restore)  # for the log's traceback and the outcome's message alike
            self.lock.outside(log_failure, log, "llmlab internal error", exc, scrub, request_id=request.request_id)
            detail = self.lock.outside(scrub, str(exc))
            outcome = self._error(state, GatewayError(f"internal error: {type(exc).__name__}: {detail}"))
        except BaseException:
            # closed midway (GeneratorExit), or a KeyboardInterrupt / SystemExit out of user code in a
            # step, which ends this generator for good: a flight left in the air would make every later
            # identical request wait max_wait_s for a landing that never comes
            if state.flight is not None:
                self._land(state, None)
            raise
        if state.flight is not None:
            self._land(state, outcome)
        if state.rate_tokens:
            settle = getattr(self.rate_limiter, "settle", None)
            if settle is not None:
                used = sum(a.prompt_tokens + a.completion_tokens for a in outcome.attempts)
                settle(request.tenant, request.plan, state.rate_tokens, used, self.clock())
        if self._ledger_splits:  # counted under the lock, the sink (user code) outside it
            self.ledger.tally(outcome)
        else:  # a ledger of one's own: its record() as it is
            try:
                self.ledger.record(outcome)
            except Exception as exc:  # user code: the answer, already billed, still reaches the caller
                self.lock.outside(log_failure, log, "llmlab ledger failed to record a request", exc,
                                  self._scrubber(state.restore), request_id=request.request_id)
        if not self._silent():
            self.lock.outside(self._announce, outcome, state.restore)
        return outcome

    def _land(self, s: _State, outcome: Outcome | None) -> None:
        """The flight ``s`` led is done: its followers look in the caches again (llmlab.coalescing).
        One that finds nothing boards again when the leader's failure says nothing of its own fate
        (``outcome`` None: closed midway), else goes on alone.  A last-resort answer is such a
        failure too: every provider failed, and the stale or similar answer it served is no fresh
        entry for the followers to find (sent on alone, each of them called the failing providers
        at once: the stampede coalescing is for, in the outage it matters most in).  So is a
        rejection because no deployment takes the gateway's keys (``s.hand_on``): the keys, not
        the request, were refused, and each follower sent on alone called every refusing one."""
        handed_on = outcome is None or s.hand_on or outcome.kind is OutcomeKind.LAST_RESORT or (
            outcome.error is not None and outcome.error.code in _HANDED_ON)
        self.flights.land(s.flight, handed_on)
        s.flight = None

    def _silent(self) -> bool:
        """Whether :meth:`_announce` would do nothing: no sink on the gateway's own ledger and the
        request log off (the simulator's case).  Checked per request (a sink or a log level may be
        set at any time) at the cost of two attribute reads, instead of four calls per request."""
        ledger = self.ledger
        return (self._ledger_splits and ledger.sink is None and type(ledger).notify is Ledger.notify
                and not log.isEnabledFor(logging.INFO))

    def _serve(self, s: _State, stream: bool, hedge: Hedge | None) -> Generator[Effect, Any, Outcome]:
        req = s.request
        # 1. guardrails in: mask PII before anything is sent, cached or logged
        for guard in self.input_guards:
            verdict = self.lock.outside(guard.check_input, s.messages)
            if verdict.findings:
                s.findings.extend(f"{guard.name}:{f.kind}" for f in verdict.findings)
            if verdict.blocked:
                return self._error(s, GuardrailBlocked(f"blocked by {guard.name}: {verdict.blocked}"))
            s.messages = tuple(verdict.messages)
            if verdict.restore:
                s.restore = {**s.restore, **verdict.restore}
        if self._answer_maskers and isinstance(req.params.get("user"), str):
            s.request = req = self._masked_user(s)
        params = req.params
        max_tokens = answer_token_limit(params)
        choices = params.get("n") or 1  # providers bill every one of n answers
        # an upper bound: reservations must not undershoot (tool definitions are prompt text too)
        prompt_est = max_message_tokens(s.messages) + max_params_tokens(params)
        s.images = images = image_details(s.messages)  # held per model: not in prompt_est
        policy = self.budget_policy

        # 2. rate limit
        if self.rate_limiter is not None:
            tokens = prompt_est + choices * (max_tokens or self.default_max_tokens)
            if images:  # the route is not known yet: the dearest deployment's images
                tokens += max(images_bound(d, images) for d in self.deployments.values())
            refusal = self.rate_limiter.acquire(req.tenant, req.plan, tokens, s.started)
            if refusal is not None:
                return self._error(s, RateLimited(req.tenant, refusal.limit, refusal.retry_after_s, tokens=tokens))
            s.rate_tokens = tokens

        # 3. caches: exact, then semantic
        use_cache = req.cache and (self.exact_cache is not None or self.semantic_cache is not None)
        if use_cache:
            s.cache = CacheOutcome.MISS
            cache_params = dict(params)
            cache_params["model"] = req.model
            keys = self.key_policy
            digests = None
            if self.exact_cache is not None:
                digests = keys.digests(s.messages)  # hashed once: the namespace's context reuses them
                s.key = keys.key_from(digests, cache_params)
                hit = self._exact_hit(s, s.started)
                if hit is not None:
                    return hit
            text = content_text(s.messages[-1].get("content")) if self.semantic_cache is not None else ""
            if text.strip():  # an image-only turn has no text to compare
                # the turn's images (audio, files) are not compared: another one is another question
                context = keys.context_from(s.messages, digests) + attachments_fingerprint(s.messages[-1])
                s.namespace = "|".join((req.tenant, context, keys.namespace_key(cache_params)))
                cap = policy.cap_for(req.tenant, req.plan) if self._embeddings_priced and policy is not None else None
                if cap is not None:  # a priced embedding is held with the answer it precedes
                    embedded = yield from self._held_embedding(s, text, cap, prompt_est)
                else:
                    embedded = yield from self._embed(s, text)
                    if embedded is not None and embedded.cost_usd:
                        s.extra_cost += embedded.cost_usd
                        if policy is not None and policy.cap_for(req.tenant, req.plan) is not None:
                            # a price only the driver knew (llmlab's drivers price through the embedder's
                            # ``cost_usd``, which is held above): charged, as it cannot be held
                            self.budgets.charge(req.tenant, embedded.cost_usd, self.clock())
                if embedded is not None:
                    s.vector = embedded.vectors[0]
                    hit = self._semantic_hit(s, text, self.clock())
                    if hit is not None:
                        return hit
            # an identical request already on the model path answers this one too (llmlab.coalescing);
            # not one with neither an exact key nor an embedding (a semantic cache alone, its embedder
            # down or an image-only turn): it can find no answer afterwards, nor leave one, and it
            # waited out the leader's whole call for nothing before calling on its own
            if self.flights is not None and (s.key is not None or s.vector is not None) \
                    and (not stream or self.flights.policy.streams):
                key = s.key if s.key is not None else keys.key_from(digests or keys.digests(s.messages), cache_params)
                served = yield from self._coalesced(s, key, text)
                if served is not None:
                    return served

        # 4. admission: a place among the requests on the model path (a cache hit never queues)
        if self.admits:
            refusal = yield ADMIT
            if refusal is not None:
                return self._error(s, refusal)

        # 5. route
        if req.model is not None:
            decision = RouteDecision(req.model, "pinned", f"caller pinned {req.model}")
        else:
            now = getattr(self.router, "decide_now", None)  # a decision that needs no call (routing.Router)
            decision = self.lock.outside(now, self._masked_request(s)) if now is not None else None
            if decision is None:
                decision = yield from self._route(s, prompt_est)
        s.tier, s.reason = decision.tier, decision.reason
        if decision.answer is not None:
            return self._rule_answer(s, decision.answer)

        # 6. budget: reserve the worst case of every stage before any call
        chains = self.cascade_chains(decision.deployment, decision.cascade) if decision.cascade \
            else [self.chain_for(decision.deployment)]
        holds: RequestHolds | None = None
        cap = policy.cap_for(req.tenant, req.plan) if policy is not None else None
        if cap is not None:
            costs = [self.worst_case_cost(c, prompt_est, max_tokens, choices, images) for c in chains]
            needed = sum(costs)
            reservation = self.budgets.try_reserve(req.tenant, needed, cap, s.started)
            # a cascade whose cheap stage is the downgrade target is downgraded too (to that stage
            # alone): it was refused, although the downgrade was affordable, for holding every stage
            if reservation is None and policy.on_exceed == "downgrade" and \
                    (decision.deployment != policy.downgrade_to or decision.cascade):
                chains = [self.chain_for(policy.downgrade_to)]
                decision = RouteDecision(policy.downgrade_to, "downgraded", "")
                s.tier, s.reason = "downgraded", f"{s.reason}; over budget → downgraded to {policy.downgrade_to}"
                costs = [self.worst_case_cost(chains[0], prompt_est, max_tokens, choices, images)]
                needed = costs[0]
                reservation = self.budgets.try_reserve(req.tenant, needed, cap, s.started)
            if reservation is None and getattr(self.budgets, "last_refusal_unavailable", False):
                return self._error(s, BudgetUnavailable(req.tenant))
            if reservation is None:
                spent = self.budgets.spent(req.tenant, s.started)
                reserved = getattr(self.budgets, "reserved", lambda *_: 0.0)(req.tenant, s.started)
                return self._error(s, BudgetExceeded(req.tenant, spent, cap, next_month_start(s.started), needed,
                                                     reserved_usd=reserved))
            holds = RequestHolds(self.budgets, reservation, cap)

        # 7. fallback chain(s), escalating through the cascade when an answer is rejected; after a
        # failure the provider billed, the hold is topped up before the next call (_keep_covered)
        answer: ChainResult | None = None
        last: ChainResult | None = None
        answered_stage = 0
        spent_before = _billed(s.attempts)  # usually none yet
        try:
            for stage, chain in enumerate(chains):
                purpose = "answer" if stage == len(chains) - 1 else "cascade"
                make_call = self._call_maker(s, purpose, stream and purpose == "answer")
                before_call = before_hedge = None
                if holds is not None:
                    still = sum(costs[stage:])
                    before_call = self._keep_covered(s, holds, still, spent_before)
                    if hedge is not None:
                        before_hedge = self._keep_covered(s, holds, still, spent_before,
                                                          refused="over budget for a hedge → none sent to")
                last = yield from run_chain(chain, make_call, self.retry_for, self.breaker, self.price_result,
                                            self.clock, self.rng, before_call, hedge, before_hedge, s.deadline)
                s.attempts.extend(last.attempts)
                if last.result is None or len(last.attempts) > 1 or self._credentials_refused or self._not_found:
                    self._note_credentials(last.attempts)
                if last.expired and last.result is None:  # no further call, no escalation: the last resort
                    self._expired(s)
                    break
                if last.stopped:  # the budget cannot cover another call: no escalation either
                    break
                if last.result is None:
                    if stage < len(chains) - 1 and last.error is not None and last.error.kind not in FATAL:
                        # this stage is down, or cannot take the request (seed to Claude, a window too
                        # small): the next stage's deployments may answer, and the hold covers them
                        s.reason += f"; {chain[0].name} failed ({last.error.kind.value}) → escalating"
                        continue
                    break
                answer, answered_stage = last, stage
                if stage == len(chains) - 1 or self._accepted(s, decision, last):
                    break
        except ClientDisconnected as exc:  # the streamed part was billed: it counts, and settles the budget
            s.attempts.extend(exc.attempts)  # the interrupted chain's earlier calls
            dep, partial = exc.deployment, exc.partial
            if dep is not None and partial is not None:
                hedge_won = exc.race is not None and exc.race.winner == 1  # a hedge's text: no retry
                s.attempts.append(Attempt(dep.name, dep.model, "hedge" if hedge_won else "answer", False, exc.message,
                                          partial.latency_s, partial.prompt_tokens, partial.completion_tokens,
                                          self.price_result(dep, partial)))
            raise
        finally:
            if holds is not None:
                holds.settle(_billed(s.attempts) - spent_before)

        if answer is None and last is not None and last.stopped:
            return self._refused_midway(s, holds, needed)
        if answer is None or answer.result is None:
            return self._failed(s, last)
        if answer is not last and last is not None and last.result is None:
            s.reason += f"; escalation failed, serving {answer.deployment.name}'s answer"
        if answered_stage and s.tier == cascade_tier(0):  # the ledger says which stage answered
            s.tier = cascade_tier(answered_stage)
        # an earlier stage's answer served because no later stage answered was *rejected* by the
        # acceptance check: served (better than nothing) but not cached, or every identical request
        # got it from the cache for the TTL, never escalating again once the later stage was back
        return self._model_answer(s, answer, cache=answer is last)

    # ------------------------------------------------------------------ stage helpers
    def _exact_hit(self, s: _State, now: float) -> Outcome | None:
        """The exact cache's answer to ``s`` (its key set), served; None on a miss."""
        hit = self.exact_cache.get(s.request.tenant, s.key, now)
        if hit is None:
            return None
        s.cache = CacheOutcome.EXACT_HIT
        return self._answered(s, OutcomeKind.CACHE, hit.value)

    def _semantic_hit(self, s: _State, text: str, now: float) -> Outcome | None:
        """The semantic cache's answer to ``s`` (its vector set), served; None on a miss."""
        hit = self.semantic_cache.lookup(s.namespace, text, s.vector, now)
        if hit is None:
            return None
        s.cache = CacheOutcome.SEMANTIC_HIT
        return self._answered(s, OutcomeKind.CACHE, hit.value, similarity=hit.similarity)

    def _flight_answer(self, s: _State, value: CachedAnswer) -> Outcome:
        """The answer the leader of ``s``'s flight cached, served as the hit the caches would have
        given had they kept it (an identical request: same tenant, same key)."""
        if s.key is not None:
            s.cache = CacheOutcome.EXACT_HIT
            return self._answered(s, OutcomeKind.CACHE, value)
        s.cache = CacheOutcome.SEMANTIC_HIT  # a semantic cache alone: the same text, so the same vector
        return self._answered(s, OutcomeKind.CACHE, value, similarity=1.0)

    def _coalesced(self, s: _State, key: str, text: str) -> Generator[Effect, Any, Outcome | None]:
        """Board the flight of ``key`` (llmlab.coalescing): None when this request leads it (or
        goes on alone), else the answer the leader left in the caches.  A follower whose leader
        failed or left boards again, until ``max_wait_s`` after it first boarded; one whose wait
        ran out with the leader still in the air takes the flight over (:meth:`Flights.take_over`)."""
        flights, tenant = self.flights, s.request.tenant
        deadline = self.clock() + flights.policy.max_wait_s
        if s.deadline is not None and s.deadline < deadline:  # the request's own deadline is nearer
            deadline = s.deadline
        while True:
            flight, leads = flights.board(tenant, key, s.request.request_id)
            if leads:
                s.flight = flight
                return None
            s.coalesced_with = flight.leader
            landed = yield JoinFlight(flight, max(deadline - self.clock(), 0.0))
            now = self.clock()
            hit = self._exact_hit(s, now) if s.key is not None else None
            if hit is None and s.vector is not None:
                hit = self._semantic_hit(s, text, now)
            if hit is None and flight.answer is not None:  # the caches lost it (a dropped write, an eviction)
                hit = self._flight_answer(s, flight.answer)
            if hit is not None:
                flights.served += 1
                return hit
            if not landed and s.deadline is not None and call_time_left(s.deadline, now) is None:
                return None  # the request's deadline ran out: it calls no provider, so it leads no flight
            if not landed:  # out of time, its leader still in the air: it calls on its own, and leads
                own = flights.take_over(flight, s.request.request_id)
                if own is not None:
                    s.flight = own
                return None
            if not flight.handed_on or now >= deadline:  # waiting on would not help
                return None

    def _note_credentials(self, attempts: Sequence[Attempt]) -> None:
        """Keep which deployments refused the gateway's credentials at their last call (an answer
        takes one off), and log it when one starts to.  The chain falls back past such a
        deployment (each provider has its own key), which keeps requests answered but would hide
        a wrong, expired or missing key behind the fallback's answers (and its prices) until the
        fallback failed too.  :meth:`_failed` reads the set: a deployment its breaker skips for a
        refused key does not take the request either (:func:`~llmlab.fallback.credentials_refused`).
        A deployment answering 404 (its model retired or renamed) is logged once the same way."""
        for a in attempts:
            if a.ok:
                self._credentials_refused.discard(a.deployment)
                self._not_found.discard(a.deployment)
            elif a.error and a.error.startswith(ErrorKind.AUTH.value) and a.deployment not in self._credentials_refused:
                self._credentials_refused.add(a.deployment)
                self.lock.outside(log.warning, "llmlab deployment %r refused the gateway's credentials (%s): requests "
                                  "fall back past it until its key is fixed", a.deployment, a.error[:200])
            elif a.error and a.error.startswith(ErrorKind.NOT_FOUND.value) and a.deployment not in self._not_found:
                # a retired model or a renamed deployment is hidden behind the fallback's answers the same way
                self._not_found.add(a.deployment)
                self.lock.outside(log.warning, "llmlab deployment %r answered 404, its model or route not found (%s): "
                                  "requests fall back past it until its model name is fixed", a.deployment, a.error[:200])

    def _keep_covered(self, s: _State, holds: RequestHolds, still: float, spent_before: float, *,
                      refused: str = "over budget after a billed failure → no further call to"
                      ) -> Callable[..., bool]:
        """The chain's ``before_call``: before every call, the holds must cover what this request's
        calls were billed so far plus ``still``, the worst case of the stages not yet answered
        (this one included).  A failure the provider billed (a cut stream, an answer whose usage
        it reported but that could not be used, such as a malformed body) spent part of that
        worst case without answering, so the retry or fallback after it needs a top-up; a cascade
        stage that failed used only its own stage's share and the next stage needs none.  Refused
        (the cap cannot take it): the chain stops without the call and the request is refused
        (:meth:`_refused_midway`).  As a hedge's ``before_hedge``, ``extra`` is the race loser's bill
        on top, and a refusal sends no hedge (``refused`` says so in the reason)."""
        # what the stage's first call needs: the earlier stages' calls (s.attempts does not change
        # while the chain runs) and the worst case to come; a retry adds what this chain was billed
        first = (_billed(s.attempts) - spent_before if s.attempts else 0.0) + still

        def before_call(dep: Deployment, attempts: Sequence[Attempt], extra: float = 0.0) -> bool:
            total = (first + _billed(attempts) if attempts else first) + extra
            if total - holds.held <= 1e-12:  # covered (every call that was billed nothing)
                return True
            try:
                if holds.cover(total, self.clock()):
                    return True
            except BaseException:  # a backend that raised ends the chain: its billed calls still count
                s.attempts.extend(attempts)
                raise
            s.reason += f"; {refused} {dep.name}"
            return False

        return before_call

    def _refused_midway(self, s: _State, holds: RequestHolds, needed: float) -> Outcome:
        """A chain stopped because the budget could not cover another call after a billed failure:
        a budget refusal (the billed attempts are recorded and were charged), as at the first
        check — not the last-resort cache, which a refusal before any call does not reach either."""
        tenant, now = s.request.tenant, self.clock()
        if holds.unavailable:
            return self._error(s, BudgetUnavailable(tenant))
        reserved = getattr(self.budgets, "reserved", lambda *_: 0.0)(tenant, now)
        return self._error(s, BudgetExceeded(tenant, self.budgets.spent(tenant, now), holds.cap,
                                             next_month_start(now), needed, reserved_usd=reserved))

    def _held_embedding(self, s: _State, text: str, cap: float, prompt_est: int) -> Generator[Effect, Any, Any]:
        """Embed the last user turn with a priced embedder under a cap: the embedding is held
        together with the answer it would precede (:meth:`_hold_before_routing`), so a tenant who could
        not afford the answer skips the semantic lookup rather than pay for it (None)."""
        reservation = self._hold_before_routing(s, embedding_cost(self.semantic_cache.embedder, [text]), prompt_est,
                                                cap)
        if reservation is None:
            return None
        try:
            embedded = yield from self._embed(s, text)
        except BaseException:  # cancelled mid-call: the hold must not outlive the request
            self.budgets.settle(reservation, 0.0)
            raise
        cost = embedded.cost_usd if embedded is not None else 0.0
        s.extra_cost += cost
        self.budgets.settle(reservation, cost)
        return embedded

    def _embed(self, s: _State, text: str) -> Generator[Effect, Any, Any]:
        """Embed the last user turn for the semantic cache; None when the embedder failed.

        The semantic cache is an optimisation: when its embedder fails (an API embedder's outage,
        a model that will not load) the request goes on as a miss, neither looked up nor stored,
        and the failure is logged (its type only: the message may quote the text)."""
        try:
            embedded = yield Embed(self.semantic_cache.embedder, (text,))
        except ClientDisconnected:
            raise
        except Exception as exc:
            self.lock.outside(log.warning, "llmlab semantic cache skipped: the embedder raised %s",
                              type(exc).__name__, extra={"request_id": s.request.request_id})
            return None
        vectors = getattr(embedded, "vectors", None)
        try:  # an embedder that returned nothing usable (None, no rows) is a miss too, not an internal error
            usable = vectors is not None and len(vectors) > 0
        except TypeError:
            usable = False
        if not usable:
            self.lock.outside(log.warning, "llmlab semantic cache skipped: the embedder returned no vectors (%s)",
                              type(vectors).__name__, extra={"request_id": s.request.request_id})
            return None
        return embedded

    def _route(self, s: _State, prompt_est: int) -> Generator[Effect, Any, RouteDecision]:
        """Run the router, pricing and recording any call it makes (the classifier's).

        Such a call goes through its deployment's circuit breaker like an answer's: while the
        breaker is open the router hears ``circuit_open`` at once and routes by default, instead of
        every request waiting out a failing or slowed classifier's timeout first."""
        # routers see the masked messages: a classifier call must not send what the answer call may not
        gen = self.router.decide(self._masked_request(s))
        sent: Any = None
        while True:
            try:
                effect = self.lock.outside(gen.send, sent)  # the router's own code
            except StopIteration as stop:
                return stop.value
            reservation = ticket = None
            if isinstance(effect, Call):
                own = self.deployments.get(effect.deployment.name)
                if own is not None and own is not effect.deployment:
                    # a router shared by several gateways is bound to the last one built: its call
                    # went to that gateway's deployment (its api_base, its key), not to this one's
                    effect = replace(effect, deployment=own)
                dep = effect.deployment
                breaker = self.breaker(dep.name)
                ticket = breaker.admit(self.clock())
                if ticket is None:  # no call, no attempt: the router's reason says why it routed by default
                    sent = CallError(ErrorKind.CIRCUIT_OPEN, f"circuit open for {dep.name}")
                    continue
                if s.deadline is not None:  # a classification is a call: held to the request's deadline too
                    left = call_time_left(s.deadline, self.clock())
                    if left is None:
                        breaker.release_probe(ticket)
                        sent = CallError(ErrorKind.TIMEOUT, f"{dep.name} not called: {ran_out(s.deadline - s.started)}")
                        continue
                    effect = replace(effect, left_s=left)
            if isinstance(effect, Call) and self.budget_policy is not None:
                # a router's own call (the classifier's) is reserved like any other: a tenant at its
                # cap must not keep paying for classifications of requests the budget then refuses
                cap = self.budget_policy.cap_for(s.request.tenant, s.request.plan)
                if cap is not None:
                    # held during the call with the answer it leads to: a tenant who cannot afford an
                    # answer is not charged for a classification
                    call_cost = self.worst_case_cost((effect.deployment,), max_message_tokens(effect.messages),
                                                     answer_token_limit(effect.params),
                                                     images=image_details(effect.messages))
                    try:
                        reservation = self._hold_before_routing(s, call_cost, prompt_est, cap)
                    except BaseException:  # a budgets backend that raised: the probe must not stay out
                        breaker.release_probe(ticket)
                        raise
                    if reservation is None:
                        breaker.release_probe(ticket)
                        sent = CallError(ErrorKind.BAD_REQUEST, "not called: the tenant's monthly budget cannot "
                                                                "cover this call")
                        continue
            try:
                sent = yield effect
            except BaseException:  # cancelled or disconnected mid-call: the hold must not outlive the request
                if reservation is not None:
                    self.budgets.settle(reservation, 0.0)
                if ticket is not None:  # nor a half-open probe slot
                    breaker.release_probe(ticket)
                raise
            if isinstance(effect, Call):
                judge(breaker, ticket, effect, sent, self.clock())
                # a failed call the provider billed (a label its content filter stopped) is charged too
                billed = sent if sent.ok else billed_part(effect, sent)
                cost = self.price_result(dep, billed) if billed is not None else 0.0
                if reservation is not None:
                    self.budgets.settle(reservation, cost)
                elif self.budget_policy is not None and cost:
                    self.budgets.charge(s.request.tenant, cost, self.clock())
                if sent.ok:
                    s.attempts.append(Attempt(dep.name, dep.model, effect.purpose, True, None, sent.latency_s,
                                              sent.prompt_tokens, sent.completion_tokens, cost))
                else:
                    s.attempts.append(Attempt(dep.name, dep.model, effect.purpose, False,
                                              f"{sent.kind.value}: {sent.message}"[:300], sent.latency_s,
                                              *((billed.prompt_tokens, billed.completion_tokens, cost)
                                                if billed is not None else (0, 0, 0.0))))

    def _masked_user(self, s: _State) -> Request:
        """The request with its ``user`` param through the PII maskers.  OpenAI's ``user`` names
        the end user to the provider, and callers pass their e-mail there: it went out as written,
        past the masker that had taken the same address out of the messages.  An opaque id (OpenAI
        asks for a hash) has nothing to mask and passes as it is."""
        user = masked = s.request.params["user"]
        for mask in self._answer_maskers:
            masked = self.lock.outside(mask, masked, s.restore)
        return s.request if masked == user else replace(s.request, params={**s.request.params, "user": masked})

    @staticmethod
    def _masked_request(s: _State) -> Request:
        """The request as the models see it (PII masked): what routers and acceptance checks get."""
        return replace(s.request, messages=s.messages) if s.restore else s.request

    def _answer_holds(self, s: _State, prompt_est: int) -> tuple[float, float]:
        """``(dearest, cheapest)``: what a paid step before routing (a classification, a priced
        embedding) holds for the answer that follows, over the routes the router may take.  With
        the dearest held, a request the budget refuses afterwards has paid for nothing; nearer the
        cap the cheapest still lets the step run (a rule may answer at $0, a cache hit is free).
        When over-budget requests are downgraded, the downgrade's cost is enough for both."""
        params = s.request.params
        max_tokens, choices = answer_token_limit(params), params.get("n") or 1
        costs = [sum(self.worst_case_cost(self.chain_for(t), prompt_est, max_tokens, choices, s.images) for t in route)
                 for route in answer_routes(self.router) if all(t in self.deployments for t in route)] or [0.0]
        dearest, cheapest = max(costs), min(costs)
        policy = self.budget_policy
        if policy.on_exceed == "downgrade" and policy.downgrade_to in self.deployments:
            downgrade = self.worst_case_cost(self.chain_for(policy.downgrade_to), prompt_est, max_tokens, choices,
                                             s.images)
            dearest, cheapest = min(dearest, downgrade), min(cheapest, downgrade)
        return dearest, cheapest

    def _hold_before_routing(self, s: _State, step_cost: float, prompt_est: int, cap: float) -> Any:
        """Reserve ``step_cost`` with the dearest answer it may lead to, else with the cheapest
        (then a label routed beyond the budget is refused having paid for its step: at most the
        spread between the routes); None when not even the cheapest answer fits."""
        dearest, cheapest = self._answer_holds(s, prompt_est)
        tenant, now = s.request.tenant, self.clock()
        reservation = self.budgets.try_reserve(tenant, step_cost + dearest, cap, now)
        if reservation is None and cheapest < dearest:
            reservation = self.budgets.try_reserve(tenant, step_cost + cheapest, cap, now)
        return reservation

    def _call_maker(self, s: _State, purpose: str, stream: bool) -> Callable[[Deployment], Call]:
        req = s.request
        params = dict(req.params)
        limit = answer_token_limit(params)
        messages = s.messages
        restore = s.restore if stream and self.unmask_answers and s.restore else None  # for the caller's chunks
        guard = self._stream_check if stream else None  # the chunks pass the output guards before the caller

        def make(dep: Deployment) -> Call:
            p = dict(params)
            # the bound the reservation priced, under both names a provider may read
            p["max_tokens"] = min(limit or dep.max_output_tokens, dep.max_output_tokens)
            if "max_completion_tokens" in p:
                p["max_completion_tokens"] = p["max_tokens"]
            return Call(dep, messages, p, stream=stream, purpose=purpose, metadata=req.metadata, restore=restore,
                        guard=guard)

        return make

    def _accepted(self, s: _State, decision: RouteDecision, result: ChainResult) -> bool:
        dep = result.deployment
        if result.result.tool_calls:  # a step of the caller's agent loop, not an answer to grade
            return True
        try:
            # the check (a grader model, say) sees what the answering model saw: the masked request
            ok = bool(self.lock.outside(decision.accept, result.result.text, self._masked_request(s))) \
                if decision.accept else True
            why = "rejected by acceptance check"
        except Exception as exc:  # a user-supplied check must not crash the gateway
            # its message may quote the request: only the exception's type is recorded
            ok, why = False, f"acceptance check raised {type(exc).__name__}"
        if not ok:  # said in the reason too, as a stage that failed is: the ledger's reason shows every escalation
            s.attempts.append(Attempt(dep.name, dep.model, "check", False, f"{why}; escalating", 0.0))
            s.reason += f"; {dep.name}'s answer: {why} → escalating"
        return ok

    def _outcome(self, s: _State, kind: OutcomeKind, *, text: str | None = None, model: str | None = None,
                 deployment: str | None = None, prompt_tokens: int = 0, completion_tokens: int = 0,
                 ttft: float | None = None, error: GatewayError | None = None,
                 similarity: float | None = None, tool_calls: tuple[Mapping[str, Any], ...] = (),
                 finish_reason: str | None = None) -> Outcome:
        now = self.clock()
        latency = now - s.started
        cost = _billed(s.attempts) + s.extra_cost
        return Outcome(s.request.request_id, s.request.tenant, s.request.plan, kind, text, model, deployment,
                       tuple(s.attempts), s.cache, s.tier, s.reason, prompt_tokens, completion_tokens, cost, latency,
                       latency if ttft is None and error is None else ttft, s.started, error, similarity,
                       s.request.metadata, tuple(s.findings), tool_calls, finish_reason, s.coalesced_with)

    def _error(self, s: _State, error: GatewayError) -> Outcome:
        return self._outcome(s, OutcomeKind.ERROR, error=error)

    def _guard_output(self, s: _State, text: str) -> tuple[str, GatewayError | None]:
        """Output guardrails (blocked terms, leaked secrets) on the still-masked answer."""
        for guard in self.output_guards:
            verdict = self.lock.outside(guard.check_output, text)
            if verdict.findings:
                s.findings.extend(f"{guard.name}:{f.kind}" for f in verdict.findings)
            if verdict.blocked:
                return text, GuardrailBlocked(f"answer blocked by {guard.name}: {verdict.blocked}")
            text = verdict.text
        return text, None

    def _guard_calls(self, s: _State, calls: tuple[Mapping[str, Any], ...]
                     ) -> tuple[tuple[Mapping[str, Any], ...], GatewayError | None]:
        """The output guards over each tool call's arguments, as over an answer's text: the
        caller's code runs the call, so a secret the model put there (the classic exfiltration:
        ``send_email(to=…, body=<the key in its context>)``) is as leaked as one in the text.  A
        redaction that leaves JSON arguments no longer JSON blocks the answer instead."""
        out = []
        for call in calls:
            arguments = call["function"]["arguments"]
            guarded, blocked = self._guard_output(s, arguments) if arguments else (arguments, None)
            if blocked is not None:
                return calls, blocked
            if guarded != arguments:
                if _is_json(arguments) and not _is_json(guarded):
                    return calls, GuardrailBlocked(f"answer blocked: a redaction broke tool call "
                                                   f"{call['function']['name']!r}'s JSON arguments")
                call = _with_arguments(call, guarded)
            out.append(call)
        return tuple(out), None

    def _unmask(self, s: _State, text: str) -> str:
        """Put the caller's own PII back into the answer, only when the gateway was asked to."""
        return restore_placeholders(text, s.restore) if self.unmask_answers and s.restore else text

    def _unmask_calls(self, s: _State, calls: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
        """Tool calls with the caller's own PII put back into their JSON arguments, under the same
        rule as an answer's text (``unmask_answers``): the caller's code runs them, and a lookup by
        ``[EMAIL_1]`` finds nothing.  Values go in JSON-escaped, so the arguments stay JSON."""
        if not (self.unmask_answers and s.restore):
            return calls
        escaped = {placeholder: json.dumps(original)[1:-1] for placeholder, original in s.restore.items()}
        out = []
        for call in calls:
            arguments = call["function"]["arguments"]
            for placeholder, original in escaped.items():
                arguments = arguments.replace(placeholder, original)
            out.append(_with_arguments(call, arguments))
        return tuple(out)

    def _answered(self, s: _State, kind: OutcomeKind, value: CachedAnswer, similarity: float | None = None) -> Outcome:
        text, blocked = self._guard_output(s, value.text)
        if blocked is not None:
            return self._error(s, blocked)
        s.reason = s.reason or s.cache.value
        return self._outcome(s, kind, text=self._unmask(s, text), model=value.model, similarity=similarity)

    def _rule_answer(self, s: _State, answer: str) -> Outcome:
        text, blocked = self._guard_output(s, answer)
        if blocked is not None:
            return self._error(s, blocked)
        return self._outcome(s, OutcomeKind.RULE, text=self._unmask(s, text), model="rule")

    def _model_answer(self, s: _State, chain: ChainResult, cache: bool = True) -> Outcome:
        result, dep = chain.result, chain.deployment
        now = self.clock()
        text, blocked = self._guard_output(s, result.text)
        if blocked is not None:
            return self._error(s, blocked)
        calls = result.tool_calls
        if calls and self.output_guards:
            calls, blocked = self._guard_calls(s, calls)
            if blocked is not None:
                return self._error(s, blocked)
        # fill with the guarded, still-masked answer: no raw PII is cached, nor the filling request's
        # metadata (the caller's user ids and e-mails, meant for the ledger, never read back on a hit,
        # and a shared cache hands it to every replica).  An empty answer (a provider's glitch, a
        # content filter's blank) is passed on but not cached: it would be served for the TTL; nor is a
        # tool call, a step of the caller's agent loop whose next turn carries the tool's result
        if cache and s.cache is CacheOutcome.MISS and text and not text.isspace() and not result.tool_calls:
            value = CachedAnswer(_placeholders_back(text, s.restore), dep.model, result.prompt_tokens,
                                 result.completion_tokens, self.price_result(dep, result), now)
            if self.exact_cache is not None and s.key is not None:
                self.exact_cache.put(s.request.tenant, s.key, value, now)
            if self.semantic_cache is not None and s.vector is not None:
                self.semantic_cache.store(s.namespace, content_text(s.messages[-1].get("content")), s.vector, value,
                                          now)
            if s.flight is not None:  # a leader (it boarded with an exact key or an embedding)
                s.flight.answer = value  # for the followers, should the caches not keep it (llmlab.coalescing)
        latency = now - s.started
        ttft = latency - result.latency_s + (result.ttft_s if result.ttft_s is not None else result.latency_s)
        return self._outcome(s, OutcomeKind.MODEL, text=self._unmask(s, text), model=dep.model, deployment=dep.name,
                             prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens, ttft=ttft,
                             tool_calls=self._unmask_calls(s, calls) if calls else (),
                             finish_reason=result.finish_reason)

    def _expired(self, s: _State) -> None:
        """The request's deadline ended its model path: the ledger's reason says so (once)."""
        if not s.expired:
            s.expired = True
            s.reason += f"; {ran_out(s.deadline - s.started)} → no further call"

    def _failed(self, s: _State, last: ChainResult | None) -> Outcome:
        error = last.error if last is not None else None
        if last is not None and last.fatal:
            # the keys were refused or the models are not there, not the request: an outage to followers
            s.hand_on = error.kind in UNSERVED_BY_SETUP
            return self._error(s, ProviderRejected(f"{last.deployment.name if last.deployment else 'provider'} "
                                                   f"rejected the request: {error.message}"))
        if last is not None and error is not None and \
                (error.kind in UNSERVED_BY_SETUP or error.kind is ErrorKind.CIRCUIT_OPEN) and \
                credentials_refused(last.attempts, self._credentials_refused | self._not_found):
            # breakers opened by refused keys or missing models: "retry in 30 s" would not help until
            # someone fixes the gateway's setup
            tried = {a.deployment for a in last.attempts}
            why = [f"the gateway's credentials refused by {', '.join(sorted(tried & self._credentials_refused))}"
                   if tried & self._credentials_refused else "",
                   f"no such model at {', '.join(sorted(tried & self._not_found))} (404)"
                   if tried & self._not_found else ""]
            s.hand_on = True
            return self._error(s, ProviderRejected("no deployment can take the request as the gateway is set up: "
                                                   + "; ".join(filter(None, why))))
        now = self.clock()
        if s.cache is not CacheOutcome.BYPASS:  # last resort: a stale exact entry, then a similar cached answer
            hit = self.exact_cache.get(s.request.tenant, s.key, now, allow_stale=True) if s.key is not None else None
            similarity = None
            if hit is None and self.semantic_cache is not None and s.vector is not None:
                hit = self.semantic_cache.lookup_last_resort(s.namespace, content_text(s.messages[-1].get("content")),
                                                             s.vector, now)
                similarity = getattr(hit, "similarity", None)
            if hit is not None:
                s.cache = CacheOutcome.LAST_RESORT_HIT
                s.reason += "; every provider failed → last-resort cached answer"
                return self._answered(s, OutcomeKind.LAST_RESORT, hit.value, similarity)
        retry_after = max((a.retry_after_s or 0.0 for a in s.attempts), default=0.0)
        tried = sorted({a.deployment for a in s.attempts if a.purpose != "check"})
        # the open breakers of this request's deployments (skipped ones included): another
        # deployment's cooldown says nothing of when this request can be served
        cooldowns = [b.cooldown_s - (now - b.opened_at) for name, b in self.breakers.items()
                     if b.state == b.OPEN and name in tried]
        retry_after = max([retry_after, *[c for c in cooldowns if c > 0]]) or 5.0
        detail = f"{error.kind.value}: {error.message}" if error is not None else "no deployment available"
        said = f"all deployments failed ({', '.join(tried)}); last error {detail}"
        if s.expired:
            said = f"{ran_out(s.deadline - s.started)}: {said}"
        return self._error(s, AllProvidersFailed(said, retry_after_s=round(retry_after, 3)))

    def _announce(self, outcome: Outcome, restore: Mapping[str, str]) -> None:
        """The ledger's sink and the request log: user code, run outside the lock."""
        if self._ledger_splits:
            try:
                self.ledger.notify(outcome)
            except Exception as exc:  # a sink that fails (a queue down) must not take the billed answer away
                log_failure(log, "llmlab ledger sink failed", exc, self._scrubber(restore),
                            request_id=outcome.request_id)
        self._log(outcome, restore)

    def _scrubber(self, restore: Mapping[str, str]) -> Callable[[str], str]:
        """Error text (a traceback, an exception's message) as logs and the ledger may keep it:
        the request's PII masked as in a logged answer, credentials hidden (the deployments', and
        anything shaped like one).  A masker that fails here leaves the credentials hidden only."""

        def scrub(text: str) -> str:
            try:
                text = self._masked_for_log(text, restore) or text
            except Exception:  # user code, inside the handling of another failure
                pass
            return redact_text(secret_logs.redact(text))

        return scrub

    def _masked_for_log(self, text: str | None, restore: Mapping[str, str]) -> str | None:
        """An answer as logs may see it: the caller's PII put back by ``unmask_answers`` is masked
        again, and the PII guard's masker runs over the rest (a model can repeat what it saw)."""
        if not text:
            return text
        text = _placeholders_back(text, restore)
        for mask in self._answer_maskers:
            text = mask(text, restore)
        return text

    def _log(self, o: Outcome, restore: Mapping[str, str]) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        record: dict[str, Any] = {
            "request_id": o.request_id, "tenant": o.tenant, "plan": o.plan, "outcome": o.kind.value,
            "cache": o.cache.value, "route_tier": o.route_tier, "model": o.model, "deployment": o.deployment,
            "attempts": len(o.attempts), "prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
            "cost_usd": round(o.cost_usd, 8), "latency_s": round(o.latency_s, 4),
            "error": None if o.error is None else o.error.code, "guard_findings": list(o.guard_findings),
        }
        if o.coalesced_with is not None:  # waited for an identical request in flight (llmlab.coalescing)
            record["coalesced_with"] = o.coalesced_with
        if o.tool_calls:  # by name only: arguments carry the caller's data
            record["tool_calls"] = [c["function"]["name"] for c in o.tool_calls]
        if self.log_content:
            record["answer"] = self._masked_for_log(o.text, restore)
        log.info("llmlab request %s %s", o.request_id, o.kind.value, extra={"llmlab": record})
