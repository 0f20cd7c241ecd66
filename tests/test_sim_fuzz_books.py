"""Property-based fuzz of the scenario space, part two: the run's books (hypothesis).

``tests/test_sim_fuzz.py`` checks that a valid scenario runs to its end with sound numbers and
that a bad one is refused naming its field.  This module draws from the same strategies, adds
the corners scenarios written by teams reach (coalescing, hedges with long prompts, fallback
chains of up to four deployments with a ``"*"`` chain, several tenant groups with zero or tiny
monthly caps, outages covering the whole run, one-token answers) and checks that the tables
and the summary agree with each other:

* ``cost_usd`` = variable + fixed cost, the variable cost the sum of the turns' and of the
  requests' costs, every cost and latency ≥ 0 and finite;
* one requests row per gateway request of each turn; a fallback, a hedge won, a coalesced
  turn are what they say (answered, hedged, a cache hit);
* the baseline serves the same turns (arrival, tenant, plan, intent);
* no tenant spends more in a month than its cap; a tenant capped at 0 is never billed;
* the per-tenant table adds up to the summary, and the summary table, tenant and outage
  tables render;
* ``llmlab simulate --set k=v --json --out DIR`` prints the summary ``simulate(overrides=…)``
  returns, and writes every file of ``--out``.

CI runs a fixed, derandomized set (≈ 15 s); ``LLMLAB_SIMFUZZ=deep`` hunts (see test_sim_fuzz).
Found by it: a failed agent turn counted as a fallback (llmlab/sim/metrics.py); a hedge's hold
that priced the loser's prompt at the tokenizer's count and let caps be overshot
(llmlab/fallback.py: ``prompt_bound``).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any

import numpy as np
from hypothesis import event, example, given
from hypothesis import strategies as st
from test_sim_fuzz import PLANS, PRESETS, _small_float, check_result, examples, valid_cases

from llmlab.budgets import month_of
from llmlab.sim import simulate
from llmlab.sim.build import budget_policy
from llmlab.sim.run import preflight
from llmlab.sim.scenario import ScenarioError, load_scenario


# ----------------------------------------------------------------------------- the corners
@st.composite
def corners(draw: Any, preset: str) -> dict[str, Any]:
    deployments = PRESETS[preset]["deployments"]
    dep = st.sampled_from(deployments)
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["gateway.coalesce"] = draw(st.fixed_dictionaries({}, optional={
            "max_wait_s": _small_float(0.001, 100), "streams": st.booleans()}))
    if draw(st.booleans()):
        out["gateway.fallbacks"] = draw(st.dictionaries(dep | st.just("*"), st.lists(dep, min_size=1, max_size=4),
                                                        max_size=4))
    if draw(st.booleans()):
        out["gateway.hedge"] = {"after_s": draw(st.sampled_from([0.001, 0.05, 0.5, 5.0])),
                                "unstreamed": draw(st.booleans())}
    if draw(st.booleans()):
        groups = [{"name": f"g{i}", "plan": draw(st.sampled_from(PLANS)), "count": draw(st.integers(1, 5)),
                   "share": draw(_small_float(0.0, 2.0)),
                   **({"monthly_budget_usd": draw(st.sampled_from([0.0, 1e-9, 1e-4, 0.01, 1.0]))}
                      if draw(st.booleans()) else {})}
                  for i in range(draw(st.integers(1, 4)))]
        groups[0]["share"] = max(groups[0]["share"], 0.1)
        out["traffic.tenants"] = groups
    if draw(st.booleans()):
        out["gateway.budget"] = {"default_cap": draw(st.sampled_from([0.0, 1e-7, 1e-4, 0.01])),
                                 **({"on_exceed": "downgrade", "downgrade_to": draw(dep)} if draw(st.booleans())
                                    else {})}
    if draw(st.booleans()):
        out["traffic.fixed_prompt_tokens"] = draw(st.sampled_from([1, 50, 20_000, 100_000]))
    if draw(st.booleans()):
        out["traffic.max_tokens"] = draw(st.sampled_from([1, 16, None]))
    if draw(st.booleans()):  # down, erroring or slow for the whole run
        targets = deployments + PRESETS[preset]["groups"]
        out["outages.windows"] = [{"target": draw(st.sampled_from(targets)), "start_s": 0.0, "end_s": 1e7,
                                   "kind": draw(st.sampled_from(["down", "errors", "slow"]))}
                                  for _ in range(draw(st.integers(1, 3)))]
    return out


@st.composite
def cases(draw: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    preset, overrides, args = draw(valid_cases())
    overrides.update(draw(corners(preset)))
    return preset, overrides, args


def runnable(preset: str, overrides: dict[str, Any], args: dict[str, Any]) -> Any:
    """The scenario, or None when it is refused before the run (test_sim_fuzz checks those)."""
    try:
        scenario = load_scenario(preset, overrides)
        preflight(scenario, **args)
    except ScenarioError as exc:
        event(f"rejected before the run: {str(exc).split(':')[0]}")
        return None
    event("ran")
    return scenario


# ----------------------------------------------------------------------------- the books
def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def check_books(scenario: Any, result: Any) -> None:
    s, turns, requests = result.summary, result.turns, result.requests
    for frame in (turns, requests):
        cost = frame["cost_usd"].to_numpy(dtype=float)
        assert np.isfinite(cost).all() and (cost >= 0).all()
        for col in ("latency_s", "ttft_s"):
            x = frame[col].to_numpy(dtype=float)
            assert not (x[~np.isnan(x)] < 0).any(), col
    assert close(s["variable_cost_usd"], float(turns["cost_usd"].sum()))
    assert close(s["variable_cost_usd"], float(requests["cost_usd"].sum()))
    assert close(s["cost_usd"], s["variable_cost_usd"] + s["fixed_cost_usd"])

    per_turn = requests.groupby("turn").size().reindex(turns["turn"]).fillna(0).to_numpy()
    assert (per_turn == turns["steps"].to_numpy()).all()
    answered = (turns["outcome"] != "error").to_numpy()
    fallback = turns["fallback"].to_numpy(dtype=bool)
    assert not (fallback & ~answered).any(), "a failed turn counted as a fallback"
    assert close(s["fallback_rate"], float(fallback.mean())) and close(s["availability"], float(answered.mean()))
    assert not (turns["hedge_won"].to_numpy(dtype=bool) & ~turns["hedged"].to_numpy(dtype=bool)).any()
    assert turns.loc[turns["coalesced"].astype(bool), "cache"].isin(["exact_hit", "semantic_hit"]).all()
    assert s["budget_rejections"] == int((turns["error_code"] == "budget_exceeded").sum())

    if result.baseline_turns is not None:
        for col in ("turn", "arrival_s", "tenant", "plan", "intent"):
            assert (result.baseline_turns[col].to_numpy() == turns[col].to_numpy()).all(), col

    policy = budget_policy(scenario)
    if policy is not None and len(requests):
        spent = requests.assign(month=requests["started_at"].map(month_of)).groupby(
            ["tenant", "plan", "month"])["cost_usd"].sum()
        for (tenant, plan, month), usd in spent.items():
            cap = policy.cap_for(tenant, plan)
            assert cap is None or usd <= cap + 1e-12, (tenant, month, usd, cap)
            assert cap != 0.0 or usd == 0.0, (tenant, "billed under a zero cap", usd)

    tenants = result.tenants()
    assert int(tenants["turns"].sum()) == len(turns)
    assert close(float(tenants["cost_usd"].sum()), s["variable_cost_usd"])
    assert int(tenants["budget_rejections"].sum()) == s["budget_rejections"]
    if result.baseline_summary is not None:
        assert close(float(tenants["baseline_cost_usd"].sum()), result.baseline_summary["variable_cost_usd"])
    from llmlab.report import summary_table

    assert summary_table(s)
    result.outage_table()


#: what the fuzz found, minimised: an agent turn whose tool call fell back and whose answer was then
#: refused for budget counted as a fallback; hedges of 100,000-token prompts overshot the caps
FOUND = [
    ("realtime-chat", {"gateway.cache.embedder": "hashed", "outages.windows": [
        {"target": "openai", "start_s": 0.0, "end_s": 260.0, "kind": "errors", "error_rate": 0.65}],
        "gateway.budget": {"default_cap": 0.01, "on_exceed": "downgrade", "downgrade_to": "gpt-4o-mini"}},
     {"seed": 1, "requests": 20}),
    ("b2b-saas", {"gateway.cache.embedder": "hashed", "gateway.hedge": {"after_s": 0.001},
                  "traffic.fixed_prompt_tokens": 100_000}, {"seed": 0, "requests": 40}),
]


@examples(ci=14)
@given(cases())
@example(FOUND[0])
@example(FOUND[1])
def test_a_valid_scenario_keeps_its_books(case):
    preset, overrides, args = case
    scenario = runnable(preset, overrides, args)
    if scenario is None:
        return
    result = simulate(scenario, **args)
    check_result(result, args.get("requests"))
    check_books(scenario, result)


# ----------------------------------------------------------------------------- --set is the override
def toml_value(value: Any) -> str:
    """``value`` as the TOML text ``--set`` parses back to it (None only at the top: TOML has no null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (int, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}"
                           for k, v in value.items() if v is not None) + "}"


