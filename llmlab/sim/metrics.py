"""What a run measured: a compact per-turn recorder and the headline summary.

The recorder keeps one row per *user turn* in typed ``array`` columns (≈ 60 bytes a turn), so a
million-turn run does not hold a million ``Outcome`` objects; the full outcomes are kept only
when the per-request table is wanted.  A turn is what a user waits for: usually one gateway
request, but two when an agent calls a tool (both priced, both counted as provider calls).

Definitions (the summary's keys):

* ``availability`` — share of turns answered (model, cache, last-resort or rule); policy
  refusals (budget, rate limit, guardrail) count as unanswered.  ``service_availability``
  excludes those refusals: it measures the providers + fallback chain only.
* ``cache_hit_rate`` / ``semantic_hit_rate`` — share of turns answered from the exact or
  semantic cache.
* ``false_hit_rate`` — among turns served by a cache hit (exact or semantic), the share whose
  cached answer was written for a *different intent* than the request's.  ``wrong_answer_rate``
  is stricter: a different ``answer_key`` (same intent, other slot values — "order 123" vs
  "order 456").  Last-resort answers (a similar cached answer served because every provider
  failed) are a deliberate trade of accuracy for availability, so they are reported apart:
  ``last_resort_false_hit_rate``.
* ``p50_latency_s`` … ``p99_latency_s``, ``mean_latency_s``, ``ttft_*`` — over the turns a user
  waited on: policy refusals (budget, rate limit, guardrail) are left out, as the SLO leaves them
  out.  A refusal answers in milliseconds, so counting it flattered the policy against a
  baseline that refuses nothing (a capped run's p50 read 0.00 s).  A failure counts in the
  latency percentiles at the time the user waited for it (a breaker's fail-fast at ≈ 0 s: read
  them beside ``availability``) and has no TTFT; the SLO's numbers count it as never answered.
* ``fallback_rate`` — share of turns answered by a deployment other than the one routed to
  (or by the last-resort cache): the first deployment tried or skipped (its breaker open), a
  cascade's cheap stage included.  A cascade escalating because its check rejected an answer
  is routing, not a fallback: the stage after a rejection counts from its own first deployment.
* ``retry_amplification`` — provider calls per turn (1.0 = no retries, no extra calls).
* ``coalesced_rate`` — share of turns answered from the cache by an identical request that was
  in flight when they missed it (``gateway.coalesce``; counted in ``cache_hit_rate`` too).
* ``hedge_rate`` — share of turns that sent a hedge (``gateway.hedge``: a second call raced
  against a slow first one); ``hedge_win_rate`` — among those, the share whose hedge answered
  first (NaN when none was sent).  A hedge that won counts in ``fallback_rate`` too.
* ``slo_violation_rate`` — among the turns the SLO judges (every turn but the policy's refusals:
  budget, rate limit, guardrail), the share slower than the SLO (latency or TTFT) or failed; NaN
  when the policy refused every turn.  ``slo_value_s`` is the metric at the SLO's percentile over
  the same turns (failures count as infinitely slow); ``slo_met`` compares it with the objective.
  Both leave refusals out of the population: a run that refused most turns and served the rest
  late has a high violation rate, not a low one.
* ``outage_turn_share`` — share of turns that arrived while an outage window (scheduled or an
  incident, on any provider of the scenario) was in force.  ``outage_availability``,
  ``outage_service_availability``, ``outage_slo_value_s`` and ``outage_slo_violation_rate`` are
  ``availability``, ``service_availability``, ``slo_value_s`` and ``slo_violation_rate`` over
  those turns alone (NaN when there were none): what an outage does to users, which a whole
  run's percentile dilutes.  The baseline's are ``baseline_outage_*``.
* ``fixed_cost_usd`` — hourly costs (self-hosted standby) over the real time the traffic spans:
  a trace replayed with ``speedup`` still stands for its own hours.  ``cost_usd`` includes it
  (``baseline_fixed_cost_usd``, set by :func:`llmlab.sim.simulate`, is the baseline's).
* ``savings_per_answered_pct`` — the savings in cost per answered turn: the fair comparison when
  the two runs answered different shares of the turns (:func:`per_answered_savings_pct`).
* ``refused_savings_pct`` — the points of ``savings_pct`` that are turns the policy refused
  (budget, rate limit, guardrail), priced at what the baseline paid for the same turns: savings
  from service not given, not from service made cheaper (set by :func:`llmlab.sim.simulate`).
* ``projected_monthly_uncapped_cost_usd`` — cost per turn × expected turns in 30 days at the
  scenario's mean rate (``rate_per_s`` × the random bursts' mean multiplier, see
  :func:`llmlab.sim.run.expected_rate_per_s`), plus fixed hourly costs × 720 h: the lecture's
  ``daily × 30 × cost per request``.  A turn refused for budget, or downgraded to a cheaper model
  for it, is priced as a turn of its plan the caps let through: this is what the month's traffic
  would cost with no caps (NaN when the caps let no turn through: nothing measured its cost).
* ``projected_monthly_cost_usd`` — the same month with every tenant's variable spend held to its
  monthly cap (:mod:`llmlab.sim.projection`); equal to the uncapped figure without caps.
"""
from __future__ import annotations

