"""Small helpers the notebooks use to show what the gateway did: tables and figures.

Nothing here changes behaviour; it reshapes ledger records (``Ledger.to_dataframe()`` or a
simulation's ``SimResult.requests``) for reading:

* :func:`attempt_path` — ``"claude ✗ → claude ✗ → gpt-4o ✓"`` from a request's attempts;
* :func:`ledger_view` — the columns that tell a request's story, cost in µ$ and time in ms;
* :func:`cost_breakdown` — where the money went: input vs output tokens per model, and what
  was spent on calls whose answer was not served (failed tries, rejected cascade stages,
  classifier calls);
* :func:`repeat_outcomes` — why each repeated question was or was not served from the cache,
  and :func:`against_range` — a measurement read against a lecture claim's range, so the
  notebooks print verdicts instead of asserting them in prose;
* figure builders (:func:`cost_breakdown_figure`, :func:`threshold_figure`,
  :func:`latency_cdf_figure`) with unit-bearing labels, Korean where a Hangul font exists
  (:mod:`llmlab.plotting_fonts`).

pandas and matplotlib are imported inside the functions.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .plotting_fonts import label

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: columns of :func:`ledger_view`, in order
VIEW_COLUMNS = ("tenant", "plan", "prompt", "outcome", "cache", "route_tier", "served_by", "path", "prompt_tokens",
                "completion_tokens", "cost_uusd", "latency_ms", "error_code")


def _attempts(value: Any) -> list[Mapping[str, Any]]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    return [a if isinstance(a, Mapping) else a.as_dict() for a in value]


def attempt_path(attempts: Iterable[Any]) -> str:
    """One line per request: each deployment tried, ✓ answered, ✗ failed, ⊘ skipped (breaker/window).

    Acceptance checks of a cascade show as ``↑`` (answer rejected, escalating).
    """
    parts = []
    for a in _attempts(list(attempts) if attempts is not None else None):
        purpose = a.get("purpose")
        if purpose == "check":
            parts.append("↑")
            continue
        mark = "⊘" if purpose == "skip" else ("✓" if a.get("ok") else "✗")
        tag = " (classify)" if purpose == "classify" else ""
        parts.append(f"{a.get('deployment')}{tag} {mark}")
    return " → ".join(parts) or "-"


def ledger_view(records: Any, prompts: Sequence[str] | None = None, columns: Sequence[str] = VIEW_COLUMNS) -> "pd.DataFrame":
    """A readable table of ledger rows (a Ledger, a Gateway, or a ledger/simulation DataFrame).

    ``prompts`` (one per row) adds a shortened prompt column; costs become µ$ (millionths of a
    dollar) and latencies milliseconds, because single requests cost fractions of a cent.
    """
    import pandas as pd

    if hasattr(records, "ledger"):
        records = records.ledger
    df = records.to_dataframe() if hasattr(records, "to_dataframe") else pd.DataFrame(records)
    out = pd.DataFrame(index=df.index)
    if prompts is not None:
        if len(prompts) != len(df):
            raise ValueError(f"prompts has {len(prompts)} items for {len(df)} ledger rows")
        out["prompt"] = [p if len(p) <= 40 else p[:39] + "…" for p in (str(x).strip() for x in prompts)]
    for col in df.columns:
        if col in ("tenant", "plan", "outcome", "cache", "route_tier", "prompt_tokens", "completion_tokens",
                   "error_code"):
            out[col] = df[col]
    if "deployment" in df.columns:
        out["served_by"] = df["deployment"].fillna(df.get("model", pd.Series(index=df.index, dtype=object)))
    if "attempts" in df.columns:
        out["path"] = [attempt_path(a) for a in df["attempts"]]
    if "cost_usd" in df.columns:
        out["cost_uusd"] = (df["cost_usd"] * 1e6).round(1)
    if "latency_s" in df.columns:
        out["latency_ms"] = (df["latency_s"] * 1000).round(0)
    keep = [c for c in columns if c in out.columns]
    return out[keep].fillna("")


#: the purposes of calls whose answer may be the one served (a classifier's or a rejected stage's is not)
_SERVED_PURPOSES = ("answer", "cascade", "hedge")


def cost_breakdown(records: Any, prices: Any = None) -> "pd.DataFrame":
    """Spend per model split into input tokens, output tokens and calls not served.

    Returns one row per model with ``input_usd``, ``output_usd``, ``unserved_usd`` (cost of
    successful calls whose answer was not the one served: rejected cascade stages and
    classifier calls) and ``calls``.  Input/output shares come from the price book (the
    lecture's prices for its three models); a model without a price is split 0/100 into
    ``output_usd`` and flagged in the ``note`` column.
    """
    import pandas as pd

    from .pricing import PriceBook

    if hasattr(records, "ledger"):
        records = records.ledger
    df = records.to_dataframe() if hasattr(records, "to_dataframe") else pd.DataFrame(records)
    book = prices or PriceBook.default()
    rows: dict[str, dict[str, Any]] = {}
    for served, attempts in zip(df.get("deployment", [None] * len(df)), df.get("attempts", [[]] * len(df))):
        atts = _attempts(attempts)
        # the served answer: the last call that answered — a hedge that won its race included (it was
        # counted as unserved, and its answer's input and output missing from the split)
        last_ok = max((i for i, a in enumerate(atts) if a.get("ok") and a.get("purpose") in _SERVED_PURPOSES),
                      default=None)
        for i, a in enumerate(atts):
            if a.get("purpose") in ("skip", "check") or not a.get("cost_usd"):
                continue
            model = str(a.get("model") or a.get("deployment"))
            row = rows.setdefault(model, {"model": model, "input_usd": 0.0, "output_usd": 0.0, "unserved_usd": 0.0,
                                          "calls": 0, "note": ""})
            row["calls"] += 1
            cost = float(a["cost_usd"])
            if i != last_ok:
                row["unserved_usd"] += cost
                continue
            price = book.find(model)
            pin = (a.get("prompt_tokens") or 0) * (price.input_per_token if price else 0.0)
            pout = (a.get("completion_tokens") or 0) * (price.output_per_token if price else 0.0)
            if price is None or pin + pout <= 0:
                row["output_usd"] += cost
                row["note"] = "no list price: all counted as output"
            else:
                row["input_usd"] += cost * pin / (pin + pout)
                row["output_usd"] += cost * pout / (pin + pout)
    out = pd.DataFrame(list(rows.values()), columns=["model", "input_usd", "output_usd", "unserved_usd", "calls", "note"])
    out["total_usd"] = out["input_usd"] + out["output_usd"] + out["unserved_usd"]
    return out.sort_values("total_usd", ascending=False, ignore_index=True)


def cost_shares(breakdown: "pd.DataFrame") -> dict[str, float]:
    """Shares of total spend: input tokens, output tokens, unserved calls (sums to 1)."""
    total = float(breakdown["total_usd"].sum()) or 1.0
    return {"input": float(breakdown["input_usd"].sum()) / total,
            "output": float(breakdown["output_usd"].sum()) / total,
            "unserved": float(breakdown["unserved_usd"].sum()) / total}


# ----------------------------------------------------------------------------- figures
def cost_breakdown_figure(breakdown: "pd.DataFrame", title: str | None = None) -> Any:
    """Stacked horizontal bars per model: input, output and unserved spend in USD."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 1.9 + 0.45 * max(len(breakdown), 1)))
    left = [0.0] * len(breakdown)
    colours = {"input_usd": "#4C78A8", "output_usd": "#F58518", "unserved_usd": "#B279A2"}
    names = {"input_usd": label("입력 토큰", "input tokens"), "output_usd": label("출력 토큰", "output tokens"),
             "unserved_usd": label("답변에 쓰이지 않은 호출 (분류기·에스컬레이션)",
                                   "calls not served (classifier, escalations)")}
    for col, colour in colours.items():
        values = breakdown[col].tolist()
        ax.barh(breakdown["model"], values, left=left, color=colour, label=names[col])
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel(label("비용 (USD)", "cost (USD)"))
    ax.set_title(title or label("비용은 어디로 가는가", "where the money goes"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32 if len(breakdown) < 3 else -0.2), ncol=3, fontsize=8,
              frameon=False)
    fig.tight_layout()
    return fig


def threshold_figure(sweep: "pd.DataFrame", threshold: float | None = None, *, guard_off: "pd.DataFrame | None" = None,
                     lang: str | None = None, highlight_guard: bool = True, title: str | None = None) -> Any:
    """Recall and false-hit rate vs threshold (guard on: solid; guard off: dashed), marker at ``threshold``.

    ``sweep`` (guard on) and ``guard_off`` have columns ``threshold, lang, recall, false_hit_rate,
    hit_rate`` (from :func:`llmlab.cache.calibration.threshold_sweep`); ``lang`` picks the rows of
    one group (default ``"overall"``).  Dots mark the values at ``threshold`` on the curves of the
    active guard setting (``highlight_guard``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    def curve(df: "pd.DataFrame") -> "pd.DataFrame":
        if "lang" in df.columns:
            pick = lang or ("overall" if "overall" in set(df["lang"]) else None)
            df = df[df["lang"] == pick] if pick is not None else df.groupby("threshold", as_index=False).mean(
                numeric_only=True)
        return df.sort_values("threshold")

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    blue, red = "#4C78A8", "#E45756"
    on = curve(sweep)
    ax.plot(on["threshold"], on["recall"] * 100, color=blue,
            label=label("재질문 히트율 (가드 켬)", "hits on true paraphrases (guard on)"))
    ax.plot(on["threshold"], on["false_hit_rate"] * 100, color=red,
            label=label("오답 히트율 (가드 켬)", "false hits (guard on)"))
    off = curve(guard_off) if guard_off is not None else None
    if off is not None:
        ax.plot(off["threshold"], off["recall"] * 100, color=blue, ls="--", alpha=0.8,
                label=label("재질문 히트율 (가드 끔)", "hits on true paraphrases (guard off)"))
        ax.plot(off["threshold"], off["false_hit_rate"] * 100, color=red, ls="--", alpha=0.8,
                label=label("오답 히트율 (가드 끔)", "false hits (guard off)"))
    if threshold is not None:
        ax.axvline(threshold, color="black", lw=1)
        active = on if (highlight_guard or off is None) else off
        x = active["threshold"].to_numpy(dtype=float)
        if len(x) and x.min() <= threshold <= x.max():
            for col, colour in (("recall", blue), ("false_hit_rate", red)):
                y = float(np.interp(threshold, x, active[col].to_numpy(dtype=float))) * 100
                ax.plot([threshold], [y], "o", color=colour, ms=7, zorder=5)
                ax.annotate(f"{y:.1f} %", (threshold, y), xytext=(6, 4), textcoords="offset points", fontsize=9,
                            color=colour)
    ax.set_xlabel(label("코사인 유사도 임계값", "cosine similarity threshold"))
    ax.set_ylabel(label("쌍의 비율 (%)", "share of pairs (%)"))
    ax.set_title(title or label("임계값 트레이드오프", "the threshold trade-off"))
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def judged_latencies(turns: "pd.DataFrame", column: str = "latency_s") -> "np.ndarray":
    """A turn table's ``column`` (``latency_s`` or ``ttft_s``) as the SLO judges it: policy refusals
    (budget, rate limit, guardrail) left out, a failed turn infinitely slow (never answered).
    A CDF of the raw column dropped failed turns (they have no first token), so a baseline that
    failed a fifth of its turns drew as faster than the policy that answered them."""
    from .sim.metrics import judged, turn_verdicts

    return judged(turns[column].to_numpy(dtype=float), *turn_verdicts(turns))


def latency_cdf_figure(series: Mapping[str, Sequence[float]], slo_s: float | None = None, *,
                       percentile: float = 95.0, title: str | None = None, xlabel: str | None = None) -> Any:
    """Empirical CDFs of latencies (seconds), one line per named series, with the SLO line.

    An infinite value is a turn never answered (:func:`judged_latencies`): it counts in its series'
    share but is never reached, so the curve tops out at the share answered; a NaN is left out."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for name, values in series.items():
        every = np.asarray([v for v in values if v == v], dtype=float)
        x = np.sort(every[np.isfinite(every)])
        if len(every) == 0:
            continue
        y = np.arange(1, len(x) + 1) / len(every) * 100
        # between two failures (inf, inf) the interpolation is inf - inf: NaN, a failure too, and
        # numpy's "invalid value encountered in scalar subtract" printed under the figure
        with np.errstate(invalid="ignore"):
            p = float(np.percentile(every, percentile))
        p = math.inf if p != p else p
        at = f"{p:.2f} s" if math.isfinite(p) else label("실패", "failed")
        unanswered = 1 - len(x) / len(every)
        shown = f"{name} (P{percentile:g} {at}" + (label(f", 미응답 {unanswered:.0%}", f", {unanswered:.0%} unanswered")
                                                   if unanswered >= 0.005 else "") + ")"
        ax.step(x, y, where="post", label=shown)
    if slo_s is not None:
        ax.axvline(slo_s, color="#B00020", ls="--", lw=1.2, label=label(f"SLO {slo_s:g} s", f"SLO {slo_s:g} s"))
    ax.axhline(percentile, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(xlabel or label("응답 지연 (초)", "latency (s)"))
    ax.set_ylabel(label("누적 요청 비율 (%)", "requests at or below (%)"))
    ax.set_title(title or label("지연 시간 분포 (CDF)", "latency CDF"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- outage drills
#: protection levels compared by :func:`outage_drill` (``retries=None`` keeps the scenario's)
DRILL_VARIANTS: dict[str, dict[str, Any]] = {
    "no protection": {"fallback": False, "max_retries": 0, "breaker": False},
    "retries only": {"fallback": False, "max_retries": None, "breaker": False},
    "fallback + retries": {"fallback": True, "max_retries": None, "breaker": False},
    "fallback + retries + breaker": {"fallback": True, "max_retries": None, "breaker": True},
}

#: a breaker that never opens (the scenario schema has no "off" switch): no slow-call rule either
BREAKER_OFF = {"gateway.breaker.failure_threshold": 1_000_000_000, "gateway.breaker.min_calls": 1_000_000_000,
               "gateway.breaker.slow_call_s": None}


def outage_overrides(*, target: str, start_s: float, duration_s: float, kind: str = "down",
                     fallback: bool = True, max_retries: int | None = None, base_s: float | None = None,
                     breaker: bool = True, incidents: bool = False) -> dict[str, Any]:
    """Scenario overrides for one drill: a single outage window plus the protection settings.

    ``duration_s`` ≤ 0 is passed through as ``end_s ≤ start_s`` so the scenario validation
    reports it (``outages.windows.0.end_s: must be > start_s``).  ``fallback=False`` empties the
    fallback chains; ``breaker=False`` sets thresholds no run can reach.
    """
    overrides: dict[str, Any] = {
        "outages.incidents": bool(incidents),
        "outages.windows": [{"target": target, "start_s": start_s, "end_s": start_s + duration_s, "kind": kind}],
    }
    if not fallback:
        overrides["gateway.fallbacks"] = {}
    if max_retries is not None:
        overrides["gateway.retry.max_retries"] = max_retries
    if base_s is not None:
        overrides["gateway.retry.base_s"] = base_s
    if not breaker:
        overrides.update(BREAKER_OFF)
    return overrides


def drill_row(name: str, result: Any) -> dict[str, Any]:
    """The numbers an outage drill compares, for one simulation result.  The drill's window is
    the run's only outage (:func:`outage_overrides` turns the incident processes off), so the
    summary's ``outage_availability`` and ``outage_slo_value_s`` (the SLO's metric at its
    percentile, infinite when too many turns failed) are the window's, and the turns marked
    ``during_outage`` are those that arrived in it."""
    s = result.summary
    calls_inside = result.turns.loc[result.turns["during_outage"], "calls"]
    return {"variant": name, "availability": s["availability"],
            "availability_in_outage": s["outage_availability"],
            "slo_value_in_outage_s": s["outage_slo_value_s"],
            "p95_latency_s": s["p95_latency_s"], "cost_usd": s["cost_usd"],
            "calls_per_turn": s["retry_amplification"],
            "calls_per_turn_in_outage": float(calls_inside.mean()) if len(calls_inside) else float("nan"),
            "fallback_rate": s["fallback_rate"], "budget_rejections": s["budget_rejections"],
            "requests": s["requests"]}


#: the longest drill (outage start + duration + the time after): four runs of it take seconds, not minutes
MAX_DRILL_S = 4 * 3600.0


def check_drill(start_s: Any, duration_s: Any, after_s: Any = 120.0) -> None:
    """The drill's times, named as the panel labels them (a typo of 100000 s is four long runs)."""
    from .sim import ScenarioError

    for box, name, value, ok in (("outage start", "start_s", start_s, lambda x: x >= 0),
                                 ("outage duration", "duration_s", duration_s, lambda x: x > 0),
                                 ("time after the outage", "after_s", after_s, lambda x: x >= 0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
            raise ScenarioError(f"{box} ({name})", "a finite number of seconds " + (
                "> 0" if name == "duration_s" else ">= 0"), value)
    if start_s + duration_s + after_s > MAX_DRILL_S:
        raise ScenarioError("outage start + duration (start_s + duration_s)", f"at most {MAX_DRILL_S - after_s:g} s "
                            f"for a drill (with {after_s:g} s after it)", start_s + duration_s)


def outage_drill(scenario: Any = "b2b-saas", variants: Mapping[str, Mapping[str, Any]] | None = None, *,
                 target: str = "openai", start_s: float = 60.0, duration_s: float = 240.0, kind: str = "down",
                 max_retries: int | None = None, base_s: float | None = None, after_s: float = 120.0,
                 seed: int = 0, extra_overrides: Mapping[str, Any] | None = None, keep_caps: bool = False,
                 progress: Any = None) -> tuple["pd.DataFrame", dict[str, Any]]:
    """Simulate the same outage under several protection levels; one summary row per variant.

    Traffic runs for ``start_s + duration_s + after_s`` simulated seconds (at most
    ``MAX_DRILL_S``).  Monthly caps are lifted unless ``keep_caps``: a pricier fallback reaches
    a small cap sooner, and its refusals would read as the outage's.  Every variant is validated
    before the first run, so a bad value fails at once with a message naming it.
    ``progress(done, total)`` is called after each run.  Returns ``(table, {variant: SimResult})``.
    """
    import pandas as pd

    from .sim import load_scenario, simulate

    check_drill(start_s, duration_s, after_s)
    chosen = dict(DRILL_VARIANTS if variants is None else variants)
    base = load_scenario(scenario)
    hours = (start_s + duration_s + after_s) / 3600.0
    caps = {} if keep_caps else no_caps(base)
    plans = {}
    for name, v in chosen.items():
        retries = v.get("max_retries", None)
        overrides = {**caps, **dict(extra_overrides or {}),
                     **outage_overrides(target=target, start_s=start_s, duration_s=duration_s, kind=kind,
                                        fallback=v.get("fallback", True),
                                        max_retries=max_retries if retries is None else retries,
                                        base_s=base_s, breaker=v.get("breaker", True))}
        plans[name] = base.with_overrides(overrides)  # raises ScenarioError before anything runs
    results = {}
    for k, (name, sc) in enumerate(plans.items(), 1):
        results[name] = simulate(sc, hours=hours, seed=seed, baseline=False)
        if progress is not None:
            progress(k, len(plans))
    table = pd.DataFrame([drill_row(name, r) for name, r in results.items()])
    return table, results


def availability_timeline_figure(results: Mapping[str, Any], window: tuple[float, float] | None = None, *,
                                 bin_s: float = 30.0, title: str | None = None) -> Any:
    """Share of turns answered per ``bin_s`` of simulated time, one line per result; outage shaded.

    Variants often answer exactly alike (before and after the outage, or two protected ones
    during it), so each line has its own style and marker, drawn from thick and hollow to thin
    and small: a line on top of another leaves the one below visible around it.
    """
    import matplotlib.pyplot as plt

    styles = [("-", "o", 9, 3.2), ("--", "s", 7, 2.4), ("-.", "^", 5.5, 1.7), (":", "D", 3.5, 1.2)]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (name, result) in enumerate(results.items()):
        turns = result.turns
        if not len(turns):
            continue
        bins = (turns["arrival_s"] // bin_s).astype(int)
        answered = (turns["outcome"] != "error").groupby(bins).mean() * 100
        ls, marker, size, lw = styles[i % len(styles)]
        ax.plot(answered.index * bin_s + bin_s / 2, answered.values, ls=ls, lw=lw, marker=marker, ms=size,
                mfc="none" if size > 5 else None, mew=1.3, label=name, zorder=2 + i)
    if window is not None:
        ax.axvspan(window[0], window[1], color="#E45756", alpha=0.12,
                   label=label("장애 구간", "outage window"))
    ax.set_ylim(-3, 103)
    ax.set_xlabel(label("시뮬레이션 시간 (초)", "simulated time (s)"))
    ax.set_ylabel(label(f"응답 성공률 (%, {bin_s:g}초 단위)", f"turns answered (%, per {bin_s:g} s)"))
    ax.set_title(title or label("장애 훈련: 가용성", "outage drill: availability over time"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)  # off the lines
    fig.tight_layout()
    return fig


def drill_bars_figure(table: "pd.DataFrame", title: str | None = None) -> Any:
    """Availability during the outage and provider calls per turn (retry amplification), per variant."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    names = table["variant"].tolist()
    a1.barh(names, table["availability_in_outage"] * 100, color="#54A24B")
    a1.set_xlabel(label("장애 중 가용성 (%)", "availability during the outage (%)"))
    a1.set_xlim(0, 100)
    a1.invert_yaxis()
    a2.barh(names, table["calls_per_turn_in_outage"], color="#F58518")
    a2.set_xlabel(label("장애 중 턴당 호출 수", "provider calls per turn during the outage"))
    a2.set_yticks([])
    a2.invert_yaxis()
    fig.suptitle(title or label("보호 수준별 비교", "protection levels compared"))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claims
def against_range(value: float, low: float, high: float) -> str:
    """``"below"``, ``"within"`` or ``"above"`` the claimed range ``[low, high]`` (ends included).

    The notebooks print a lecture claim's verdict with this instead of asserting it in prose, so
    the sentence follows the number when a scenario, a seed or an embedder changes.
    """
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"range: low={low!r}, high={high!r}; expected finite numbers with low <= high")
    if not math.isfinite(value):
        raise ValueError(f"value: {value!r}; expected a finite number")
    return "below" if value < low else ("above" if value > high else "within")


# ----------------------------------------------------------------------------- tiering
def cost_if_all_on(records: Any, model: str, prices: Any = None) -> float:
    """What the answered requests' tokens would cost on ``model`` (the "all on one model" repricing).

    Uses each model-answered request's prompt and completion tokens; cache hits, rule answers and
    errors are left out, so the number isolates model choice from caching.
    """
    import pandas as pd

    from .pricing import PriceBook

    if hasattr(records, "ledger"):
        records = records.ledger
    df = records.to_dataframe() if hasattr(records, "to_dataframe") else pd.DataFrame(records)
    answered = df[df["outcome"] == "model"]
    price = (prices or PriceBook.default()).price(model)
    return float(answered["prompt_tokens"].sum() * price.input_per_token
                 + answered["completion_tokens"].sum() * price.output_per_token)


def compare_runs(results: Mapping[str, Any], metrics: Sequence[str] = (
        "cost_usd", "baseline_cost_usd", "savings_pct", "projected_monthly_cost_usd", "p95_latency_s",
        "availability", "cache_hit_rate")) -> "pd.DataFrame":
    """One row per named simulation result with the chosen summary metrics (+ 95 % CI columns if replicated)."""
    import pandas as pd

    rows = []
    for name, result in results.items():
        s = result.summary
        row: dict[str, Any] = {"policy": name}
        for key in metrics:
            row[key] = s.get(key, float("nan"))
            ci = s.get("ci95", {}).get(key) if isinstance(s.get("ci95"), Mapping) else None
            if ci:
                row[f"{key}_ci95"] = (round(ci[0], 4), round(ci[1], 4))
        rows.append(row)
    return pd.DataFrame(rows)


def model_mix(requests: "pd.DataFrame", by: str = "meta_category") -> "pd.DataFrame":
    """Share of model-answered requests per ``by`` value (rows) and deployment (columns), in %."""
    import pandas as pd

    answered = requests[requests["outcome"] == "model"]
    return (pd.crosstab(answered[by], answered["deployment"], normalize="index") * 100).round(1)


# ----------------------------------------------------------------------------- caching
def repeated_question_savings(cached: Any, uncached: Any) -> dict[str, float]:
    """Cost of repeated questions with and without caches, from two runs over the same traffic.

    A turn is a *repeat* when the same tenant asked the same question — same ``answer_key``: same
    intent, same slot values — in an earlier turn of the run (caches are per tenant, so another
    tenant's identical question is not a repeat a cache could serve).  Both results must come from the same scenario, seed and size
    (common random numbers), so turn ``i`` is the same question in both.
    """
    a, b = cached.requests, uncached.requests
    if len(cached.turns) != len(uncached.turns):
        raise ValueError("the two runs served different traffic: use the same scenario, seed and size")
    first = a.drop_duplicates("turn").sort_values("turn")
    seen: set[str] = set()
    repeat_turns = set()
    for turn, tenant, answer_key in zip(first["turn"], first["tenant"], first["answer_key"]):
        key = f"{tenant}|{answer_key}"
        if key in seen:
            repeat_turns.add(int(turn))
        seen.add(key)
    cost_a = a[a["turn"].isin(repeat_turns)]["cost_usd"].sum()
    cost_b = b[b["turn"].isin(repeat_turns)]["cost_usd"].sum()
    hits = a[a["turn"].isin(repeat_turns) & a["cache"].isin(["exact_hit", "semantic_hit"])]
    return {"turns": float(len(first)), "repeat_share": len(repeat_turns) / max(len(first), 1),
            "repeat_cost_without_cache_usd": float(cost_b), "repeat_cost_with_cache_usd": float(cost_a),
            "repeat_cost_saving_pct": 100.0 * (1.0 - cost_a / cost_b) if cost_b > 0 else float("nan"),
            "repeats_served_from_cache": len(hits.drop_duplicates("turn")) / max(len(repeat_turns), 1)}


#: the buckets of :func:`repeat_outcomes`, in the order a reader checks them
REPEAT_OUTCOMES = ("served_from_cache", "mid_conversation", "no_answer_cached_yet", "missed_cached_answer")


def repeat_outcomes(result: Any) -> dict[str, float]:
    """Why each repeated question was, or was not, answered from the cache (shares of the repeats).

    A repeat is defined as in :func:`repeated_question_savings` (same tenant, same ``answer_key``
    asked in an earlier turn).  Each repeat lands in the first bucket that applies:

    * ``served_from_cache`` — an exact or semantic hit;
    * ``mid_conversation`` — the turn follows earlier turns of its session: the cache namespace
      includes the conversation so far, so no other conversation's answer may be reused (by
      design — the same words mean different things in different conversations);
    * ``no_answer_cached_yet`` — an opening turn, but no earlier *opening* turn of the tenant
      with this question had been answered by the time it arrived (still in flight, failed, or
      only ever asked mid-conversation), so there was nothing to hit;
    * ``missed_cached_answer`` — an answer was there and the lookup missed it: a paraphrase
      below the semantic threshold, a hit-guard veto, other parameters, or an evicted entry.

    ``cacheable`` is the sum of the first and last buckets: the best any cache tuning could
    reach on this traffic.  Needs the simulator's per-request columns (``turn``, ``session``,
    ``tenant``, ``answer_key``, ``arrival_s``, ``turn_latency_s``, ``outcome``, ``cache``), and
    reads ``opening`` where it is there: a session's first turn in the run is not an opening
    turn when the conversation began before the run (its earlier turns are the context).
    """
    df = result.requests if hasattr(result, "requests") else result
    first = df.drop_duplicates("turn").sort_values("turn")
    if "opening" in first:
        openings = first["opening"].astype(bool)
    else:  # a frame without the column: a session's first turn in it opens the conversation
        openings = first["turn"] == first.groupby("session")["turn"].transform("min")
    counts = dict.fromkeys(REPEAT_OUTCOMES, 0)
    answered_at: dict[str, list[float]] = {}  # tenant|key → when each opening ask was answered
    asked: set[str] = set()
    for is_opening, tenant, key, arrival, took, outcome, cache in zip(
            openings, first["tenant"], first["answer_key"], first["arrival_s"],
            first["turn_latency_s"], first["outcome"], first["cache"]):
        name = f"{tenant}|{key}"
        if name in asked:
            if cache in ("exact_hit", "semantic_hit"):
                counts["served_from_cache"] += 1
            elif not is_opening:
                counts["mid_conversation"] += 1
            elif not any(done <= arrival for done in answered_at.get(name, ())):
                counts["no_answer_cached_yet"] += 1
            else:
                counts["missed_cached_answer"] += 1
        asked.add(name)
        if is_opening and outcome != "error":
            answered_at.setdefault(name, []).append(float(arrival) + float(took))
    repeats = sum(counts.values())
    out = {k: v / repeats if repeats else float("nan") for k, v in counts.items()}
    out["repeats"] = float(repeats)
    out["cacheable"] = out["served_from_cache"] + out["missed_cached_answer"] if repeats else float("nan")
    return out


# ----------------------------------------------------------------------------- scenario helpers
#: overrides that remove scheduled outages and random incidents (isolate a policy from failures)
CALM = {"outages.incidents": False, "outages.windows": []}


def no_caps(scenario: Any) -> dict[str, Any]:
    """Overrides that remove every monthly cap of ``scenario`` (gateway budget and per-group caps).

    Built from the loaded scenario, so it follows wherever the scenario declares caps.
    """
    from .sim import load_scenario

    sc = load_scenario(scenario)
    out: dict[str, Any] = {"gateway.budget": None}
    for i, group in enumerate(sc.traffic.tenants):
        if getattr(group, "monthly_budget_usd", None) is not None:
            out[f"traffic.tenants.{i}.monthly_budget_usd"] = None
    return out


