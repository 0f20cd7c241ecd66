"""``simulate()``: traffic in, the real gateway in virtual time, results out.

One run = the scenario's gateway (router, caches, budgets, fallbacks…) serving the traffic,
then the *baseline* — every request on one model, no cache, no routing, no fallback — serving
the *same* traffic against the same outages with the same per-request random draws (common
random numbers: the traffic is generated once, provider randomness is keyed by request).  The
difference between the two is the policy's effect, not noise between two random runs.

The simulated application around the gateway is small and explicit: a turn may first retrieve
documents (RAG: latency, extra prompt tokens) and may be an agent turn that makes one LLM call
to choose a tool, runs the tool, and makes a second LLM call to answer.  Both LLM calls go
through the gateway, so both are priced, cached (or not), rate-limited and budgeted.
"""
from __future__ import annotations

import logging
import math
import operator
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..effects import Deployment
from ..errors import ConfigError
from ..request import Request
from ..tokens import max_message_tokens
from .driver import EmbedModel, SimDriver
from .metrics import HEADLINE, Recorder, mean_ci, metric_bounds, refused_savings_pct, requests_frame, summarise
from .outages import Window, scenario_windows, windows_for
from .projection import TenantCaps
from .providers import GOLDEN, M64, MAX_DELAY_S, SimProvider, growth, mix64, uniforms
from .scenario import BudgetConfig, Scenario, ScenarioError, load_scenario
from .traffic import Traffic, generate_traffic

if TYPE_CHECKING:
    import pandas as pd

    from ..gateway import Gateway
    from ..ratelimit import RateLimit

log = logging.getLogger("llmlab.sim")
_RAG_SALT = mix64(0xA11CE)
_TOOL_SALT = mix64(0x7001)


def _billed_as(text: str, tokens: int) -> str:
    """``text`` padded to at least ``tokens`` bytes.  A simulated message stands for content the
    provider bills as ``tokens`` (retrieved articles, a tool's output, the tool-choosing answer);
    the gateway bounds a prompt's tokens by its bytes, so the stand-in must be as long for the
    budget and rate-limit reservations to cover what the simulated provider bills."""
    short = tokens - len(text.encode("utf-8"))
    return text if short <= 0 else text + " " + "." * short


@dataclass
class SimResult:
    """What :func:`simulate` returns.

    ``summary`` holds the headline numbers (see :mod:`llmlab.sim.metrics`); ``requests`` one row
    per gateway request (the ledger's ``outcome_row`` plus ``turn``, ``arrival_s``, ``intent``,
    ``false_hit`` …); ``turns`` one row per user turn; ``baseline_turns`` the same for the
    baseline run (cost over time plots); ``outages`` the windows that were in force.
    """

    scenario: Scenario
    summary: dict[str, Any]
    requests: "pd.DataFrame"
    turns: "pd.DataFrame"
    baseline_summary: dict[str, Any] | None = None
    baseline_turns: "pd.DataFrame | None" = None
    outages: list[Window] = field(default_factory=list)
    replications: "pd.DataFrame | None" = None
    seed: int = 0
    #: wall-clock seconds the run took (kept out of ``summary``, which a seed reproduces exactly)
    wall_s: float = 0.0

    def __repr__(self) -> str:
        s = self.summary
        return (f"SimResult({self.scenario.name!r}, requests={s.get('requests')}, cost=${s.get('cost_usd', 0):.4f}, "
                f"savings={s.get('savings_pct', math.nan):.1f}%, p95={s.get('p95_latency_s', math.nan):.2f}s)")


# ----------------------------------------------------------------------------- building
def build_embedder(scenario: Scenario) -> Any:
    from ..cache.embedders import get_embedder

    c = scenario.gateway.cache
    embedder = get_embedder(c.embedder)
    if c.embedder != "hashed":  # a persistent memo: sweeps and repeated runs never embed a text twice
        from ..cache.memo import EmbeddingMemo

        embedder = EmbeddingMemo(embedder)
    return embedder


def build_semantic_cache(scenario: Scenario, embedder: Any, table: Any = None) -> Any:
    try:
        from ..cache.semantic import SemanticCache
    except ImportError as exc:  # pragma: no cover - the cache package ships with llmlab
        raise ScenarioError("gateway.cache.semantic", f"the semantic cache is unavailable ({exc})") from None
    check_cache_options(scenario)
    c = scenario.gateway.cache
    try:
        return SemanticCache(embedder, **{"threshold": c.threshold, "capacity": c.capacity, "ttl_s": c.ttl_s,
                                          "table": table, **c.options})
    except (TypeError, ConfigError) as exc:  # an option's value out of range (guard=5, candidates=0)
        raise ScenarioError("gateway.cache.options", f"not accepted by SemanticCache: {exc}", c.options) from None


def check_cache_options(scenario: Scenario) -> None:
    """``gateway.cache.options`` must be SemanticCache keyword arguments (checked without building one)."""
    import inspect

    from ..cache.semantic import SemanticCache

    c = scenario.gateway.cache
    if not c.semantic or not c.options:
        return
    accepted = set(inspect.signature(SemanticCache).parameters) - {"embedder", "threshold", "capacity", "ttl_s", "table"}
    unknown = sorted(set(c.options) - accepted)
    if unknown:
        raise ScenarioError("gateway.cache.options", f"SemanticCache options ({', '.join(sorted(accepted))}); "
                            f"unknown: {', '.join(unknown)}", c.options)


def preflight(scenario: Scenario, *, requests: Any = None, hours: Any = None, seed: Any = 0,
              replications: Any = 1) -> None:
    """Every check a run makes before its first request, without running it: argument ranges,
    cache options, the catalogue's languages and domain, plans with a route (a one-request
    draw of the traffic; the whole window when hours size the run, which may hold no request;
    or the whole trace file).  Sweeps call it for every combination."""
    requests, hours, seed, _ = check_run_args(scenario, requests=requests, hours=hours, seed=seed,
                                              replications=replications)
    check_cache_options(scenario)
    semantic = None
    if scenario.gateway.cache.semantic:
        from ..cache.embedders import get_embedder

        try:  # constructing an embedder checks its name and variant; nothing is loaded until it embeds
            get_embedder(scenario.gateway.cache.embedder)
        except ConfigError as exc:
            raise ScenarioError("gateway.cache.embedder", str(exc), scenario.gateway.cache.embedder) from None
        semantic = build_semantic_cache(scenario, get_embedder("hashed"))  # the options' values
    build_gateway(scenario, lambda: 0.0, seed=seed, semantic_cache=semantic)  # rules only the gateway knows
    by_hours = hours is not None or (requests is None and scenario.traffic.hours is not None)
    whole = scenario.traffic.trace is not None or by_hours  # the window may hold no request at all
    make_traffic(scenario, requests=requests if whole else 1, hours=hours, seed=seed)
    drawn = 1 if whole else 0  # the seed's whole traffic is checked already: not drawn again
    check_every_seed(scenario, requests=requests, hours=hours, seed=seed + drawn, replications=replications - drawn)