import math
from functools import lru_cache
from array import array
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..effects import CacheOutcome, Outcome, OutcomeKind
from .projection import TenantCaps, project_month

if TYPE_CHECKING:
    import pandas as pd

    from .outages import Window

KINDS = ("model", "cache", "last_resort", "rule", "error")
CACHES = ("bypass", "miss", "exact_hit", "semantic_hit", "last_resort_hit")
_KIND = {OutcomeKind(k): i for i, k in enumerate(KINDS)}
_CACHE = {CacheOutcome(c): i for i, c in enumerate(CACHES)}
ERROR = KINDS.index("error")
POLICY_REFUSALS = ("budget_exceeded", "rate_limited", "guardrail_blocked")
HEADLINE = ("cost_usd", "baseline_cost_usd", "savings_pct", "projected_monthly_cost_usd", "cache_hit_rate",
            "semantic_hit_rate", "false_hit_rate", "p50_latency_s", "p95_latency_s", "p99_latency_s", "ttft_p95_s",
            "availability", "fallback_rate", "retry_amplification", "slo_violation_rate")

#: the service of the turns that arrived during an outage (``outage_turn_share`` of them); the
#: baseline's are copied into the policy's summary as ``baseline_<key>``
OUTAGE_KEYS = ("outage_availability", "outage_service_availability", "outage_slo_value_s",
               "outage_slo_violation_rate")


def cached_key(text: str | None) -> str | None:
    """The answer key a simulated answer was written for (``«key» …``), or None."""
    if text and text.startswith("«"):
        end = text.find("»")
        if end > 0:
            return text[1:end]
    return None


