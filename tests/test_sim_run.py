"""simulate(): both presets end to end, traces, failure storms, replications, the results' shape."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmlab.sim import SimResult, simulate
from llmlab.sim.scenario import ScenarioError
from llmlab.sim.traffic import generate_traffic

TRACE = Path(__file__).resolve().parents[1] / "datasets" / "traces" / "example_trace.csv"
KEYS = ("requests", "cost_usd", "baseline_cost_usd", "savings_pct", "projected_monthly_cost_usd", "cache_hit_rate",
        "semantic_hit_rate", "false_hit_rate", "p50_latency_s", "p95_latency_s", "p99_latency_s", "ttft_p95_s",
        "availability", "fallback_rate", "retry_amplification", "budget_rejections", "budget_overshoot_usd",
        "slo_violation_rate")


@pytest.fixture(scope="module")
def b2b() -> SimResult:
    return simulate("b2b-saas", requests=3000, seed=1)


@pytest.fixture(scope="module")
def chat() -> SimResult:
    return simulate("realtime-chat", requests=2000, seed=1)


def test_b2b_summary_has_every_headline_number(b2b):
    s = b2b.summary
    for key in KEYS:
        assert key in s, key
        assert s[key] is not None and not (isinstance(s[key], float) and math.isnan(s[key])), key
    assert s["requests"] == 3000 and s["internal_errors"] == 0
    assert 0 < s["cost_usd"] < s["baseline_cost_usd"]  # plan routing + cache beat "everything on gpt-4o"
    assert s["savings_pct"] == pytest.approx(100 * (1 - s["cost_usd"] / s["baseline_cost_usd"]))
    assert s["fixed_cost_usd"] > 0  # the self-hosted model's hourly bill
    assert s["cache_hit_rate"] > 0.05 and s["semantic_hit_rate"] > 0
    assert s["budget_rejections"] > 0 and s["budget_overshoot_usd"] == 0.0  # reserve-then-settle never overshoots
    assert s["fallback_rate"] > 0  # the scheduled OpenAI outage
    assert s["p50_latency_s"] <= s["p95_latency_s"] <= s["p99_latency_s"]
    assert set(s["model_share"]) >= {"gpt-4o", "gpt-4o-mini", "claude-sonnet", "self-hosted-ft"}


def test_every_request_appears_exactly_once(b2b):
    assert len(b2b.turns) == 3000 and b2b.turns["turn"].is_unique
    assert sorted(b2b.turns["turn"]) == list(range(3000))
    assert len(b2b.requests) == b2b.summary["gateway_requests"] == 3000
    assert b2b.requests["request_id"].is_unique
    for col in ("request_id", "outcome", "cache", "cost_usd", "latency_s", "attempts", "arrival_s", "intent",
                "false_hit", "meta_intent", "meta_prompt_tokens"):
        assert col in b2b.requests.columns, col
    assert b2b.requests["cost_usd"].sum() == pytest.approx(b2b.summary["variable_cost_usd"])
    assert len(b2b.baseline_turns) == 3000


def test_realtime_chat_streams_retrieves_and_calls_tools(chat):
    s = chat.summary
    assert s["requests"] == 2000 and s["internal_errors"] == 0
    assert s["gateway_requests"] > s["requests"]  # agent turns make two gateway requests
    steps = chat.requests.groupby("turn")["step"].max()
    assert (steps == 1).any()
    assert s["slo_metric"] == "ttft" and s["ttft_p95_s"] > 0
    assert s["retry_amplification"] > 1.5  # the classifier's call + the tool-choosing call
    agent = chat.requests[chat.requests["meta_step"] == "tool_answer"]
    assert len(agent) and (agent["route_tier"] == "pinned").all()  # the answer stays on the tool-choosing model
    # later turns of a conversation carry the chat so far
    assert (chat.requests["meta_prompt_tokens"] > 1500).any()
    assert not chat.turns["ttft_s"].dropna().empty


def test_trace_replay_time_compressed():
    r = simulate("b2b-saas", trace=str(TRACE), overrides={"traffic.speedup": 10.0}, seed=0)
    s = r.summary
    assert s["requests"] == 300 and s["traffic"].startswith("example_trace.csv (sha256:")
    assert r.turns["arrival_s"].max() <= 3600 / 10.0
    assert set(r.turns["tenant"]) == {"hanbit-mall", "acme-store", "pixel-goods", "nimbus-crm", "saessak-labs"}
    assert s["cache_hit_rate"] > 0.05  # the trace repeats ~20 % of its prompts exactly
    assert s["projected_monthly_cost_usd"] > 0
    # the self-hosted standby is paid for the trace's own hour, however fast it is replayed
    real_time = simulate("b2b-saas", trace=str(TRACE), seed=0).summary
    assert s["fixed_cost_usd"] == pytest.approx(real_time["fixed_cost_usd"], rel=0.05)
    assert s["fixed_cost_usd"] > 0 and s["savings_pct"] == pytest.approx(real_time["savings_pct"], abs=15)


def test_a_replayed_trace_is_named_by_content_not_by_path(tmp_path, monkeypatch):
    """The summary named a trace by its path as given: relative from one folder, absolute from
    another, so one replay's summary.json differed by where it was started."""
    copy = tmp_path / "logs" / TRACE.name
    copy.parent.mkdir()
    copy.write_bytes(TRACE.read_bytes())
    absolute = simulate("b2b-saas", trace=str(copy), requests=40, seed=0, baseline=False).summary
    monkeypatch.chdir(tmp_path)
    relative = simulate("b2b-saas", trace=f"logs/{TRACE.name}", requests=40, seed=0, baseline=False).summary
    assert relative == absolute  # whole summaries, the trace's name included
    assert absolute["traffic"].startswith(f"{TRACE.name} (sha256:") and str(tmp_path) not in absolute["traffic"]
    # another version of a log with the same name is told apart
    copy.write_bytes(TRACE.read_bytes().replace(b"hanbit-mall", b"hanbit-mart"))
    edited = simulate("b2b-saas", trace=str(copy), requests=40, seed=0, baseline=False).summary
    assert edited["traffic"] != absolute["traffic"] and edited["traffic"].startswith(TRACE.name)