def check_every_seed(scenario: Scenario, *, requests: int | None, hours: float | None, seed: int,
                     replications: int, trace: str | None = None) -> None:
    """Draw the traffic of every seed a run or its replications will use, before any runs.

    Random flash crowds (``traffic.burst_rate_per_day``) overlap as the draw falls, and their
    product can take the rate past what one run may draw (a ``traffic.bursts`` error) under one
    seed and not under the next: replications, or a sweep's combination, died after running the
    seeds before it.  Drawn up front (≈ 2 s per million requests), such a run is refused before
    its first request.  Nothing else in a synthetic draw depends on the seed this way."""
    if scenario.traffic.burst_rate_per_day <= 0 or trace is not None or scenario.traffic.trace is not None:
        return
    for k in range(replications):
        make_traffic(scenario, requests=requests, hours=hours, seed=seed + k)


def _router(scenario: Scenario) -> Any:
    from ..routing import CascadeRouter, ClassifierRouter, ComplexityRouter, FixedRouter, PlanRouter

    r = scenario.gateway.router
    if r.type == "fixed":
        return FixedRouter(r.deployment)
    if r.type == "plan":
        return PlanRouter(r.plans, default=r.default)
    if r.type == "complexity":
        return ComplexityRouter(tuple(r.thresholds), r.models)
    if r.type == "classifier":
        return ClassifierRouter(r.classifier, r.routes or None)
    return CascadeRouter(r.stages)


def _guards(cfg: Any) -> dict[str, Any]:
    from ..guardrails import InjectionGuard, OutputFilterGuard, PIIMaskingGuard

    inputs: list[Any] = [PIIMaskingGuard()] if cfg.pii else []
    if cfg.injection != "off":
        inputs.append(InjectionGuard(cfg.injection, cfg.injection_threshold))
    return {"input_guards": tuple(inputs), "output_guards": (OutputFilterGuard(),) if cfg.output_filter else ()}


def build_gateway(scenario: Scenario | str, clock: Callable[[], float], *, seed: int, baseline: bool = False,
                  semantic_cache: Any = None, keep_records: bool = False, **gateway_kwargs: Any) -> "Gateway":
    """The scenario's Gateway (or the baseline's) on ``clock`` (the simulator's virtual one, or
    ``time.time``); ``scenario`` is a :class:`Scenario`, a preset name or a TOML path.  ``seed``
    seeds the backoff jitter, ``semantic_cache`` is the cache to use (None: none),
    ``keep_records`` keeps the ledger's outcomes.

    ``gateway_kwargs`` are :class:`~llmlab.Gateway` keywords that replace what the scenario would
    set: what a live service adds to the policy the lab chose, such as the shared state of several
    replicas (``**llmlab.backends.from_url(…).gateway_kwargs()``), a ledger with a sink, or
    ``log_content``.  A deployment's ``api_base`` and ``api_key_env`` (live only) go into its
    call parameters; the key is read from the environment here, never kept in the scenario.
    Its ``image_tokens_max`` (live only too) is what one image part is held at."""
    from ..gateway import Gateway
    from ..ledger import Ledger
    from ..pricing import PriceBook
    from ..routing import FixedRouter

    if not isinstance(scenario, Scenario):  # a name was an AttributeError ('str' has no 'gateway')
        scenario = load_scenario(scenario)
    _check_gateway_kwargs(gateway_kwargs)
    g = scenario.gateway
    overrides: dict[str, tuple[float, float]] = {}
    deployments = []
    for name, p in scenario.providers.items():
        price_model = None
        if p.price is not None:
            price_model = f"sim-price:{name}"  # explicit, even when $0: never a silent default
            overrides[price_model] = (p.price.input_per_1m, p.price.output_per_1m)
        deployments.append(Deployment(name, p.model, _live_params(p), context_window=p.context_window,
                                      max_output_tokens=p.max_output_tokens, timeout_s=p.timeout_s,
                                      price_model=price_model, image_tokens_max=p.image_tokens_max))
    prices = PriceBook.default().with_overrides(overrides) if overrides else PriceBook.default()
    retry: Any = _retry_policy("gateway.retry", g.retry)
    if g.retry_per_deployment:
        retry = {"*": retry, **{k: _retry_policy(f"gateway.retry_per_deployment.{k}", v)
                                for k, v in g.retry_per_deployment.items()}}
    common = dict(deployments=deployments, prices=prices, retry=retry, breaker=g.breaker.model_dump(), clock=clock,
                  seed=seed, ledger=Ledger(keep=keep_records), default_max_tokens=g.default_max_tokens,
                  **_guards(g.guardrails))
    if baseline:
        return Gateway(**{"router": FixedRouter(scenario.baseline_model), "fallbacks": {}, "cache": False, **common,
                          **gateway_kwargs})
    try:
        return _policy_gateway(scenario, common, semantic_cache, gateway_kwargs)
    except ScenarioError:
        raise
    except ConfigError as exc:  # a rule only the gateway knows (a tpm below default_max_tokens): the scenario's field
        if re.match(r"\w+", exc.field)[0] in gateway_kwargs:  # the caller's own keyword: named as they passed it
            raise
        raise ScenarioError(_scenario_field(exc.field), exc.allowed + (f" ({exc.hint})" if exc.hint else ""),
                            exc.value) from None


def _live_params(provider: Any) -> dict[str, Any]:
    """A deployment's call parameters for live traffic: its server and its key (read now from the
    variable the scenario names; an unset one leaves litellm to its own).  The simulated
    providers never read them; ``Deployment`` keeps them out of its repr and the logs."""
    params: dict[str, Any] = {}
    if provider.api_base is not None:
        params["api_base"] = provider.api_base
    if provider.api_key_env is not None and os.environ.get(provider.api_key_env):
        params["api_key"] = os.environ[provider.api_key_env]
    return params