class Recorder:
    """Collects one row per user turn (and optionally every gateway outcome)."""

    def __init__(self) -> None:
        self.arrival = array("d")
        self.latency = array("d")
        self.ttft = array("d")
        self.cost = array("d")
        self.calls = array("l")
        self.kind = array("b")
        self.cache = array("b")
        self.fallback = array("b")
        self.false_hit = array("b")
        self.wrong = array("b")
        self.turn = array("l")
        self.error = array("l")  # index into error_codes, -1 = none
        self.deployment = array("l")  # index into deployments, -1 = none
        self.steps = array("b")
        self.downgraded = array("b")  # over budget: answered by the policy's cheaper model
        self.hedge = array("b")  # 0: no hedge sent, 1: sent, and the first call answered (or both failed), 2: it won
        self.coalesced = array("b")  # answered from the cache an identical request in flight filled (llmlab.coalescing)
        self.error_codes: list[str] = []
        self.deployments: list[str] = []
        self._error_ids: dict[str, int] = {}
        self._dep_ids: dict[str, int] = {}
        self.outcomes: list[Outcome] = []  # the ledger's records, when the run kept them
        self.done = 0

    def __len__(self) -> int:
        return self.done

    def last_end(self) -> float:
        """When the last turn ended (0 before any): the run's end.  Not the clock's last event —
        a timer that outlived its purpose (a slot queue's timeout after the slot came, a hedge's
        after the first call answered) moved that on, and with it the standby's hourly cost."""
        if not self.done:
            return 0.0
        return float(np.max(np.frombuffer(self.arrival, dtype=np.float64) + np.frombuffer(self.latency, dtype=np.float64)))

    def record(self, turn: int, arrival: float, now: float, outcomes: Sequence[Outcome | None],
               last_started: float, intent: str, answer_key: str) -> None:
        self.done += 1
        final = outcomes[-1] if outcomes else None
        cost = 0.0
        calls = 0
        fallback = false_hit = wrong = downgraded = hedge = 0
        for o in outcomes:
            if o is None:
                continue
            cost += o.cost_usd
            if o.route_tier == "downgraded" and o.error is None:  # answered by the cheaper model
                downgraded = 1
            primary = None  # the deployment routed to: the first one tried or skipped (not the classifier)
            for a in o.attempts:
                purpose = a.purpose
                if purpose == "check":  # a cascade stage's answer was rejected: the next stage is by design
                    primary = None
                    continue
                if purpose != "skip":
                    calls += 1
                    if purpose == "hedge":
                        hedge = 2 if a.ok else hedge or 1
                if primary is None and purpose != "classify":
                    primary = a.deployment
            kind = o.kind
            if kind is OutcomeKind.MODEL:
                if primary is not None and o.deployment != primary:
                    fallback = 1
            elif kind is OutcomeKind.CACHE or kind is OutcomeKind.LAST_RESORT:
                if kind is OutcomeKind.LAST_RESORT:
                    fallback = 1
                key = cached_key(o.text)
                if key is not None:
                    if key != answer_key:
                        wrong = 1
                    if key.split("|", 1)[0] != intent:
                        false_hit = 1
        if final is None or final.error is not None:
            # a fallback serves a turn: an agent turn whose tool-choosing call fell back and whose
            # answer then failed (a budget refusal, the chain exhausted) was counted in
            # fallback_rate and in the outage figure as "served by fallback" and "failed" at once
            fallback = 0
        self.turn.append(turn)
        self.arrival.append(arrival)
        self.latency.append(now - arrival)
        self.cost.append(cost)
        self.calls.append(calls)
        self.fallback.append(fallback)
        self.false_hit.append(false_hit)
        self.wrong.append(wrong)
        self.steps.append(len(outcomes))
        self.downgraded.append(downgraded)
        self.hedge.append(hedge)
        if final is None:
            self.coalesced.append(0)
            self.kind.append(ERROR)
            self.cache.append(0)
            self.ttft.append(math.nan)
            self.error.append(self._error_id("internal_error"))
            self.deployment.append(-1)
            return
        self.kind.append(_KIND[final.kind])
        self.coalesced.append(final.coalesced_with is not None and final.kind is OutcomeKind.CACHE)
        self.cache.append(_CACHE[final.cache])
        # the gateway's epoch clock is coarser (0.24 µs) than SimPy's: a first token never comes after the turn ends
        if final.ttft_s is None or final.error is not None:
            self.ttft.append(math.nan)
        else:  # min(first token, end), without the builtin's argument parsing (a call per turn)
            first, end = last_started - arrival + final.ttft_s, now - arrival
            self.ttft.append(end if end < first else first)
        self.error.append(-1 if final.error is None else self._error_id(final.error.code))
        self.deployment.append(-1 if final.deployment is None else self._dep_id(final.deployment))

    def _error_id(self, code: str) -> int:
        i = self._error_ids.get(code)
        if i is None:
            i = self._error_ids[code] = len(self.error_codes)
            self.error_codes.append(code)
        return i

    def _dep_id(self, name: str) -> int:
        i = self._dep_ids.get(name)
        if i is None:
            i = self._dep_ids[name] = len(self.deployments)
            self.deployments.append(name)
        return i

    def columns(self) -> dict[str, np.ndarray]:
        """The per-turn columns as numpy arrays, sorted by turn number."""
        turn = np.frombuffer(self.turn, dtype=np.int64) if self.turn.itemsize == 8 else np.array(self.turn)
        order = np.argsort(turn, kind="stable")
        cols = {"turn": turn, "arrival_s": np.array(self.arrival), "latency_s": np.array(self.latency),
                "ttft_s": np.array(self.ttft), "cost_usd": np.array(self.cost), "calls": np.array(self.calls),
                "kind": np.array(self.kind), "cache": np.array(self.cache), "fallback": np.array(self.fallback),
                "false_hit": np.array(self.false_hit), "wrong_answer": np.array(self.wrong),
                "error": np.array(self.error), "deployment": np.array(self.deployment),
                "steps": np.array(self.steps), "downgraded": np.array(self.downgraded), "hedge": np.array(self.hedge),
                "coalesced": np.array(self.coalesced)}
        return {k: np.asarray(v)[order] for k, v in cols.items()}