def test_trace_errors_are_typed(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,tenant,plan,prompt\nnot-a-time,t,paid,hello\n")
    with pytest.raises(ScenarioError, match="^traffic.trace: .*timestamp"):
        simulate("b2b-saas", trace=str(bad))


def test_a_run_never_dies_when_everything_is_down():
    windows = [{"target": name, "start_s": 0.0, "end_s": 1e9, "kind": "down"}
               for name in ("openai", "anthropic", "self")]
    r = simulate("b2b-saas", requests=400, seed=2, overrides={"outages.windows": windows, "gateway.cache.exact": False,
                                                            "gateway.cache.semantic": False})
    s = r.summary
    assert s["requests"] == 400 and len(r.turns) == 400 and s["internal_errors"] == 0
    assert s["availability"] < 0.05 and s["baseline_availability"] == 0.0
    assert set(s["errors"]) <= {"all_providers_failed", "budget_exceeded"}
    assert s["errors"]["all_providers_failed"] > 300
    assert r.requests["error"].notna().all()


def test_false_hits_are_detected_when_the_threshold_is_too_low():
    r = simulate("b2b-saas", requests=1500, seed=3, baseline=False,
                 overrides={"gateway.cache.threshold": 0.05, "gateway.cache.options": {"guard": None}})
    s = r.summary
    assert s["semantic_hit_rate"] > 0.3 and s["false_hit_rate"] > 0.3 and s["false_hits"] > 0
    hits = r.requests[r.requests["cache"] == "semantic_hit"]
    assert (hits["false_hit"] == (hits["cached_answer_key"].str.split("|").str[0] != hits["intent"])).all()


def test_replications_report_means_and_confidence_intervals():
    r = simulate("b2b-saas", requests=400, seed=10, replications=3, baseline=False)
    s = r.summary
    assert s["replications"] == 3 and len(r.replications) == 3
    lo, hi = s["ci95"]["cost_usd"]
    assert lo <= s["cost_usd"] <= hi and lo < hi
    assert s["cost_usd"] == pytest.approx(r.replications["cost_usd"].mean())
    assert set(r.turns["replication"]) == {0, 1, 2}


def test_hours_and_traffic_shape():
    from llmlab.sim import load_scenario

    sc = load_scenario("b2b-saas")
    t = generate_traffic(sc, hours=0.25, seed=4)
    assert t.arrival_s.max() < 900 and (t.arrival_s[1:] >= t.arrival_s[:-1]).all()
    share_paid = sum(t.tenant_plans[k] == "paid" for k in t.tenant) / len(t)
    assert 0.5 < share_paid < 0.7
    follow_ups = (t.prev >= 0).sum()
    assert 0 < follow_ups < len(t) / 2
    assert (t.prompt_tokens[t.prev >= 0].mean() > t.prompt_tokens[t.prev < 0].mean())
    n = generate_traffic(sc, requests=1234, seed=4)
    assert len(n) == 1234


def test_bad_arguments_are_typed():
    with pytest.raises(ScenarioError, match="^requests:"):
        simulate("b2b-saas", requests=0)
    with pytest.raises(ScenarioError, match="^replications:"):
        simulate("b2b-saas", requests=10, replications=0)


def test_progress_bar_goes_to_stderr(capsys):
    r = simulate("b2b-saas", requests=300, seed=1, progress=True, baseline=False)
    out, err = capsys.readouterr()
    assert r.summary["requests"] == 300 and out == "" and "policy" in err


def test_a_bug_in_one_turn_is_recorded_not_fatal(monkeypatch, caplog):
    from llmlab.sim import run as sim_run

    original = sim_run._App.messages

    def flaky(self, i, extra=()):
        if i == 5:
            raise RuntimeError("boom")
        return original(self, i, extra)

    monkeypatch.setattr(sim_run._App, "messages", flaky)
    r = simulate("b2b-saas", requests=100, seed=1, baseline=False)
    assert r.summary["requests"] == 100 and r.summary["internal_errors"] == 1
    assert r.summary["errors"]["internal_error"] == 1
    assert r.turns.loc[r.turns["turn"] == 5, "outcome"].item() == "error"


def test_guardrails_are_configurable_and_pii_masking_is_on_by_default():
    from llmlab.sim import load_scenario
    from llmlab.sim.build import build_gateway

    default = build_gateway(load_scenario("b2b-saas"), lambda: 0.0, seed=0)
    assert [g.name for g in default.pipeline.input_guards] == ["pii"]
    custom = build_gateway(load_scenario("b2b-saas", {"gateway.guardrails": {"pii": False, "injection": "block",
                                                                            "output_filter": True}}),
                           lambda: 0.0, seed=0)
    assert [g.name for g in custom.pipeline.input_guards] == ["injection"]
    assert [g.name for g in custom.pipeline.output_guards] == ["output_filter"]


def test_build_gateway_takes_a_preset_name_too():
    """Before: AttributeError: 'str' object has no attribute 'gateway'."""
    from llmlab.sim import build_gateway

    gw = build_gateway("b2b-saas", lambda: 0.0, seed=0)
    assert "gpt-4o" in gw.deployments and "PlanRouter" in repr(gw)


def test_progress_callback_reports_policy_then_baseline():
    from llmlab.sim import simulate

    seen = []
    simulate("b2b-saas", requests=300, seed=0, progress=lambda done, total: seen.append((done, total)))
    assert seen and all(total == 600 for _, total in seen)
    assert seen[-1][0] == 600 and any(done <= 300 for done, _ in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_progress_callback_counts_over_every_replication():
    """Before: with replications=3 the count went from 0 to 600 three times (a bar that refilled)."""
    from llmlab.sim import simulate

    seen = []
    simulate("b2b-saas", requests=200, seed=0, replications=3,
             progress=lambda done, total: seen.append((done, total)))
    assert {total for _, total in seen} == {3 * 400} and seen[-1][0] == 3 * 400
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_last_resort_answers_are_counted_apart_from_cache_false_hits():
    from llmlab.sim import simulate

    down = [{"target": group, "start_s": 300.0, "end_s": 600.0, "kind": "down"}
            for group in ("openai", "anthropic", "self")]
    r = simulate("b2b-saas", requests=1500, seed=0, baseline=False,
                 overrides={"outages.windows": down, "outages.incidents": False,
                            "gateway.cache.embedder": "hashed"})
    s, t = r.summary, r.turns
    last = t[t.outcome == "last_resort"]
    cached = t[t.outcome == "cache"]
    assert len(last) > 0 and s["last_resort_rate"] > 0
    assert s["last_resort_false_hit_rate"] == pytest.approx(last.false_hit.mean())
    assert s["false_hit_rate"] == pytest.approx(cached.false_hit.mean() if len(cached) else 0.0)


def test_a_slow_call_breaker_moves_users_off_a_slow_but_answering_provider():
    """OpenAI answers four times slower for 140 s with timeouts too patient to fire: without a
    slow-call threshold every user waits; with one, the breaker opens for slowness, the fallback
    carries the window and the primary gets the traffic back once its probe is fast again."""
    slowdown = [{"target": "openai", "start_s": 60.0, "end_s": 200.0, "kind": "slow", "latency_factor": 4.0}]
    patient = {"providers.gpt-4o-mini.timeout_s": 10.0, "providers.gpt-4o.timeout_s": 10.0,
               "providers.classifier.timeout_s": 10.0, "outages.incidents": False, "outages.windows": slowdown}

    def run(slow_call_s):
        r = simulate("realtime-chat", requests=1500, seed=0, baseline=False,
                     overrides={**patient, "gateway.breaker.slow_call_s": slow_call_s})
        t = r.turns
        during, after = t[(t.arrival_s >= 60) & (t.arrival_s < 200)], t[t.arrival_s >= 215]
        return r.summary, during, after

    s0, during0, _ = run(None)
    s1, during1, after1 = run(2.0)
    assert s0["breaker_opens"] == {} and during0.fallback.mean() == 0.0  # nothing failed: nothing moved
    assert during0.ttft_s.quantile(0.95) > 6.0
    assert s1["breaker_opens"].get("gpt-4o-mini", 0) >= 1
    assert during1.fallback.mean() > 0.5
    assert during1.ttft_s.quantile(0.95) < 0.8 * during0.ttft_s.quantile(0.95)
    assert after1.fallback.mean() < 0.1 and len(after1) > 200  # recovered after the window
    assert s1["availability"] == s0["availability"] == 1.0


def test_retrieved_context_and_tool_turns_are_reserved_as_billed():
    """The simulated app's stand-in messages are as long as what the provider bills for them, so
    a cap holds in the lab as it would live (the reservation bounds a prompt by its bytes)."""
    from llmlab.sim import simulate

    result = simulate("realtime-chat", requests=2000, seed=0, baseline=False, progress=False,
                      overrides={"gateway.cache.embedder": "hashed", "gateway.budget.caps": {"shop": 0.30},
                                 "traffic.rag.context_tokens": 8000})
    assert result.summary["budget_rejections"] > 0
    assert result.summary["budget_overshoot_usd"] == 0.0


def test_a_simulated_embedding_price_is_held_with_the_answer_so_caps_hold():
    """``gateway.cache.embed_cost_usd_per_1m`` was known to the simulator's driver only: the
    pipeline held nothing for it and charged it after the lookup, so tenants at their cap went
    past it (overshoot > 0).  It is now the embedder's price, held like a priced API embedder's."""
    from llmlab.sim import simulate

    def run(price: float, caps: dict) -> dict:
        overrides = {"gateway.cache.embedder": "hashed", "gateway.cache.embed_cost_usd_per_1m": price, **caps}
        return simulate("b2b-saas", requests=1500, seed=3, baseline=False, progress=False,
                        overrides=overrides).summary

    tight = {"traffic.tenants.0.monthly_budget_usd": 0.05, "traffic.tenants.1.monthly_budget_usd": 0.0}
    priced = run(50.0, tight)
    assert 0 < priced["budget_rejections"] < 1500 and priced["budget_overshoot_usd"] == 0.0  # $0.68 over before
    free = run(0.0, tight)
    assert priced["budget_rejections"] > free["budget_rejections"]  # the embeddings take room under the caps
    # with room to spare, the price is charged: one embedding per semantic lookup, none for exact hits
    roomy = {"traffic.tenants.0.monthly_budget_usd": 1e6, "traffic.tenants.1.monthly_budget_usd": 1e6}
    assert run(50.0, roomy)["variable_cost_usd"] > run(0.0, roomy)["variable_cost_usd"]


def test_the_requests_table_says_why_each_model_answer_ended(b2b):
    """``finish_reason`` (``length``: cut at ``max_tokens``) is in the ledger's columns, so a run's
    truncated answers can be counted: the simulated providers set it and no table showed it."""
    reqs = b2b.requests
    assert "finish_reason" in reqs.columns
    model = reqs[reqs["outcome"] == "model"]
    assert set(model["finish_reason"]) <= {"stop", "length"} and (model["finish_reason"] == "stop").any()
    assert reqs.loc[reqs["outcome"] != "model", "finish_reason"].isna().all()


def test_the_similarity_column_is_float_with_or_without_semantic_hits():
    """Before: an object column in a run without a semantic hit, so the replicated table's column
    was float64 on pandas 2 (Python 3.10, with a FutureWarning) and object on pandas 3 (3.11+)."""
    import warnings

    kw = dict(requests=60, baseline=False, overrides={"gateway.cache.embedder": "hashed"})
    one = simulate("b2b-saas", seed=0, **kw)
    assert one.requests["similarity"].isna().all()  # the case: no semantic hit in this run
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        rep = simulate("b2b-saas", replications=3, **kw)
    assert rep.requests["similarity"].notna().any()  # another replication had one
    assert one.requests["similarity"].dtype == rep.requests["similarity"].dtype == "float64"


def test_the_requests_table_is_gathered_column_by_column_as_pandas_lays_out_rows():
    """The per-request table is built from one list per column (one dict per row held ≈ 2 KB per
    request until the frame was built): the same columns, order, values and dtypes as
    ``pd.DataFrame(list_of_dicts)``, a key some rows lack included."""
    import pandas as pd

    from llmlab.ledger import RowColumns

    rows = [{"a": 1, "b": "x", "attempts": [{"ok": True}]},
            {"a": 2, "c": True, "b": "y", "attempts": []},
            {"b": "z", "attempts": [{"ok": False}, {"ok": True}], "d": 0.5},
            {"a": 4, "b": "w", "attempts": [], "c": False}]
    table = RowColumns()
    for row in rows:
        table.append(row)
    got, want = pd.DataFrame(table.columns), pd.DataFrame(rows)
    assert list(got.columns) == list(want.columns) == ["a", "b", "attempts", "c", "d"]
    pd.testing.assert_frame_equal(got, want)
    assert table.rows == 4 and {len(c) for c in table.columns.values()} == {4}


def test_a_turn_reads_the_traffic_columns_without_copying_them():
    """_Rows views the traffic's int32 columns (copied as int64 they took 64 more bytes a turn,
    640 MB at the 10M-turn limit) and gives Python ints; another layout is converted, same values."""
    from llmlab.sim import load_scenario
    from llmlab.sim.run import _Rows, make_traffic

    t = make_traffic(load_scenario("b2b-saas"), requests=50, seed=0)
    rows = _Rows(t)
    for name in _Rows.__slots__:
        assert getattr(rows, name).obj is getattr(t, name)  # the same memory
    assert type(rows.prev[7]) is int and [rows.key[i] for i in range(50)] == t.key.tolist()
    t.key = t.key.astype(">i8")[::-1][::-1]  # big-endian: converted once, the same numbers
    assert [_Rows(t).key[i] for i in range(50)] == t.key.tolist()