def _check_gateway_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Keywords for Gateway only: a typo would otherwise be a TypeError from deep inside."""
    import inspect

    from ..gateway import Gateway

    accepted = set(inspect.signature(Gateway).parameters) - {"self", "deployments", "clock", "seed", "prices"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(f"gateway_kwargs.{unknown[0]}", kwargs[unknown[0]],
                          f"a Gateway keyword ({', '.join(sorted(accepted))})",
                          hint="deployments, prices, clock and seed come from the scenario and build_gateway's own "
                               "arguments")


def _retry_policy(field: str, cfg: Any) -> Any:
    from ..fallback import RetryPolicy

    try:
        return RetryPolicy(**cfg.model_dump())
    except ConfigError as exc:  # base_s above cap_s: named as the scenario spells it
        raise ScenarioError(f"{field}.{exc.field.rpartition('.')[2]}", exc.allowed, exc.value) from None


def _scenario_field(field: str) -> str:
    """A Gateway setting's name as the scenario spells it (``rate_limiter.per_plan['free'].tpm`` →
    ``gateway.rate_limits.free.tpm``)."""
    m = re.fullmatch(r"rate_limiter\.per_plan\['(.+)'\]\.(\w+)", field)
    return f"gateway.rate_limits.{m[1]}.{m[2]}" if m else f"gateway.{field}"


def scenario_rate_limits(scenario: Scenario | str) -> dict[str, "RateLimit"]:
    """The scenario's per-plan rate limits (``gateway.rate_limits``) as :class:`~llmlab.RateLimit`s:
    what shared limits need (``llmlab.backends.from_url(url, per_plan=scenario_rate_limits(sc))``)
    to enforce the policy the lab chose."""
    from ..ratelimit import RateLimit

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    return {plan: RateLimit(limit.rpm, limit.tpm) for plan, limit in scenario.gateway.rate_limits.items()}


def _policy_gateway(scenario: Scenario, common: dict[str, Any], semantic_cache: Any,
                    gateway_kwargs: Mapping[str, Any]) -> "Gateway":
    from ..budgets import BudgetPolicy
    from ..gateway import Gateway
    from ..ratelimit import RateLimiter

    g = scenario.gateway
    limiter = None
    if g.rate_limits:
        limiter = RateLimiter(per_plan=scenario_rate_limits(scenario))
    budget = None
    group_caps = {name: grp.monthly_budget_usd for grp in scenario.traffic.tenants if grp.monthly_budget_usd is not None
                  for name in grp.tenant_names()}
    if g.budget is not None or group_caps:
        b = g.budget if g.budget is not None else BudgetConfig()
        budget = BudgetPolicy(caps={**group_caps, **b.caps} or None, plan_caps=b.plan_caps or None,
                              default_cap=b.default_cap, on_exceed=b.on_exceed, downgrade_to=b.downgrade_to)
    return Gateway(**{"router": _router(scenario), "fallbacks": g.fallbacks, "cache": g.cache.exact,
                      "cache_key_mode": g.cache.key_mode, "cache_ttl_s": g.cache.ttl_s,
                      "cache_capacity": g.cache.capacity, "semantic_cache": semantic_cache, "rate_limiter": limiter,
                      "budget": budget, **common, **gateway_kwargs})


# ----------------------------------------------------------------------------- one run
class _App:
    """The simulated application: builds each turn's requests and serves them through the gateway."""

    def __init__(self, env: Any, scenario: Scenario, traffic: Traffic, gateway: "Gateway", driver: SimDriver,
                 recorder: Recorder, seed: int, tag: str) -> None:
        self.env = env
        self.t = traffic
        self.cfg = scenario.traffic
        self.pipeline = gateway.pipeline
        self.driver = driver
        self.rec = recorder
        self.seed_key = mix64(seed * GOLDEN & M64)
        self.tag = tag
        self.params: dict[str, Any] = {}
        if self.cfg.max_tokens is not None:
            self.params["max_tokens"] = self.cfg.max_tokens
        if self.cfg.temperature is not None:
            self.params["temperature"] = self.cfg.temperature
        self.system = ({"role": "system", "content": self.cfg.system_prompt},) if self.cfg.system_prompt else ()
        # a prompt past every context window is refused unbilled: its stand-in need not be longer
        self.max_prompt = max(p.context_window for p in scenario.providers.values())
        self.system = self._stand_in_system()
        self._user: dict[int, dict] = {}
        self._context: dict[str, tuple] = {}
        self.tools = self.cfg.tools
        # one OpenAI tool definition per tool name, built once: the requests carry what a live app would send
        self.tool_actions = ({action: {"type": "function", "function": {"name": tool}}
                              for action, tool in self.tools.actions.items()} if self.tools is not None else {})
        self.in_flight = 0

    def _user_message(self, text_id: int) -> dict:
        m = self._user.get(text_id)
        if m is None:
            m = self._user[text_id] = {"role": "user", "content": self.t.texts[text_id]}
        return m

    def _retrieved(self, topic: str, tokens: int) -> tuple:
        """The retrieval step's system message for ``topic`` (one object per topic: hashed once)."""
        found = self._context.get(topic)
        if found is None:
            text = _billed_as(f"Retrieved support articles for: {topic}", tokens)
            found = self._context[topic] = ({"role": "system", "content": text},)
        return found

    def _stand_in_system(self) -> tuple:
        """The system message, padded to stand for the prompt the traffic bills.

        A turn is billed ``prompt_tokens`` (the catalogue's typical prompt incl. the application's
        system prompt, ``fixed_prompt_tokens``, or a trace's count), usually more than the
        bytes of the scenario's short system prompt and the user's text.  The gateway reserves
        budgets and rate limits by a prompt's bytes, so an unpadded stand-in let a reservation
        undershoot the bill and a tenant's cap be overshot.  One padding for every turn without
        history (the largest shortfall): the system message, and so the cache namespace,
        stays the same for every turn, as it would in the real application."""
        t = self.t
        first = np.asarray(t.prev) < 0
        if t.carried:
            first &= ~np.isin(np.asarray(t.session), np.fromiter(t.carried, dtype=np.int64))
        billed = np.zeros(len(t.texts), dtype=np.int64)
        np.maximum.at(billed, np.asarray(t.text)[first], np.asarray(t.prompt_tokens)[first])
        short = 0
        for text_id in np.flatnonzero(billed):
            sent = max_message_tokens(self.system + ({"role": "user", "content": t.texts[text_id]},))
            short = max(short, min(int(billed[text_id]), self.max_prompt) - sent)
        if short <= 0:
            return self.system
        prompt = self.cfg.system_prompt
        return ({"role": "system", "content": _billed_as(prompt, len(prompt.encode("utf-8")) + short)},)

    def _padded(self, msgs: tuple, billed: int) -> tuple:
        """``msgs`` (a turn with history) with at least ``billed`` tokens' worth of bytes (see
        :meth:`_stand_in_system`): padded on the history's last answer, before the user's message,
        which stands for ``answer_tokens``."""
        short = min(billed, self.max_prompt) - max_message_tokens(msgs)
        if short <= 0:
            return msgs
        answer = msgs[-2]
        text = answer["content"]
        return (*msgs[:-2], {**answer, "content": _billed_as(text, len(text.encode("utf-8")) + short)}, msgs[-1])

    def messages(self, i: int, extra: tuple = ()) -> tuple:
        t = self.t
        msgs = self.system + extra
        if t.carried:  # a conversation going when the run started: its earlier turns first
            earlier = t.carried.get(int(t.session[i]))
            if earlier is not None:
                for text, key in zip(*earlier):
                    msgs += (self._user_message(text), {"role": "assistant", "content": t.answers[key]})
        if t.prev[i] >= 0:
            for j in t.history(i):
                msgs += (self._user_message(int(t.text[j])),
                         {"role": "assistant", "content": t.answers[t.key[j]]})
        return msgs + (self._user_message(int(t.text[i])),)

    def arrivals(self) -> Any:
        env = self.env
        for i, at in enumerate(self.t.arrival_s.tolist()):
            delay = at - env.now
            if delay > 0:
                yield env.timeout(delay)
            env.process(self.guarded_turn(i))

    def guarded_turn(self, i: int) -> Any:
        """A bug in the simulated application must not end the run: the turn is recorded as failed."""
        arrival = self.env.now
        try:
            yield from self.turn(i)
        except Exception:
            self.driver.internal_errors += 1
            log.exception("simulated turn %d failed", i)
            self.in_flight -= 1
            self.rec.record(i, arrival, self.env.now, [], arrival, "", "")

    def turn(self, i: int) -> Any:
        env = self.env
        t = self.t
        cfg = self.cfg
        self.in_flight += 1
        arrival = env.now
        key = mix64(self.seed_key ^ (i * GOLDEN & M64))
        intent_ix = int(t.intent[i])
        intent = t.intents[intent_ix]
        answer_key = t.keys[t.key[i]]
        prompt_tokens = int(t.prompt_tokens[i])
        extra: tuple = ()
        if cfg.rag is not None:
            u1, u2, u3, _ = uniforms(key ^ _RAG_SALT)
            rag = cfg.rag
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
            yield env.timeout(rag.latency_s * growth(rag.latency_sigma * z))
            if u3 >= rag.failure_rate:
                prompt_tokens += rag.context_tokens
                extra = self._retrieved(intent.rsplit(".", 1)[0], rag.context_tokens)
        messages = self.messages(i, extra)
        if len(messages) > len(self.system) + len(extra) + 1:  # history: the padded system message covers the rest
            messages = self._padded(messages, prompt_tokens)
        tenant = t.tenants[t.tenant[i]]
        plan = t.tenant_plans[t.tenant[i]]
        meta = {"intent": intent, "category": t.intent_category[intent_ix], "lang": t.intent_lang[intent_ix],
                "prompt_tokens": prompt_tokens, "answer_tokens": int(t.answer_tokens[i]),
                "query_tokens": t.text_tokens[t.text[i]], "answer_key": answer_key, "turn": i}
        tool = self.tool_actions.get(t.intent_action[intent_ix]) if self.tool_actions else None
        outcomes = []
        if tool is None:
            req = Request(messages, tenant, plan, params=self.params, metadata=meta, request_id=f"{self.tag}{i}",
                          cache=True)
            started = env.now
            outcomes.append((yield from self.driver.drive(self.pipeline.handle(req, stream=cfg.stream), key)))
        else:
            tc = self.tools
            plan_meta = {**meta, "answer_tokens": tc.plan_tokens, "step": "tool_call"}
            req = Request(messages, tenant, plan, params={**self.params, "max_tokens": tc.plan_tokens,
                                                          "tools": [tool]},
                          metadata=plan_meta, request_id=f"{self.tag}{i}-tool", cache=tc.cacheable)
            started = env.now
            first = yield from self.driver.drive(self.pipeline.handle(req), key)
            outcomes.append(first)
            if first is not None and first.ok:
                u1, u2, u3, _ = uniforms(key ^ _TOOL_SALT)
                z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
                yield env.timeout(tc.latency_s * growth(tc.latency_sigma * z))
                result = "error: tool unavailable" if u3 < tc.failure_rate else f"{tool['function']['name']} result for {answer_key}"
                follow = messages + ({"role": "assistant", "content": _billed_as(first.text or "", tc.plan_tokens)},
                                     {"role": "tool", "content": _billed_as(result, tc.result_tokens)})
                answer_meta = {**meta, "prompt_tokens": prompt_tokens + tc.plan_tokens + tc.result_tokens,
                               "step": "tool_answer"}
                # an agent keeps the model that chose the tool for the answer: pinned, not re-routed
                req2 = Request(follow, tenant, plan, model=first.deployment, params=self.params,
                               metadata=answer_meta, request_id=f"{self.tag}{i}-answer", cache=tc.cacheable)
                started = env.now
                outcomes.append((yield from self.driver.drive(self.pipeline.handle(req2, stream=cfg.stream),
                                                              mix64(key ^ _TOOL_SALT))))
        self.in_flight -= 1
        self.rec.record(i, arrival, env.now, outcomes, started, intent, answer_key)