def _pct(values: np.ndarray, q: float) -> float:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if len(values) else math.nan


def summarise(rec: Recorder, *, fixed_cost_usd: float = 0.0, fixed_cost_per_hour_usd: float = 0.0,
              turns_per_month: float, slo_s: float, slo_metric: str = "latency", slo_percentile: float = 95.0,
              budget_overshoot_usd: float = 0.0, duration_s: float = 0.0,
              caps: TenantCaps | None = None, windows: Sequence["Window"] = ()) -> dict[str, Any]:
    """The headline numbers of one run (see the module docstring for definitions).

    ``caps``: who sent each turn and the monthly caps the projected month is held to (None: the
    projection is uncapped, as for the baseline).  ``windows``: the run's outages, for the
    ``outage_*`` numbers."""
    c = rec.columns()
    n = len(c["turn"])
    if n == 0:
        return {"requests": 0}
    kind = c["kind"]
    cache = c["cache"]
    err_codes = np.array(rec.error_codes + [""], dtype=object)[c["error"]]
    answered = kind != ERROR
    from_cache = kind == KINDS.index("cache")
    from_last_resort = kind == KINDS.index("last_resort")
    n_cached = int(from_cache.sum())
    n_last_resort = int(from_last_resort.sum())
    false_hit = c["false_hit"].astype(bool)
    variable = float(c["cost_usd"].sum())
    metric = c["ttft_s"] if slo_metric == "ttft" else c["latency_s"]
    refused = np.isin(err_codes, POLICY_REFUSALS)
    violated = slo_violations(metric, answered, refused, slo_s)
    at_slo = slo_value(metric, answered, refused, slo_percentile)
    refusals = refused
    waited = ~refused  # the latency percentiles' turns: a policy refusal is not service a user waited on
    latency, ttft = c["latency_s"][waited], c["ttft_s"][waited]
    errors: dict[str, int] = {}
    for code in rec.error_codes:
        errors[code] = int((err_codes == code).sum())
    by_dep: dict[str, float] = {}
    model_rows = kind == KINDS.index("model")
    for i, name in enumerate(rec.deployments):
        share = float(((c["deployment"] == i) & model_rows).sum()) / n
        if share:
            by_dep[name] = share
    cost = variable + float(fixed_cost_usd)
    duration_s = float(duration_s)
    month = project_month(c["turn"], c["cost_usd"], err_codes == "budget_exceeded", turns_per_month=turns_per_month,
                          caps=caps, downgraded=c["downgraded"].astype(bool))
    fixed_month = fixed_cost_per_hour_usd * 720.0
    hedged = int((c["hedge"] > 0).sum())
    return {
        "requests": n,
        "gateway_requests": int(c["steps"].sum()),
        "duration_s": duration_s,
        "cost_usd": cost,
        "variable_cost_usd": variable,
        "fixed_cost_usd": fixed_cost_usd,
        "cost_per_request_usd": cost / n,
        "projected_monthly_cost_usd": month.capped_usd + fixed_month,
        "projected_monthly_uncapped_cost_usd": month.uncapped_usd + fixed_month,
        "cache_hit_rate": float(((cache == CACHES.index("exact_hit")) | (cache == CACHES.index("semantic_hit"))).sum()) / n,
        "exact_hit_rate": float((cache == CACHES.index("exact_hit")).sum()) / n,
        "semantic_hit_rate": float((cache == CACHES.index("semantic_hit")).sum()) / n,
        "last_resort_rate": float((kind == KINDS.index("last_resort")).sum()) / n,
        "false_hits": int((false_hit & from_cache).sum()),
        "false_hit_rate": float((false_hit & from_cache).sum()) / n_cached if n_cached else 0.0,
        "wrong_answer_rate": float((c["wrong_answer"].astype(bool) & from_cache).sum()) / n_cached if n_cached else 0.0,
        "last_resort_false_hit_rate": (float((false_hit & from_last_resort).sum()) / n_last_resort
                                       if n_last_resort else 0.0),
        "p50_latency_s": _pct(latency, 50),
        "p95_latency_s": _pct(latency, 95),
        "p99_latency_s": _pct(latency, 99),
        "mean_latency_s": float(latency.mean()) if len(latency) else math.nan,
        "ttft_p50_s": _pct(ttft, 50),
        "ttft_p95_s": _pct(ttft, 95),
        "availability": float(answered.sum()) / n,
        "service_availability": float((answered | refusals).sum()) / n,
        "fallback_rate": float(c["fallback"].sum()) / n,
        "retry_amplification": float(c["calls"].sum()) / n,
        "coalesced_rate": float(c["coalesced"].sum()) / n,
        "hedge_rate": hedged / n,
        "hedge_win_rate": float((c["hedge"] == 2).sum()) / hedged if hedged else math.nan,
        "budget_rejections": errors.get("budget_exceeded", 0),
        "rate_limited": errors.get("rate_limited", 0),
        "budget_overshoot_usd": budget_overshoot_usd,
        "slo_s": slo_s,
        "slo_metric": slo_metric,
        "slo_percentile": slo_percentile,
        "slo_value_s": at_slo,
        "slo_met": None if math.isnan(at_slo) else bool(at_slo <= slo_s),  # None: no turn to judge
        "slo_violation_rate": violation_rate(violated, refused),
        "errors": errors,
        "model_share": by_dep,
        **service_of(during_windows(c["arrival_s"], windows), answered, refused, violated, metric, slo_percentile),
    }