def _nested_none(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or _nested_none(v) for v in value.values())
    return isinstance(value, list) and any(_nested_none(v) for v in value)


@examples(ci=3)
@given(cases())
def test_set_on_the_command_line_is_the_python_override_and_out_writes_every_file(tmp_path_factory, case):
    from llmlab.sim.cli import _jsonable, main

    preset, overrides, args = case
    overrides = {k: v for k, v in overrides.items() if not _nested_none(v)}  # a dropped null is not the same
    scenario = runnable(preset, overrides, args)
    if scenario is None:
        return
    argv = ["--scenario", preset, "--json", "--seed", str(args["seed"])]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={'null' if value is None else toml_value(value)}"]
    argv += ["--requests", str(args["requests"])] if "requests" in args else ["--hours", repr(args["hours"])]
    out = tmp_path_factory.mktemp("out")
    printed, said = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(said):
        code = main(argv + ["--out", str(out)])
    assert code == 0, said.getvalue()[-2000:]
    assert json.loads(printed.getvalue()) == _jsonable(simulate(scenario, **args).summary)
    written = {p.name for p in out.iterdir()}
    assert {"requests.csv", "turns.csv", "tenants.csv", "outages.csv", "summary.json"} <= written
    assert {"cost_over_time.png", "latency_cdf.png", "hit_rate.png", "outages.png"} <= written