def _fixed_hourly(scenario: Scenario, names: list[str]) -> float:
    return sum(scenario.providers[n].hourly_cost_usd for n in names)


@lru_cache(maxsize=None)
def _environment() -> type:
    """A SimPy environment in which no single wait exceeds :data:`~llmlab.sim.providers.MAX_DELAY_S`
    (embedding latency, a retry's backoff, a provider that hangs until a huge timeout, an
    application step): the one place every simulated delay passes through."""
    import simpy
    from simpy.events import Timeout

    class BoundedEnvironment(simpy.Environment):
        def timeout(self, delay: float, value: Any = None) -> Any:  # every wait of the run: kept lean
            return Timeout(self, delay if delay < MAX_DELAY_S else MAX_DELAY_S, value)

    return BoundedEnvironment


def run_once(scenario: Scenario, traffic: Traffic, *, seed: int = 0, baseline: bool = False,
             windows: list[Window] | None = None, keep_requests: bool = True, progress: Any = None,
             embed_model: EmbedModel | None = None,
             observe: Callable[[Any, Any], None] | None = None) -> tuple[Recorder, dict[str, Any]]:
    """Serve ``traffic`` with the scenario's gateway (or the baseline) and measure it.

    ``observe(env, app)`` is called before the run starts: a hook for probes (the validation
    tests sample ``app.in_flight`` at Poisson times to check Little's law).
    """
    env = _environment()()
    epoch0 = scenario.epoch0 if traffic.epoch0 is None else traffic.epoch0
    if windows is None:
        windows = scenario_windows(scenario, traffic.horizon_s, seed)
    semantic = None
    if not baseline and scenario.gateway.cache.semantic:
        semantic = build_semantic_cache(scenario, embed_model.embedder, embed_model.similarity_table())
    gateway = build_gateway(scenario, lambda: epoch0 + env.now, seed=seed, baseline=baseline, semantic_cache=semantic,
                            keep_records=keep_requests)
    names = [scenario.baseline_model] if baseline else list(scenario.providers)
    providers = {n: SimProvider(env, n, scenario.providers[n], windows_for(n, scenario.providers[n].provider, windows))
                 for n in names}
    driver = SimDriver(env, providers, embed_model if semantic is not None else None)
    rec = Recorder()
    rec.outcomes = gateway.ledger.records  # filled only when keep_requests (the per-request table)
    app = _App(env, scenario, traffic, gateway, driver, rec, seed, "b" if baseline else "r")
    env.process(app.arrivals())
    if observe is not None:
        observe(env, app)
    if progress is None:
        env.run()
    else:
        horizon = max(traffic.horizon_s, 1e-6)
        steps = 100
        for k in range(1, steps + 1):
            env.run(until=horizon * k / steps)
            progress(len(rec))
        env.run()
        progress(len(rec))
    duration = max(env.now, traffic.horizon_s)
    hourly = _fixed_hourly(scenario, names)
    overshoot = 0.0
    caps = None
    if not baseline and gateway.pipeline.budget_policy is not None:
        policy = gateway.pipeline.budget_policy
        caps = TenantCaps(traffic.tenant, traffic.tenants, traffic.tenant_plans, policy.cap_for)
        spent = getattr(gateway.budgets, "spend_by_month", lambda: {})()  # caps are monthly: month by month
        plan_of = dict(zip(traffic.tenants, traffic.tenant_plans))  # a tenant that changed plan: its last one
        for (tenant, _month), amount in spent.items():
            cap = policy.cap_for(tenant, plan_of.get(tenant, ""))
            if cap is not None:
                overshoot += max(0.0, amount - cap)
    # standby capacity is paid for the real time the traffic spans: a trace replayed ``speedup``
    # times faster still stands for its own hours (a per-token bill does not shrink either)
    real_s = duration * (scenario.traffic.speedup if traffic.source != "synthetic" else 1.0)
    summary = summarise(rec, fixed_cost_usd=hourly * real_s / 3600.0, fixed_cost_per_hour_usd=hourly,
                        turns_per_month=traffic_rate(scenario, traffic) * 86_400.0 * 30.0,
                        slo_s=scenario.slo.latency_s, slo_metric=scenario.slo.metric,
                        slo_percentile=scenario.slo.percentile,
                        budget_overshoot_usd=overshoot, duration_s=duration, caps=caps)
    summary["internal_errors"] = driver.internal_errors
    summary["breaker_opens"] = {n: b.times_opened for n, b in gateway.pipeline.breakers.items() if b.times_opened}
    return rec, summary