def slo_violations(metric: np.ndarray, answered: np.ndarray, refused: np.ndarray, slo_s: float) -> np.ndarray:
    """Which turns violated the SLO: failed (a policy's refusal is no failure) or answered later
    than ``slo_s`` (``metric``: each turn's latency or TTFT)."""
    return (~answered & ~refused) | (answered & (np.nan_to_num(metric, nan=math.inf) > slo_s))


def violation_rate(violated: np.ndarray, refused: np.ndarray) -> float:
    """The share of the turns the SLO judges (not the policy's refusals) that violated it; NaN
    when there were none.  Over every turn, a run that refused most turns read as if it met its
    objective (460 budget refusals and 40 late answers: 8 % instead of 100 %)."""
    judged = int(len(refused) - refused.sum())
    return float(violated.sum()) / judged if judged else math.nan


def judged(metric: np.ndarray, answered: np.ndarray, refused: np.ndarray) -> np.ndarray:
    """Each turn's ``metric`` as the SLO judges it: the policy's refusals left out, a turn that
    failed infinitely slow (never answered)."""
    return np.where(answered, np.nan_to_num(metric, nan=math.inf, posinf=math.inf), math.inf)[~refused]


def turn_verdicts(turns: "pd.DataFrame") -> tuple[np.ndarray, np.ndarray]:
    """A turn table's ``(answered, refused)`` masks: what the summary's SLO numbers are made of."""
    return (turns["outcome"] != "error").to_numpy(), turns["error_code"].isin(POLICY_REFUSALS).to_numpy()


def slo_value(metric: np.ndarray, answered: np.ndarray, refused: np.ndarray, percentile: float) -> float:
    """The SLO's metric at its percentile over the turns a user waited on (not the policy's
    refusals), a failed turn counting as infinitely slow; NaN without such turns.  The same
    (linear) interpolation as ``p95_latency_s``, so the two agree when nothing failed; between two
    failures (inf, inf) the interpolation is inf - inf = nan, which is a failure too."""
    considered = judged(metric, answered, refused)
    if not len(considered):
        return math.nan
    with np.errstate(invalid="ignore"):
        # posinf too: nan_to_num's default turns +inf (the percentile just past the last answered
        # turn, interpolated towards a failure) into the largest float, a 309-digit "latency"
        return float(np.nan_to_num(np.percentile(considered, percentile), nan=math.inf, posinf=math.inf))


