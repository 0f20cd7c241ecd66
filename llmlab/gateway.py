"""The Gateway: what users construct.  It validates configuration and drives the pipeline.

    gw = Gateway(router=PlanRouter(), budget=BudgetPolicy(caps={"acme": 50.0}))
    out = gw.complete("Where is my order 1234?", tenant="acme", plan="paid")
    out.text, out.model, out.cost_usd, out.attempts

``complete`` (sync), ``acomplete`` (asyncio) and ``stream`` / ``astream`` all run the same
:class:`~llmlab.pipeline.Pipeline` through the live driver.  ``Gateway.pipeline`` is what the
simulator drives in virtual time.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import _validate as v, secret_logs
from .admission import Admission, Ticket
from .budgets import BudgetPolicy, MemoryBudgets
from .cache.keys import CacheKeyPolicy
from .cache.store import KeyValueStore, MemoryStore
from .coalescing import Coalesce, Flights
from .defaults import DEFAULT_FALLBACKS, default_deployments
from .effects import Deployment, Outcome
from .errors import ConfigError, InvalidRequest, _Shape, type_shape
from .fallback import CircuitBreaker, RetryPolicy
from .hedging import Hedge
from .ledger import Ledger
from .live import LiteLLMDriver
from .runloop import Driver, StepThreads, adrive, aiter_stream, drive, iter_stream
from .pipeline import Pipeline, SemanticSlot, _answer_masker
from .pricing import PriceBook, ModelPrice
from .ratelimit import RateLimiterBackend, configured_limits
from .request import REQUEST_FIELDS, REQUEST_PARAMS, Request
from .request_deadline import check_request_timeout
from .routing import ComplexityRouter, FixedRouter, Router
from .stream import StreamResponse

#: the most worker threads ``step_threads`` may ask for (each waits for Redis with its own connection)
MAX_STEP_THREADS = 256
log = logging.getLogger("llmlab.gateway")
_warned_unmasked = False
_warned_unhedged = False


#: provider-call arguments the gateway sets from the deployment and the request: in ``params`` they
#: replaced them (a deployment priced as gpt-4o-mini sent its calls to gpt-4o, or other messages)
GATEWAY_CALL_KEYS = frozenset({"model", "messages", "stream", "stream_options", "timeout", "num_retries",
                               "max_retries"})


def _check_deployments(deployments: Sequence[Deployment], prices: PriceBook) -> dict[str, Deployment]:
    if not deployments:
        raise ConfigError("deployments", list(deployments), "at least one Deployment")
    out: dict[str, Deployment] = {}
    for i, dep in enumerate(deployments):
        if not isinstance(dep, Deployment):
            raise ConfigError(f"deployments[{i}]", dep, "a llmlab.Deployment")
        if not isinstance(dep.name, str) or not dep.name:
            raise ConfigError(f"deployments[{i}].name", dep.name, "a non-empty string (routers and fallbacks use it)")
        if not isinstance(dep.params, Mapping):  # shown by its type only: a key passed here by mistake
            raise ConfigError(f"deployments[{i}].params", type_shape(dep.params),
                              "a mapping of provider-call settings (api_base, api_key, mock_response …)")
        if dep.name in out:
            raise ConfigError(f"deployments[{i}].name", dep.name, "a name not used by another deployment")
        v.integer(f"deployments[{i}].context_window", dep.context_window, lo=1)
        v.integer(f"deployments[{i}].max_output_tokens", dep.max_output_tokens, lo=1)
        if not isinstance(dep.model, str) or not dep.model:
            raise ConfigError(f"deployments[{i}].model", dep.model, "a model name (litellm's, e.g. 'openai/gpt-4o-mini')")
        v.duration(f"deployments[{i}].timeout_s", dep.timeout_s, zero=False)
        for key in dep.params:
            if not isinstance(key, str) or key in GATEWAY_CALL_KEYS:
                raise ConfigError(f"deployments[{i}].params", key,
                                  "provider-call settings the gateway does not set itself: not "
                                  + ", ".join(sorted(GATEWAY_CALL_KEYS)) + " (use Deployment(model=…, timeout_s=…); "
                                  "retries are the gateway's RetryPolicy)")
        if dep.image_tokens_max is not None:
            v.integer(f"deployments[{i}].image_tokens_max", dep.image_tokens_max, lo=1)
        prices.price(dep.price_key)  # UnknownModelPrice names the model and how to add a price
        out[dep.name] = dep
    return out


def _check_clock(clock: Callable[[], Any]) -> None:
    """One reading of ``clock``: epoch seconds as a finite number, or a ConfigError now (a clock
    returning text raised TypeError out of every complete(); NaN made every request an internal error)."""
    try:
        now = clock()
    except Exception as exc:  # a user's callable
        raise ConfigError("clock", _Shape(f"<{getattr(clock, '__name__', type(clock).__name__)}>"),
                          "a callable returning epoch seconds", hint=f"it raised {type(exc).__name__}") from None
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise ConfigError("clock", _Shape(f"<a clock returning {now!r}>"[:80]),
                          "a callable returning epoch seconds (a finite number, e.g. time.time)")


def _check_names(field: str, names: Any, known: Mapping[str, Deployment]) -> None:
    for name in names:
        if not isinstance(name, str) or name not in known:  # a list in a chain raised "unhashable type"
            raise ConfigError(field, name, "one of the configured deployments: " + ", ".join(sorted(known)))


def _check_has(field: str, given: Any, obj: Any, methods: Sequence[str], allowed: str) -> None:
    """``obj`` has every one of ``methods`` (and an ``embedder`` for a semantic cache)."""
    missing = [m for m in methods if not callable(getattr(obj, m, None))]
    if field == "semantic_cache" and not callable(getattr(getattr(obj, "embedder", None), "embed", None)):
        missing.append("an embedder with embed(texts)")  # the pipeline embeds each query with it
    if missing:
        raise ConfigError(field, given, allowed, hint=f"missing {', '.join(missing)}")


class Gateway:
    """Caching, routing, fallback, rate limits, budgets and a ledger in front of litellm.

    Every argument has an embedded default: the lecture's three models, its complexity router
    and fallback chain, a prompt+parameters exact cache, retries with jittered backoff, a
    circuit breaker per deployment, and PII masking (``input_guards=None``; pass ``()`` to opt
    out): providers, caches and logs see ``[EMAIL_1]``-style placeholders, and the caller's own
    values are put back into the answer (``unmask_answers=True``).  Bad settings raise :class:`~llmlab.errors.ConfigError` at
    construction, naming the field and the allowed values.

    Arguments (all but ``deployments`` by keyword):

    * ``deployments`` — the :class:`~llmlab.effects.Deployment` s calls may go to; None: the
      lecture's gpt-4o, gpt-4o-mini and claude-sonnet-4-20250514.
    * ``router`` — picks each request's primary deployment; None: :class:`~llmlab.routing.ComplexityRouter`,
      which routes to the three default names (give a router when the deployments differ), or
      :class:`~llmlab.routing.FixedRouter` when there is a single deployment.
    * ``fallbacks`` — primary name → names tried after it (``"*"``: any primary not listed);
      None: the lecture's chains, as far as the deployments given go.
    * ``prices`` — a :class:`~llmlab.pricing.PriceBook`, or overrides on the default book:
      ``{model: (input_usd_per_1m, output_usd_per_1m) | ModelPrice}``.
    * ``cache``, ``cache_key_mode`` (``"prompt_params"`` or ``"exact"``, see :mod:`llmlab.cache.keys`),
      ``cache_ttl_s``, ``cache_capacity`` — the exact cache in memory; ``cache_store`` replaces
      that store (``llmlab.backends`` for Redis).  ``semantic_cache`` — a
      :class:`~llmlab.cache.SemanticCache`, off when None.
    * ``rate_limiter`` — a :class:`~llmlab.ratelimit.RateLimiter` (``llmlab.backends``' Redis one to share it; none when None).
      ``default_max_tokens`` — what a request without ``max_tokens`` takes from a tokens/min limit.
    * ``budget`` — a :class:`~llmlab.budgets.BudgetPolicy` (monthly caps; none when None);
      ``budget_backend`` — where spend is kept (in memory by default, Redis for several processes).
    * ``retry`` — a :class:`~llmlab.fallback.RetryPolicy`, or one per deployment name (``"*"``: the rest).
      ``breaker`` — :class:`~llmlab.fallback.CircuitBreaker` settings (a mapping) or a factory; one
      breaker per deployment.
    * ``input_guards`` / ``output_guards`` — :mod:`llmlab.guardrails` stages; a list replaces the
      default PII masker, and a list without one is warned about once (``unmasked_ok`` True: on
      purpose, as a scenario's ``guardrails.pii = false`` is).  ``unmask_answers`` — put the
      caller's values back into answers.
      ``log_content`` — add the answer, PII masked, to each request's log record (off: no content).
    * ``clock`` (epoch seconds), ``seed`` (backoff jitter), ``driver`` (what performs calls:
      litellm by default, :class:`~llmlab.scripted.ScriptedDriver` in tests) and ``ledger``
      (a :class:`~llmlab.ledger.Ledger`; ``Ledger(keep=False, sink=…)`` for long runs).
    * ``step_threads`` — run ``acomplete``/``astream``'s pipeline steps on worker threads
      (:class:`~llmlab.runloop.StepThreads`), so a stage's blocking I/O never holds up the event
      loop; None: on when a backend waits on the network (``llmlab.backends``' Redis ones).  An
      int is the number of threads (True: 8): it bounds how many async requests wait for Redis
      at once, as the steps let the step lock go while they wait.
    * ``admission`` — an :class:`~llmlab.admission.Admission`: at most so many async requests on
      the model path at once, a bounded wait for the others, then
      :class:`~llmlab.errors.Overloaded` (None: no bound — a burst of a thousand ``acomplete``
      calls then starves the event loop; see :mod:`llmlab.admission`).
    * ``hedge`` — a :class:`~llmlab.hedging.Hedge`: when a request's first answering call has not
      started answering after ``after_s``, the same request goes to the next deployment of its
      chain too, and the first to answer is served (None: no hedging; see :mod:`llmlab.hedging`).
      The driver must race calls (``races = True``: litellm's async API, the simulator, the
      scripted driver); a synchronous live request sends no hedge (``races_sync = False``: a
      call blocked on a thread cannot be cancelled when the other wins), and holds no budget for one.
    * ``coalesce`` — a :class:`~llmlab.coalescing.Coalesce`: a request that misses the caches while
      an identical one (same tenant, same cache key) is on the model path waits for that one's
      answer instead of calling a provider too (None: every miss calls; see :mod:`llmlab.coalescing`).
      Needs a cache, which hands the answer over; :attr:`flights` counts what it did.
    * ``request_timeout_s`` — seconds a request may take from the moment the pipeline takes it,
      over all its calls, retries, waits, fallbacks and cascade stages (None: no such bound; a
      request's own ``request_timeout_s=`` overrides it).  Each call's timeout is its
      deployment's ``timeout_s`` or the time left, whichever is less; a stream's answer is not
      cut once its first token came.  See :mod:`llmlab.request_deadline`.
    """

    def __init__(self, deployments: Sequence[Deployment] | None = None, *,
                 router: Router | None = None,
                 fallbacks: Mapping[str, Sequence[str]] | None = None,
                 prices: PriceBook | Mapping[str, ModelPrice | tuple[float, float]] | None = None,
                 cache: bool = True, cache_key_mode: str = "prompt_params", cache_ttl_s: float = 3_600.0,
                 cache_capacity: int = 10_000, cache_store: KeyValueStore | None = None,
                 semantic_cache: SemanticSlot | None = None,
                 rate_limiter: RateLimiterBackend | None = None,
                 budget: BudgetPolicy | None = None, budget_backend: Any = None,
                 retry: RetryPolicy | Mapping[str, RetryPolicy] | None = None,
                 breaker: Callable[[], CircuitBreaker] | Mapping[str, Any] | None = None,
                 input_guards: Sequence[Any] | None = None, output_guards: Sequence[Any] = (),
                 unmasked_ok: bool = False, unmask_answers: bool = True, log_content: bool = False,
                 clock: Callable[[], float] = time.time, seed: int | None = None,
                 driver: Driver | None = None, ledger: Ledger | None = None,
                 default_max_tokens: int = 1024, step_threads: bool | int | None = None,
                 admission: Admission | None = None, hedge: Hedge | None = None,
                 coalesce: Coalesce | None = None, request_timeout_s: float | None = None) -> None:
        if isinstance(prices, PriceBook):
            self.prices = prices
        else:
            if prices is not None and not isinstance(prices, Mapping):
                raise ConfigError("prices", prices, "a PriceBook, or a mapping of model → ModelPrice or "
                                                    "(input, output) USD per 1M tokens")
            self.prices = PriceBook.default() if prices is None else PriceBook.default().with_overrides(prices)
        if isinstance(deployments, (str, bytes, Mapping)) or not (deployments is None or isinstance(deployments, Iterable)):
            # list("gpt-4o") would name 'g' as the culprit; Gateway(5) raised TypeError
            raise ConfigError("deployments", deployments, "a list of llmlab.Deployment (or None for the defaults)")
        self.deployments = _check_deployments(list(deployments) if deployments is not None else default_deployments(),
                                              self.prices)
        secret_logs.remember(self, (d.params for d in self.deployments.values()))  # out of litellm's debug logs while it lives
        if budget is not None and not isinstance(budget, BudgetPolicy):
            raise ConfigError("budget", budget, "a llmlab.BudgetPolicy or None")
        if router is None and len(self.deployments) == 1:  # one deployment: nothing to choose between
            router = FixedRouter(next(iter(self.deployments)))
        self.router: Router = router if router is not None else ComplexityRouter()
        _check_has("router", router, self.router, ("decide", "targets"),
                   "a router with decide() and targets() (e.g. llmlab.PlanRouter)")
        try:
            self.router.targets()
        except RecursionError:  # a plan router among its own plans would route forever
            raise ConfigError("router", type_shape(self.router),
                              "a router that does not contain itself") from None
        if router is None and not self.router.targets() <= set(self.deployments):
            raise ConfigError("router", None, "a router for these deployments (e.g. llmlab.FixedRouter or PlanRouter)",
                              hint="the default ComplexityRouter routes to " +
                                   ", ".join(sorted(self.router.targets() - set(self.deployments))) +
                                   ", which are not among the deployments given")
        _check_names("router", sorted(self.router.targets()), self.deployments)
        if hasattr(self.router, "bind"):
            self.router.bind(self.deployments)
        if fallbacks is None:  # the default table, as far as these deployments go (none left: no chain)
            kept = {k: [n for n in chain if n in self.deployments]
                    for k, chain in DEFAULT_FALLBACKS.items() if k in self.deployments}
            fallbacks = {k: chain for k, chain in kept.items() if chain}
        if not isinstance(fallbacks, Mapping):
            raise ConfigError("fallbacks", fallbacks, "a mapping of deployment name → list of deployment names")
        for primary, chain in fallbacks.items():
            if primary != "*":
                _check_names("fallbacks", [primary], self.deployments)
            if isinstance(chain, str) or not isinstance(chain, Sequence):
                raise ConfigError(f"fallbacks[{primary!r}]", chain, "a list of deployment names")
            if len(chain) == 0:
                raise ConfigError(f"fallbacks[{primary!r}]", list(chain), "at least one deployment name")
            _check_names(f"fallbacks[{primary!r}]", chain, self.deployments)
        if budget is not None and budget.downgrade_to is not None:
            _check_names("budget.downgrade_to", [budget.downgrade_to], self.deployments)
        v.integer("default_max_tokens", default_max_tokens, lo=1)
        if retry is None:
            retry = RetryPolicy()
        if not isinstance(retry, RetryPolicy) and not (
                isinstance(retry, Mapping) and all(isinstance(r, RetryPolicy) for r in retry.values())):
            raise ConfigError("retry", retry, "a llmlab.RetryPolicy, a mapping of deployment name → RetryPolicy, or None")
        if isinstance(retry, Mapping):  # a misspelt name would silently leave that deployment on the default policy
            _check_names("retry", [k for k in retry if k != "*"], self.deployments)
        if breaker is not None and not isinstance(breaker, Mapping) and not callable(breaker):
            raise ConfigError("breaker", breaker, "CircuitBreaker settings (a mapping), a factory of CircuitBreakers, "
                              "or None")
        if semantic_cache is not None:
            _check_has("semantic_cache", semantic_cache, semantic_cache, ("lookup", "store", "lookup_last_resort"),
                       "a llmlab.cache.SemanticCache (or an object with lookup, store, lookup_last_resort and embedder)")
        # collaborators are checked here, not on the first request (where a missing method was an
        # internal error per request, or an AttributeError out of complete())
        for field, given, methods, allowed in (
                ("cache_store", cache_store, ("get", "put"), "a llmlab.cache.KeyValueStore (get, put) or None"),
                ("budget_backend", budget_backend, ("try_reserve", "settle", "charge", "spent"),
                 "a budget backend (llmlab.MemoryBudgets, llmlab.backends' Redis budgets) or None"),
                ("driver", driver, ("perform", "aperform"), "a driver (llmlab.Driver: llmlab.live.LiteLLMDriver, "
                                                             "llmlab.scripted.ScriptedDriver) or None"),
                ("ledger", ledger, ("record",), "a llmlab.Ledger or None")):
            if given is not None:
                _check_has(field, given, given, methods, allowed)
        if rate_limiter is not None:
            _check_has("rate_limiter", rate_limiter, rate_limiter, ("acquire",), "a llmlab.RateLimiter or None")
            for name, limit in configured_limits(rate_limiter):
                if limit.tpm is not None and limit.tpm < default_max_tokens:
                    raise ConfigError(f"rate_limiter.{name}.tpm", limit.tpm, f">= default_max_tokens ({default_max_tokens})",
                                      hint="a request without max_tokens reserves default_max_tokens of the limit, "
                                           "so it could never pass; raise tpm or lower default_max_tokens")
        for name, flag in (("unmask_answers", unmask_answers), ("log_content", log_content), ("cache", cache),
                           ("unmasked_ok", unmasked_ok)):
            v.flag(name, flag)
        if not callable(clock):
            raise ConfigError("clock", clock, "a callable returning epoch seconds (e.g. time.time)")
        _check_clock(clock)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError("seed", seed, "an integer (the backoff jitter's seed) or None")
        if isinstance(breaker, Mapping):
            settings = dict(breaker)
            try:
                CircuitBreaker(**settings)  # validate now, not on the first failure
            except TypeError as exc:  # an unknown setting
                raise ConfigError("breaker", settings, "CircuitBreaker settings: " + ", ".join(
                    p for p in inspect.signature(CircuitBreaker).parameters), hint=str(exc)) from None
            breaker_factory: Callable[[], CircuitBreaker] = lambda: CircuitBreaker(**settings)
        else:
            breaker_factory = breaker or CircuitBreaker
            if breaker is not None:  # a factory: one made now, so that a wrong one fails here, not per request
                made = breaker_factory()
                if not all(callable(getattr(made, m, None))
                           for m in ("admit", "current", "release_probe", "is_slow", "record_success", "record_failure")):
                    raise ConfigError("breaker", _Shape(f"<a factory of {type(made).__name__}>"),
                                      "CircuitBreaker settings (a mapping), or a factory of CircuitBreakers")
        if input_guards is None:  # PII is masked before anything is sent, cached or logged, unless opted out
            from .guardrails import PIIMaskingGuard

            input_guards = (PIIMaskingGuard(),)
        for field, guards, method in (("input_guards", input_guards, "check_input"),
                                      ("output_guards", output_guards, "check_output")):
            if isinstance(guards, (str, bytes)) or not isinstance(guards, Sequence):
                raise ConfigError(field, guards, f"a list of guards with {method}()")
            for i, guard in enumerate(guards):
                _check_has(f"{field}[{i}]", guard, guard, (method,), f"a guard with {method}() (see llmlab.guardrails)")
        global _warned_unmasked
        if input_guards and not (unmasked_ok or _warned_unmasked) and not any(map(_answer_masker(), input_guards)):
            # a list replaces the default: adding an injection guard must not silently stop PII masking
            _warned_unmasked = True  # once per process: a sweep builds hundreds of gateways
            log.warning("input_guards has no PII masker: prompts reach providers, caches and logs unmasked "
                        "(add llmlab.guardrails.PIIMaskingGuard() first; to send them unmasked on purpose, "
                        "unmasked_ok=True keeps these guards, input_guards=() drops every guard)")
        exact = (cache_store if cache_store is not None else MemoryStore(cache_capacity, cache_ttl_s)) if cache else None
        if step_threads is None:
            step_threads = any(getattr(b, "blocking_io", False) is True
                               for b in (exact, semantic_cache, rate_limiter, budget_backend))
        elif not isinstance(step_threads, bool) and (not isinstance(step_threads, int)
                                                     or not 1 <= step_threads <= MAX_STEP_THREADS):
            raise ConfigError("step_threads", step_threads, "true, false, None (on with network backends) or a "
                                                            f"number of threads from 1 to {MAX_STEP_THREADS}")
        if admission is not None and not isinstance(admission, Admission):
            raise ConfigError("admission", type_shape(admission), "a llmlab.Admission or None")
        #: how many async requests may be on the model path at once (None: no bound; llmlab.admission)
        self.admission = admission
        #: what runs async requests' steps off the event loop (None: they run on it)
        self.step_threads = (None if step_threads is False else StepThreads() if step_threads is True
                             else StepThreads(workers=step_threads))
        self.clock = clock
        self.driver: Driver = driver or LiteLLMDriver()
        if hedge is not None and not isinstance(hedge, Hedge):
            raise ConfigError("hedge", type_shape(hedge), "a llmlab.Hedge or None")
        if hedge is not None and getattr(self.driver, "races", False) is not True:
            raise ConfigError("hedge", type(self.driver).__name__, "a driver that races calls (races = True: "
                              "LiteLLMDriver, the simulator's, ScriptedDriver)",
                              hint="a driver that does not know the Race effect would fail every hedged call")
        global _warned_unhedged
        if hedge is not None and not fallbacks and not _warned_unhedged:
            # a hedge goes to the next deployment of the request's chain: with no chain it is never sent
            _warned_unhedged = True  # once per process, as above
            log.warning("hedge has nothing to hedge to: no deployment has fallbacks, so no request is ever "
                        "hedged (give fallbacks={primary: [other, ...]}; gateway.fallbacks in a scenario)")
        if coalesce is not None and not isinstance(coalesce, Coalesce):
            raise ConfigError("coalesce", type_shape(coalesce), "a llmlab.Coalesce or None")
        if coalesce is not None and exact is None and semantic_cache is None:
            raise ConfigError("coalesce", coalesce, "None when the gateway has no cache",
                              hint="a waiting request is answered from the cache its identical request filled: "
                                   "keep cache=True or give a semantic_cache")
        self.pipeline = Pipeline(
            deployments=self.deployments, router=self.router, fallbacks=fallbacks, prices=self.prices, clock=clock,
            rng=random.Random(seed), exact_cache=exact, key_policy=CacheKeyPolicy(cache_key_mode),
            semantic_cache=semantic_cache, rate_limiter=rate_limiter,
            budgets=budget_backend if budget_backend is not None else MemoryBudgets(), budget_policy=budget,
            retry=retry, breaker_factory=breaker_factory, input_guards=input_guards, output_guards=output_guards,
            ledger=ledger, unmask_answers=unmask_answers, default_max_tokens=default_max_tokens,
            log_content=log_content, admits=admission is not None, hedge=hedge, coalesce=coalesce,
            request_timeout_s=check_request_timeout("request_timeout_s", request_timeout_s, ConfigError))
        #: whether the sync API (complete, stream) hedges: not through a driver whose sync calls
        #: cannot race (LiteLLMDriver's block a thread), which would send the first call alone
        self._hedges_sync = getattr(self.driver, "races_sync", True) is not False

    def __repr__(self) -> str:
        """What it was built with, by name: never a deployment's params (they hold keys)."""
        p = self.pipeline
        parts = [f"deployments={list(self.deployments)}", f"router={self.router!r}",
                 f"exact_cache={'off' if p.exact_cache is None else type(p.exact_cache).__name__}"]
        parts += [f"{name}={value!r}" for name, value in (("semantic_cache", p.semantic_cache),
                                                          ("budget", p.budget_policy),
                                                          ("rate_limiter", p.rate_limiter),
                                                          ("admission", self.admission),
                                                          ("hedge", p.hedge),
                                                          ("coalesce", p.flights and p.flights.policy))
                          if value is not None]
        guards = [type(g).__name__ for g in (*p.input_guards, *p.output_guards)]
        parts += [f"guards={guards}", f"requests={len(p.ledger)}"]
        return f"Gateway({', '.join(parts)})"

    # ------------------------------------------------------------------ conveniences
    @property
    def ledger(self) -> Ledger:
        return self.pipeline.ledger

    @property
    def exact_cache(self) -> KeyValueStore | None:
        return self.pipeline.exact_cache

    @property
    def flights(self) -> Flights | None:
        """Request coalescing's flights and counters (``led``, ``joined``, ``served``); None without ``coalesce``."""
        return self.pipeline.flights

    @property
    def budgets(self) -> Any:
        return self.pipeline.budgets

    def request(self, prompt: str | Sequence[Mapping[str, Any]] | Request, **kwargs: Any) -> Request:
        """Build a validated :class:`Request` (raises InvalidRequest for empty prompts or unknown models).

        ``prompt`` is a string or a list of chat messages (``{"role": …, "content": …}``).  Keywords:
        ``tenant`` (default ``"default"``: whose budget, rate limits and cache namespace) and
        ``plan`` (default ``"free"``: what a PlanRouter and per-plan caps and limits go by);
        ``model`` pins a deployment by name instead of asking the router; ``params`` holds sampling
        parameters (``llmlab.request.REQUEST_PARAMS``); ``metadata`` travels into the ledger, never to
        a provider; ``request_id`` (1–128 printable ASCII characters, no spaces; generated when absent);
        ``cache`` (False skips the caches for this request); ``request_timeout_s`` (seconds for the
        whole request, overriding the gateway's; :mod:`llmlab.request_deadline`).

        Sampling parameters may also be given OpenAI-style, ``gw.complete("hi", temperature=0.2)``:
        they join ``params``.
        """
        if isinstance(prompt, Request):  # built elsewhere, maybe without build()'s checks: check it the same way
            req = Request.build(list(prompt.messages), **{f: getattr(prompt, f) for f in REQUEST_FIELDS})
        else:
            sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in REQUEST_PARAMS}
            if sampling:
                kwargs["params"] = {**(kwargs.get("params") or {}), **sampling}
            unknown = sorted(set(kwargs) - REQUEST_FIELDS)
            if unknown:
                raise InvalidRequest(unknown[0], kwargs[unknown[0]], "a request field (" + ", ".join(sorted(REQUEST_FIELDS))
                                     + ") or a sampling parameter (" + ", ".join(sorted(REQUEST_PARAMS)) + ")")
            req = Request.build(prompt, **kwargs)
        if req.model is not None and req.model not in self.deployments:
            raise InvalidRequest("model", req.model, "None (let the router decide) or one of the deployments: "
                                 + ", ".join(sorted(self.deployments)))
        check = getattr(self.router, "check_request", None)
        if check is not None:
            check(req)
        return req

    def warm_up(self) -> "Gateway":
        """Pay now what the first live request would: importing litellm (seconds, once) and what
        litellm builds lazily on a route's first call (imports, pydantic models, the model's
        tokenizer), which held an event loop 0.2 s (``acomplete``) to 0.5–0.8 s (``astream``) —
        every request in flight stalled.  Each deployment runs once through litellm's offline
        mock path: nothing is sent, recorded or seen by litellm's callbacks.  Idempotent, and
        near free when repeated; see :mod:`llmlab.warmup`."""
        from .warmup import warm_up

        warm_up(self.deployments.values())
        return self

    async def awarm_up(self) -> "Gateway":
        """:meth:`warm_up` on a worker thread, for a loop that already serves: it keeps serving,
        but for pauses up to ≈ 0.2 s while that thread's garbage collections walk litellm's
        objects (a full collection holds the GIL).  The offline async calls run on this loop
        (litellm's logging worker stays bound to it).  Await it before the first live request."""
        from .warmup import warm_up

        await asyncio.to_thread(warm_up, self.deployments.values(), asyncio.get_running_loop())
        return self

    # ------------------------------------------------------------------ serving
    def complete(self, prompt: str | Sequence[Mapping[str, Any]] | Request, **kwargs: Any) -> Outcome:
        """Serve one request synchronously; returns its :class:`Outcome` (check ``.ok``).

        Arguments as for :meth:`request` (``tenant``, ``plan``, ``model``, ``params`` or sampling
        keywords, ``metadata``, ``request_id``, ``cache``).  A malformed request raises
        :class:`~llmlab.errors.InvalidRequest`; everything else ends in the outcome.
        """
        req = self.request(prompt, **kwargs)
        return drive(self.pipeline.handle(req, hedged=self._hedges_sync), self.driver.perform, self.pipeline.lock)

    async def acomplete(self, prompt: str | Sequence[Mapping[str, Any]] | Request, **kwargs: Any) -> Outcome:
        """Serve one request on asyncio; safe to run hundreds concurrently (arguments as for
        :meth:`request`).  Cancelling the task still records the request, as ClientDisconnected."""
        req = self.request(prompt, **kwargs)
        return await adrive(self.pipeline.handle(req), self.driver.aperform, self.pipeline.lock, self.step_threads,
                            self._ticket())

    def stream(self, prompt: str | Sequence[Mapping[str, Any]] | Request, **kwargs: Any) -> StreamResponse:
        """Stream the answer: iterate for text chunks; ``.outcome`` (with TTFT) is set at the end.

        Arguments as for :meth:`request`.  Besides ``str`` chunks the loop may yield a
        :class:`~llmlab.stream.StreamReset` when a stream broke midway and another attempt starts
        over: the text after it is the whole answer.  Leaving the loop early closes the stream.
        """
        req = self.request(prompt, **kwargs)
        response = StreamResponse()
        response._chunks = iter_stream(self.pipeline.handle(req, stream=True, hedged=self._hedges_sync), self.driver,
                                       response, self.pipeline.lock)
        return response

    def astream(self, prompt: str | Sequence[Mapping[str, Any]] | Request, **kwargs: Any) -> StreamResponse:
        """Async twin of :meth:`stream`: ``async for chunk in gw.astream(...)`` (arguments as for
        :meth:`request`)."""
        req = self.request(prompt, **kwargs)
        response = StreamResponse()
        response._chunks = aiter_stream(self.pipeline.handle(req, stream=True), self.driver, response,
                                        self.pipeline.lock, self.step_threads, self._ticket())
        return response

    def _ticket(self) -> Ticket | None:
        return Ticket(self.admission) if self.admission is not None else None