#: a trace shorter than this has no meaningful rate to project over a month
MIN_PROJECTION_SPAN_S = 60.0


def expected_rate_per_s(cfg: Any) -> float:
    """Long-run turns per second of synthetic traffic: ``rate_per_s`` times the random flash crowds'
    mean multiplier.  Bursts overlap and multiply, and how many are in force at an instant is
    Poisson with mean ``a = burst_rate_per_day × burst_duration_s / 86,400``, so the mean is
    ``E[multiplier^N] = e^(a (multiplier − 1))``.  Scheduled ``bursts`` are events of one run, not
    a rate that recurs every month: left out."""
    a = cfg.burst_rate_per_day * cfg.burst_duration_s / 86_400.0
    return cfg.rate_per_s * math.exp(a * (cfg.burst_multiplier - 1.0))


def traffic_rate(scenario: Scenario, traffic: Traffic) -> float:
    """Mean turns per second the projection assumes (the scenario's, random bursts included; a
    trace's real rate).

    NaN for a trace spanning less than a minute of real time (one row, or rows logged in the
    same second): its rate is undefined, and the monthly projection is left blank rather than
    extrapolated from a few milliseconds into trillions of dollars.
    """
    if traffic.source == "synthetic":
        return expected_rate_per_s(scenario.traffic)
    span = traffic.horizon_s * scenario.traffic.speedup
    return len(traffic) / span if span >= MIN_PROJECTION_SPAN_S else math.nan


def make_traffic(scenario: Scenario, *, requests: int | None = None, hours: float | None = None, seed: int = 0,
                 trace: str | None = None) -> Traffic:
    """Synthetic traffic, or the scenario's (or given) trace."""
    trace = trace or scenario.traffic.trace
    if trace is not None:
        from pathlib import Path

        from .trace import TraceError, load_trace

        path = Path(trace)
        if not path.is_absolute() and not path.exists() and scenario.source:
            path = Path(scenario.source).parent / path
        system_tokens = 0
        if scenario.traffic.system_prompt:
            from ..tokens import count_tokens
            system_tokens = count_tokens(scenario.traffic.system_prompt) + 4
        try:
            traffic = load_trace(path, speedup=scenario.traffic.speedup, requests=requests, hours=hours,
                                 system_prompt_tokens=system_tokens)
        except TraceError as exc:
            raise ScenarioError("traffic.trace", str(exc)) from None
        check_plans(scenario, traffic, "traffic.trace")
        return traffic
    traffic = generate_traffic(scenario, requests=requests, hours=hours, seed=seed)
    check_plans(scenario, traffic)
    if len(traffic) == 0:
        field = "hours" if hours is not None else "traffic.hours"
        raise ScenarioError(field, f"a window in which at least one request arrives (raise {field} or "
                            "traffic.rate_per_s)", hours if hours is not None else scenario.traffic.hours)
    return traffic


def check_plans(scenario: Scenario, traffic: Traffic, field: str = "traffic.tenants") -> None:
    """A plan router must have a route for every plan in the traffic (else every request would fail)."""
    r = scenario.gateway.router
    if r.type == "plan" and r.default is None:
        missing = sorted(set(traffic.tenant_plans) - set(r.plans))
        if missing:
            raise ScenarioError(field, f"plans with a route in gateway.router.plans ({', '.join(sorted(r.plans))}); "
                                f"no route for {', '.join(map(repr, missing))}")


def _embed_model(scenario: Scenario, traffic: Traffic) -> EmbedModel | None:
    c = scenario.gateway.cache
    if not c.semantic:
        return None
    embedder = build_embedder(scenario)
    model = EmbedModel(embedder, latency_s=c.embed_latency_s, cost_per_1m_tokens=c.embed_cost_usd_per_1m,
                       opaque=[traffic.texts[i] for i in traffic.opaque])
    try:
        model.prime(traffic.texts[i] for i in np.unique(traffic.text))  # the hot path then only looks vectors up
    except Exception as exc:  # an API embedder without a key, a model that fails to load: before the run
        raise ScenarioError("gateway.cache.embedder", f"an embedder that works here ({type(exc).__name__}: "
                            f"{str(exc)[:200]})", c.embedder) from None
    return model