def during_windows(arrival_s: np.ndarray, windows: Sequence["Window"]) -> np.ndarray:
    """Which turns arrived while an outage window (``start_s <= arrival < end_s``) was in force.

    The windows are merged into disjoint spans first and each arrival is looked up among them
    (a year of incidents is hundreds of windows; a pass over every turn per window took seconds
    at the 10M-request limit)."""
    arrival_s = np.asarray(arrival_s, dtype=float)
    spans = sorted((w.start_s, w.end_s) for w in windows if w.end_s > w.start_s)
    if not spans:
        return np.zeros(len(arrival_s), dtype=bool)
    starts, ends = [spans[0][0]], [spans[0][1]]
    for start, end in spans[1:]:
        if start <= ends[-1]:  # overlapping or touching: one span
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    span = np.searchsorted(np.asarray(starts), arrival_s, side="right") - 1  # the last span begun by then
    return (span >= 0) & (arrival_s < np.asarray(ends)[np.maximum(span, 0)])


def service_of(inside: np.ndarray, answered: np.ndarray, refused: np.ndarray, violated: np.ndarray,
               metric: np.ndarray, percentile: float) -> dict[str, float]:
    """The service of the turns ``inside`` (those that arrived during an outage, for the
    summary): a whole run's P95 hides a drill that fills a fifth of it (realtime-chat's was 2.8 s
    over the run and 5 s inside the window).  Keys: ``outage_turn_share`` and :data:`OUTAGE_KEYS`."""
    n_in = int(inside.sum())
    if not n_in:
        return {"outage_turn_share": 0.0, **dict.fromkeys(OUTAGE_KEYS, math.nan)}
    return {"outage_turn_share": n_in / len(inside),
            "outage_availability": float(answered[inside].sum()) / n_in,
            "outage_service_availability": float((answered | refused)[inside].sum()) / n_in,
            "outage_slo_value_s": slo_value(metric[inside], answered[inside], refused[inside], percentile),
            "outage_slo_violation_rate": violation_rate(violated[inside], refused[inside])}


def refused_savings_pct(turns: "pd.DataFrame", base_turns: "pd.DataFrame", base_cost_usd: float) -> float:
    """The share (%) of the baseline's cost spent on turns the policy refused (budget, rate limit,
    guardrail): savings that are service not given rather than service made cheaper.  The two
    runs serve the same turns (common random numbers), so turn ``t`` of one is turn ``t`` of the
    other."""
    if base_cost_usd <= 0 or len(turns) != len(base_turns):
        return math.nan
    refused = turns["error_code"].isin(POLICY_REFUSALS).to_numpy()
    return 100.0 * float(base_turns["cost_usd"].to_numpy()[refused].sum()) / base_cost_usd


def per_answered_savings_pct(summary: Mapping[str, Any], base_summary: Mapping[str, Any]) -> float:
    """Savings (%) in cost per *answered* turn.  ``savings_pct`` compares bills; when the two runs
    answered different shares of the turns — a baseline with no fallback through an outage, a
    policy refusing over-budget tenants — one bill paid for less service than the other (a
    baseline that answered 6 % of an outage's turns cost a twentieth of the policy that answered
    them all: "−1,780 % savings").  NaN when either run answered nothing or cost nothing."""
    answered = summary["availability"] * summary["requests"]
    base_answered = base_summary["availability"] * base_summary["requests"]
    if answered <= 0 or base_answered <= 0 or base_summary["cost_usd"] <= 0:
        return math.nan
    return 100.0 * (1.0 - (summary["cost_usd"] / answered) / (base_summary["cost_usd"] / base_answered))


def requests_frame(rec: Recorder, traffic: Any, run_columns: dict[str, np.ndarray] | None = None) -> "pd.DataFrame":
    """One row per gateway request, from the ledger's records: :func:`llmlab.ledger.outcome_row`
    plus the simulator's columns (``turn``, ``step``, ``arrival_s``, ``intent``, ``false_hit`` …)."""
    import pandas as pd

    from ..ledger import COLUMNS, RowColumns, outcome_row

    cols = run_columns or rec.columns()
    by_turn = {int(t): k for k, t in enumerate(cols["turn"])}
    table = RowColumns()
    for o in rec.outcomes:
        row = outcome_row(o)
        turn = int(o.metadata.get("turn", -1))
        if turn < 0:
            continue
        k = by_turn.get(turn)
        key = traffic.keys[traffic.key[turn]]
        intent = traffic.intents[traffic.intent[turn]]
        cached = cached_key(o.text) if o.kind in (OutcomeKind.CACHE, OutcomeKind.LAST_RESORT) else None
        row.update({
            "turn": turn, "step": 1 if o.metadata.get("step") == "tool_answer" else 0,
            "session": int(traffic.session[turn]),
            # its conversation's first turn: none before it in the run, nor before the run began
            "opening": bool(traffic.prev[turn] < 0 and int(traffic.session[turn]) not in traffic.carried),
            "arrival_s": float(traffic.arrival_s[turn]),
            "intent": intent, "answer_key": key, "cached_answer_key": cached,
            "false_hit": cached is not None and cached.split("|", 1)[0] != intent,
            "wrong_answer": cached is not None and cached != key,
            "turn_latency_s": float(cols["latency_s"][k]) if k is not None else math.nan,
            "turn_ttft_s": float(cols["ttft_s"][k]) if k is not None else math.nan,
            "fallback": bool(cols["fallback"][k]) if k is not None else False,
        })
        table.append(row)
    if not table.rows:
        return pd.DataFrame(columns=[*COLUMNS, "turn", "step", "arrival_s", "intent", "false_hit"])
    frame = pd.DataFrame(table.columns).sort_values(["turn", "step"], kind="stable").reset_index(drop=True)
    # None without a semantic hit: a run with none had an object column, and concatenating the
    # replications then typed it by the pandas version (float64 on pandas 2, i.e. Python 3.10,
    # with a FutureWarning; object on pandas 3).  NaN keeps it float64 everywhere.
    frame["similarity"] = frame["similarity"].astype("float64")
    return frame


def mean_ci(values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf), step: float = 0.0
            ) -> tuple[float, float, float]:
    """Mean and a 95 % Student-t confidence interval over replications, clipped to ``bounds``
    (a rate's interval from three runs can otherwise reach below 0).  One value (the others NaN:
    only one run had a turn during an outage) gives its mean and no interval (NaN bounds): ``[m, m]``
    read as certainty where one run says nothing of the spread.

    ``step`` is the unit the values move in (:func:`metric_steps`: 1/n for a share of n turns, 1
    for a count).  Runs that all land on the same step say only that their spread is below a
    step, not that it is 0: five runs with no false hit gave ``[0 %, 0 %]`` where the true rate
    was 1 %, and two seeds that each added one SLO violation starred a change that did nothing.
    The spread is taken as at least a step's rounding spread (``step / √12``); a spread the runs
    did show is used as it is."""
    x = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    if not np.isfinite(x).all():  # an SLO value is infinite when too many turns failed: no t interval
        return m, max(bounds[0], float(x.min())), min(bounds[1], float(x.max()))
    with np.errstate(over="ignore"):  # values near the float limit (a fuzzed 1e300 latency) overflow when squared
        half = t95(len(x) - 1) * max(float(x.std(ddof=1)), step / math.sqrt(12.0)) / math.sqrt(len(x))
    if not math.isfinite(half):  # no t interval past the float range: the runs' range says what is known
        return m, max(bounds[0], float(x.min())), min(bounds[1], float(x.max()))
    return m, max(bounds[0], m - half), min(bounds[1], m + half)