def _frame(cols: dict[str, np.ndarray], rec: Recorder, traffic: Traffic) -> "pd.DataFrame":
    import pandas as pd

    from .metrics import CACHES, KINDS

    turn = cols["turn"]
    return pd.DataFrame({
        "turn": turn, "arrival_s": cols["arrival_s"], "latency_s": cols["latency_s"], "ttft_s": cols["ttft_s"],
        "cost_usd": cols["cost_usd"], "calls": cols["calls"],
        "outcome": np.array(KINDS, dtype=object)[cols["kind"]],
        "cache": np.array(CACHES, dtype=object)[cols["cache"]],
        "fallback": cols["fallback"].astype(bool), "false_hit": cols["false_hit"].astype(bool),
        "wrong_answer": cols["wrong_answer"].astype(bool),
        "error_code": np.array(rec.error_codes + [None], dtype=object)[cols["error"]],
        "deployment": np.array(rec.deployments + [None], dtype=object)[cols["deployment"]],
        "tenant": np.array(traffic.tenants, dtype=object)[traffic.tenant[turn]],
        "plan": np.array(traffic.tenant_plans, dtype=object)[traffic.tenant[turn]],
        "intent": np.array(traffic.intents, dtype=object)[traffic.intent[turn]],
        "steps": cols["steps"],
    })


#: the most user requests one run may hold (≈ 20 min of simulation on one core; ≈ 1 GB of arrays)
MAX_REQUESTS = 10_000_000
#: the longest stretch of virtual time one run may cover (a year: budgets, outages and diurnal
#: profiles are monthly and daily; beyond it a tiny rate is a typo, not a plan)
MAX_SIMULATED_DAYS = 366


def _whole(field: str, value: Any, lo: int, hi: float = math.inf) -> int:
    """``value`` as an int (NumPy integers included) in [lo, hi], else a ScenarioError naming ``field``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or not lo <= number <= hi:
        allowed = f"a whole number >= {lo}" + ("" if hi == math.inf else f" and <= {hi:,}")
        raise ScenarioError(field, allowed, value)
    return number


def check_run_args(scenario: Scenario, *, requests: Any = None, hours: Any = None, seed: Any = 0,
                   replications: Any = 1, trace: Any = None,
                   arg_prefix: str = "") -> tuple[int | None, float | None, int, int]:
    """Validate a run's size, seed and replications before anything is generated.

    Returns them normalised (NumPy scalars become Python numbers).  ``hours`` (or the scenario's
    ``traffic.hours``) is bounded by the requests it would hold at the scenario's mean rate, so a
    typo cannot ask for terabytes; a trace replay holds no more than its file.  Errors name the
    arguments with ``arg_prefix`` in front (the command line passes ``"--"``).
    """
    if requests is not None:
        requests = _whole(f"{arg_prefix}requests", requests, 1, MAX_REQUESTS)
    if requests is not None and hours is not None and (trace or scenario.traffic.trace) is None:
        # synthetic traffic is sized by one or the other: hours used to win silently, unbounded
        raise ScenarioError(f"{arg_prefix}hours", f"unset when {arg_prefix}requests is given (one sizes the run)",
                            hours)
    if hours is not None:
        if isinstance(hours, bool) or not isinstance(hours, (int, float, np.integer, np.floating)) \
                or not math.isfinite(hours) or hours <= 0:
            raise ScenarioError(f"{arg_prefix}hours", "a finite number > 0", hours)
        hours = float(hours)
    size_field, size_hours = (f"{arg_prefix}hours", hours) if requests is None and hours is not None else \
        ("traffic.hours", scenario.traffic.hours if requests is None else None)
    rate = scenario.traffic.rate_per_s
    synthetic = (trace or scenario.traffic.trace) is None
    if size_hours is not None and synthetic and rate * size_hours * 3600.0 > MAX_REQUESTS:
        raise ScenarioError(size_field, f"at most {MAX_REQUESTS / rate / 3600.0:,.6g} at traffic.rate_per_s={rate:g} "
                            f"(about {MAX_REQUESTS:,} requests)", size_hours)
    size_requests = requests if requests is not None else (scenario.traffic.requests if size_hours is None else None)
    if size_requests is not None and synthetic and size_requests / rate > MAX_SIMULATED_DAYS * 86_400.0:
        raise ScenarioError("traffic.rate_per_s", f"a rate at which {size_requests:,} requests arrive within "
                            f"{MAX_SIMULATED_DAYS} days (>= {size_requests / (MAX_SIMULATED_DAYS * 86_400.0):.3g} "
                            "per second)", rate)
    seed = _whole(f"{arg_prefix}seed", seed, 0)
    return requests, hours, seed, _whole(f"{arg_prefix}replications", replications, 1, 1_000)


def simulate(scenario: "Scenario | str", *, requests: int | None = None, hours: float | None = None, seed: int = 0,
             progress: bool | Callable[[int, int], None] = False, replications: int = 1, trace: str | None = None,
             baseline: bool | None = None, keep_requests: bool = True,
             overrides: Mapping[str, Any] | None = None, parallel: bool | None = None) -> SimResult:
    """Run a scenario: the gateway and the baseline over the same traffic, in virtual time.

    ``scenario`` is a preset name, a TOML path or a :class:`Scenario`; ``overrides`` are dotted
    keys applied to it first (``{"gateway.cache.semantic": False}``, as ``--set``).  ``trace``
    replays a request log (CSV, ``datasets/traces/README.md``) instead of synthetic traffic.
    ``baseline`` runs the baseline or not (None: as the scenario's ``[baseline] enabled`` says).
    ``requests`` or ``hours`` override the scenario's traffic size.  ``progress=True`` shows a
    tqdm bar; a callable ``progress(done, total)`` is called as requests finish (widgets use it;
    ``total`` counts the baseline run and every replication too).  ``replications=N`` runs
    seeds ``seed … seed+N-1``: ``summary`` then holds the means, ``summary["ci95"]`` a 95 %
    interval per headline number and ``replications`` one row per run.  ``keep_requests=False``
    skips the per-request table (for very long runs).  ``parallel`` runs the baseline in a
    second Python process while the policy runs in this one (:mod:`llmlab.sim.sidecar`; the
    same results, in about two thirds of the time), and replications beside each other in
    child processes as the CPUs allow: None does so for runs of at least
    :data:`PARALLEL_MIN_TURNS` turns when two CPUs are usable, True always, False never.  Never raises for
    what happens *during* the run; configuration errors raise
    :class:`~llmlab.sim.scenario.ScenarioError` first.
    """
    if parallel is not None and not isinstance(parallel, bool):
        raise ScenarioError("parallel", "True, False or None (None: in parallel for long runs on two or more CPUs)",
                            parallel)
    sc = load_scenario(scenario, overrides)
    requests, hours, seed, replications = check_run_args(sc, requests=requests, hours=hours, seed=seed,
                                                         replications=replications, trace=trace)
    if replications > 1:
        check_every_seed(sc, requests=requests, hours=hours, seed=seed, replications=replications, trace=trace)
        return _replicate(sc, requests=requests, hours=hours, seed=seed, progress=progress, n=replications,
                          trace=trace, baseline=baseline, keep_requests=keep_requests, parallel=parallel)
    t0 = time.perf_counter()
    traffic = make_traffic(sc, requests=requests, hours=hours, seed=seed, trace=trace)
    embed = _embed_model(sc, traffic)
    windows = scenario_windows(sc, traffic.horizon_s, seed)
    do_baseline = sc.baseline.enabled if baseline is None else baseline
    base_summary = base_turns = None
    if do_baseline and _baseline_beside(parallel, len(traffic)):
        rec, summary, (base_rec, base_summary) = _policy_and_baseline(sc, traffic, seed, windows, embed,
                                                                      keep_requests, progress)
    else:
        bar = _progress_bar(len(traffic), progress, "policy", phases=2 if do_baseline else 1)
        rec, summary = run_once(sc, traffic, seed=seed, windows=windows, keep_requests=keep_requests,
                                progress=bar.update_to if bar else None, embed_model=embed)
        if bar:
            bar.close()
        if do_baseline:
            bar = _progress_bar(len(traffic), progress, "baseline", phases=2, phase=1)
            base_rec, base_summary = baseline_run(sc, traffic, seed, windows, progress=bar.update_to if bar else None)
            if bar:
                bar.close()
    if do_baseline:
        base_turns = _frame(base_rec.columns(), base_rec, traffic)
        summary["baseline_cost_usd"] = base_summary["cost_usd"]
        summary["baseline_fixed_cost_usd"] = base_summary["fixed_cost_usd"]
        summary["baseline_projected_monthly_cost_usd"] = base_summary["projected_monthly_cost_usd"]
        summary["baseline_p95_latency_s"] = base_summary["p95_latency_s"]
        summary["baseline_ttft_p95_s"] = base_summary["ttft_p95_s"]
        summary["baseline_slo_violation_rate"] = base_summary["slo_violation_rate"]
        summary["baseline_availability"] = base_summary["availability"]
        summary["savings_pct"] = (100.0 * (1.0 - summary["cost_usd"] / base_summary["cost_usd"])
                                  if base_summary["cost_usd"] > 0 else math.nan)
    else:
        summary["baseline_cost_usd"] = math.nan
        summary["savings_pct"] = math.nan
    summary["scenario"] = sc.name
    summary["seed"] = seed
    summary["traffic"] = traffic.source
    summary["outage_windows"] = len(windows)
    cols = rec.columns()
    turns = _frame(cols, rec, traffic)
    summary["refused_savings_pct"] = (refused_savings_pct(turns, base_turns, base_summary["cost_usd"])
                                      if base_turns is not None else math.nan)
    return SimResult(sc, summary, requests_frame(rec, traffic, cols) if keep_requests else _empty_frame(),
                     turns, base_summary, base_turns, windows, None, seed,
                     wall_s=time.perf_counter() - t0)


#: turns from which :func:`simulate` runs the baseline in a second process by default: below it
#: the child's start (≈ 0.5 s: an interpreter, llmlab's imports) outweighs the baseline's run
PARALLEL_MIN_TURNS = 20_000


def _baseline_beside(parallel: bool | None, turns: int) -> bool:
    """Run the baseline in a second process?  As asked, else for long runs with two CPUs to use."""
    if parallel is not None:
        return parallel
    from .sidecar import usable_cpus

    return turns >= PARALLEL_MIN_TURNS and usable_cpus() >= 2


def baseline_run(sc: Scenario, traffic: Traffic, seed: int, windows: list[Window], *,
                 progress: Callable[[int], None] | None = None) -> tuple[Recorder, dict[str, Any]]:
    """The baseline over ``traffic`` (no per-request table): what :func:`simulate` runs in this
    process or, as ``llmlab.sim.run:baseline_run``, in the child of :mod:`llmlab.sim.sidecar`."""
    return run_once(sc, traffic, seed=seed, baseline=True, windows=windows, keep_requests=False, progress=progress)


def _policy_and_baseline(sc: Scenario, traffic: Traffic, seed: int, windows: list[Window], embed: EmbedModel,
                         keep_requests: bool, progress: Any) -> tuple[Recorder, dict[str, Any], tuple]:
    """The policy run here while the baseline runs in a child interpreter, one progress over both.

    The child gets the very traffic and outage windows (pickled), so its run is the one this
    process would have made; a child that fails (it could not start, was killed) is reported
    in a warning and the baseline runs here after all."""
    from .sidecar import SideCall, SideCallFailed

    n = len(traffic)
    side = SideCall("llmlab.sim.run:baseline_run", (sc, traffic, seed, windows))
    bar = _progress_bar(2 * n, progress, "policy + baseline")
    try:
        rec, summary = run_once(sc, traffic, seed=seed, windows=windows, keep_requests=keep_requests,
                                progress=(lambda done: bar.update_to(done + side.done)) if bar else None,
                                embed_model=embed)
        try:
            base = side.result((lambda done: bar.update_to(n + done)) if bar else None)
        except SideCallFailed as exc:
            log.warning("llmlab: the baseline run in a second process failed; running it in this one: %s", exc)
            base = baseline_run(sc, traffic, seed, windows, progress=(lambda done: bar.update_to(n + done))
                                if bar else None)
        if bar:
            bar.update_to(2 * n)
    finally:
        side.close()  # the caller interrupted the policy run: the child must not outlive it
        if bar:
            bar.close()
    return rec, summary, base


def _empty_frame() -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame()


def _replicate(sc: Scenario, *, n: int, seed: int, **kw: Any) -> SimResult:
    """``n`` runs on seeds ``seed…seed+n-1``: every number in the summary is the mean over runs.

    Counts, dictionaries (errors, model shares) and the SLO verdict are averaged too, so no line
    of the report mixes one run's value with the others' mean; ``slo_met`` is the verdict on the
    mean and ``slo_met_share`` the share of runs that met the objective.
    """
    import pandas as pd

    progress = kw.pop("progress", False)
    overall = _RunsProgress(progress, n) if progress else None
    try:
        slots = _replication_slots(sc, n, seed, kw)
        if slots > 1:
            runs = _replications_beside(sc, n, seed, slots, overall, kw)
        else:
            runs = [simulate(sc, seed=seed + k, progress=overall.for_run(k) if overall else False, **kw)
                    for k in range(n)]
    finally:
        if overall:
            overall.close()
    table = pd.DataFrame([{k: v for k, v in r.summary.items() if not isinstance(v, (dict, list))} for r in runs])
    summary = dict(runs[0].summary)
    ci: dict[str, list[float]] = {}
    for col in table.columns:
        if col == "seed" or not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            continue
        m, lo, hi = mean_ci(table[col].tolist(), metric_bounds(col))
        whole = pd.api.types.is_integer_dtype(table[col]) and float(m).is_integer()
        summary[col] = int(m) if whole else m
        if col in HEADLINE or col in ("requests", "budget_rejections", "budget_overshoot_usd"):
            ci[col] = [lo, hi]
    for key in ("errors", "model_share"):
        names = sorted({name for r in runs for name in r.summary.get(key, {})})
        summary[key] = {name: sum(r.summary.get(key, {}).get(name, 0) for r in runs) / n for name in names}
    met = [r.summary.get("slo_met") is True for r in runs]
    summary["slo_met_share"] = sum(met) / n
    value = summary.get("slo_value_s", math.inf)
    summary["slo_met"] = None if value != value else bool(value <= summary.get("slo_s", math.inf))
    summary["ci95"] = ci
    summary["replications"] = n
    summary["seed"] = seed
    requests = pd.concat([r.requests.assign(replication=k) for k, r in enumerate(runs)], ignore_index=True)
    turns = pd.concat([r.turns.assign(replication=k) for k, r in enumerate(runs)], ignore_index=True)
    first = runs[0]
    return SimResult(sc, summary, requests, turns, first.baseline_summary, first.baseline_turns, first.outages,
                     table, seed, wall_s=sum(r.wall_s for r in runs))


def _replication_slots(sc: Scenario, n: int, seed: int, kw: Mapping[str, Any]) -> int:
    """How many replications to run at once, each in a child interpreter (1: one after the
    other in this process).  None for ``parallel`` asks for it when each run holds
    :data:`PARALLEL_MIN_TURNS` turns (a child's start, ≈ 1 s with the embedder's, costs more
    than a shorter run) and the CPUs allow two at once; a replication that runs its own baseline
    beside it (:func:`_baseline_beside`) counts for two CPUs.  True runs two at least."""
    parallel = kw.get("parallel")
    if parallel is False or n < 2:
        return 1
    from .sidecar import usable_cpus

    turns = len(make_traffic(sc, requests=kw.get("requests"), hours=kw.get("hours"), seed=seed, trace=kw.get("trace")))
    if parallel is None and turns < PARALLEL_MIN_TURNS:
        return 1
    baseline = sc.baseline.enabled if kw.get("baseline") is None else kw["baseline"]
    each = 2 if baseline and _baseline_beside(parallel, turns) else 1
    return min(n, usable_cpus() // each) if parallel is None else min(n, max(2, usable_cpus() // each))


def replication_run(sc: Scenario, seed: int, kw: Mapping[str, Any], *,
                    progress: Callable[[tuple[int, int]], None]) -> SimResult:
    """One replication, as ``llmlab.sim.run:replication_run`` in a child of :mod:`llmlab.sim.sidecar`:
    :func:`simulate` with its ``(done, total)`` progress sent to the parent."""
    return simulate(sc, seed=seed, progress=lambda done, total: progress((done, total)), **kw)


def _replications_beside(sc: Scenario, n: int, seed: int, slots: int, overall: "_RunsProgress | None",
                         kw: Mapping[str, Any]) -> list[SimResult]:
    """``n`` replications, ``slots`` at a time, each in a child interpreter; a child that fails is
    named in a warning and its replication runs in this process."""
    from .sidecar import SideCall, SideCallFailed

    runs: list[SimResult | None] = [None] * n
    waiting = list(range(n))
    running: dict[int, SideCall] = {}
    try:
        while waiting or running:
            while waiting and len(running) < slots:
                k = waiting.pop(0)
                running[k] = SideCall("llmlab.sim.run:replication_run", (sc, seed + k, kw))
            for k, call in list(running.items()):
                if overall and call.done:
                    overall.for_run(k)(*call.done)
                if not call.ready:
                    continue
                del running[k]
                try:
                    runs[k] = call.result()
                except SideCallFailed as exc:
                    log.warning("llmlab: replication %d in a second process failed; running it in this one: %s",
                                k + 1, exc)
                    runs[k] = simulate(sc, seed=seed + k, progress=overall.for_run(k) if overall else False, **kw)
            time.sleep(0.05)
    finally:
        for call in running.values():  # interrupted: no child outlives the call
            call.close()
    return runs  # type: ignore[return-value]


class _Bar:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update_to(self, n: int) -> None:
        self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class _CallbackBar:
    """Reports ``(done, total)`` over every phase (policy, then baseline) to a callable."""

    def __init__(self, fn: Callable[[int, int], None], total: int, phases: int, phase: int) -> None:
        self.fn, self.total, self.offset = fn, total * phases, total * phase

    def update_to(self, n: int) -> None:
        self.fn(self.offset + n, self.total)

    def close(self) -> None:
        pass


class _RunsProgress:
    """One progress over every replication: ``(done, total)`` summed over all runs for a
    callable, one bar saying how many runs are done for ``progress=True`` (each run's own bars
    restarted at 0, with nothing telling how many runs were left).  Runs that go on at once
    (in child processes) add up the same way as runs one after the other."""

    def __init__(self, progress: Any, n: int) -> None:
        self.progress, self.n, self.bar = progress, n, None
        self.done: dict[int, tuple[int, int]] = {}

    def for_run(self, k: int) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            self.done[k] = (done, total)
            progressed = sum(d for d, _ in self.done.values())
            if callable(self.progress):
                self.progress(progressed, self.n * total)
                return
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.n * total, unit="req", leave=False, mininterval=0.5)
            finished = sum(d >= t for d, t in self.done.values())
            self.bar.set_description(f"runs {finished}/{self.n} done", refresh=False)
            self.bar.update(progressed - self.bar.n)

        return report

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_bar(total: int, enabled: Any, label: str, *, phases: int = 1, phase: int = 0) -> Any:
    if callable(enabled):
        return _CallbackBar(enabled, total, phases, phase)
    if not enabled:
        return None
    from tqdm import tqdm

    return _Bar(tqdm(total=total, desc=label, unit="req", leave=False, mininterval=0.5))