#: what each share of the summary is a share of: a turn-table mask of its denominator's turns
#: (module docstring); the shares not named here are of every turn
_SHARE_OF: dict[str, Any] = {
    "false_hit_rate": lambda t: t["outcome"] == "cache",
    "wrong_answer_rate": lambda t: t["outcome"] == "cache",
    "last_resort_false_hit_rate": lambda t: t["outcome"] == "last_resort",
    "hedge_win_rate": lambda t: t["hedged"],
    "slo_violation_rate": lambda t: ~t["error_code"].isin(POLICY_REFUSALS),
    "outage_availability": lambda t: t["during_outage"],
    "outage_service_availability": lambda t: t["during_outage"],
    "outage_slo_violation_rate": lambda t: t["during_outage"] & ~t["error_code"].isin(POLICY_REFUSALS),
}
#: per-turn numbers that move by one turn's worth: a count of calls over the turns, whole counts
_PER_TURN = ("retry_amplification",)
#: (not ``requests``: a run sized by ``requests=`` has exactly that many, and one sized by hours
#: has thousands, whose spread the runs show)
_COUNTS = ("gateway_requests", "false_hits", "budget_rejections", "rate_limited", "internal_errors")


def metric_steps(turns: "pd.DataFrame") -> dict[str, float]:
    """The unit each share or count of one run's summary moves in (``1 / n`` for a share of
    ``n`` turns, 1 for a count), from its turn table: :func:`mean_ci`'s ``step``.  A share of no
    turn (NaN in the summary) has none."""
    n = len(turns)
    steps: dict[str, float] = dict.fromkeys(_COUNTS, 1.0)
    if not n:
        return steps
    for key in (*HEADLINE, *OUTAGE_KEYS, *_SHARE_OF, *_PER_TURN, "exact_hit_rate", "last_resort_rate",
                "service_availability", "coalesced_rate", "hedge_rate"):
        if key in _SHARE_OF:
            trials = int(_SHARE_OF[key](turns).sum())
            if trials:
                steps[key] = 1.0 / trials
        elif metric_kind(key) == "pct" or key in _PER_TURN:
            steps[key] = 1.0 / n
    return steps


@lru_cache(maxsize=None)
def t95(df: int) -> float:
    """The two-sided 95 % Student-t quantile, to double precision: the ``t`` at which
    :func:`_t_central` reaches 0.95, by bisection.  A table rounded to three decimals gave
    2.776 for four degrees of freedom (2.7764451…): an interval recomputed by hand, or with
    ``scipy.stats.t``, differed from ``summary["ci95"]`` in its fifth significant digit."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1 (got {df})")
    low, high = 1.959963984540054, 12.706204736174707  # the normal quantile; df = 1's
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if _t_central(middle, df) < 0.95 else (low, middle)
    return high


def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with a whole number ``df`` of degrees of freedom, by its finite
    series in θ = atan(t / √df) (Abramowitz & Stegun 26.7.3–4): no special functions needed."""
    theta = math.atan(t / math.sqrt(df))
    c2, term = math.cos(theta) ** 2, 1.0
    if df % 2 == 0:
        total = term
        for k in range(2, df, 2):
            term *= c2 * (k - 1) / k
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    total = term
    for k in range(3, df, 2):
        term *= c2 * (k - 1) / k
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def metric_kind(name: str) -> str:
    """What a summary key's number is, by its name's ending: ``usd``, ``s`` (seconds), ``pct`` (a
    share in [0, 1]), ``x`` (a ratio) or ``n`` (anything else); how the report writes it
    (:func:`llmlab.report.format_value`) and the range it can take (:func:`metric_bounds`)."""
    if name.endswith("_usd"):
        return "usd"
    if name.endswith("_s"):
        return "s"
    if name.endswith(("_rate", "availability", "_share")):
        return "pct"
    if name == "retry_amplification":
        return "x"
    return "n"


def metric_bounds(name: str) -> tuple[float, float]:
    """The range a summary number can take: shares in [0, 1], costs, times and counts >= 0."""
    kind = metric_kind(name)
    if kind == "pct":
        return 0.0, 1.0
    if name == "savings_pct":
        return -math.inf, 100.0
    if kind in ("usd", "s", "x") or name in ("requests", "budget_rejections"):
        return 0.0, math.inf
    return -math.inf, math.inf
