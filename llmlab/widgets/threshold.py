"""The threshold panel: the semantic cache's threshold against recall, false hits and money."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import ipywidgets as W

from ..plotting_fonts import label
from .base import Panel, PanelResult, TimerFactory


# ----------------------------------------------------------------------------- threshold tuning
#: per-request prices behind the threshold panel's cost numbers (USD): a gpt-4o answer of 800 input
#: + 300 output tokens, and text-embedding-3-small on a 20-token query
DEFAULT_LLM_COST = 800 * 2.50e-6 + 300 * 10.00e-6
DEFAULT_EMBEDDING_COST = 20 * 0.02e-6


def threshold_economics(recall: float, pair_false_hit_rate: float, *, repeat_share: float, daily_requests: float,
                        llm_cost: float, embedding_cost: float, false_hit_penalty: float,
                        days: int = 30) -> dict[str, Any]:
    """Monthly money at one threshold, from pair metrics and a traffic assumption.

    A share ``repeat_share`` of queries repeats (paraphrases) a cached question and hits with
    probability ``recall``; the other queries find only a different question as their nearest
    neighbour and hit — wrongly — with probability ``pair_false_hit_rate``.  The money comes
    from :func:`llmlab.economics.semantic_cache_net_saving` (which validates every input).
    """
    from ..economics import semantic_cache_net_saving

    right = repeat_share * recall
    wrong = (1.0 - repeat_share) * pair_false_hit_rate
    hit_rate = right + wrong
    out = semantic_cache_net_saving(daily_requests * days, hit_rate, llm_cost, embedding_cost,
                                    false_hit_rate=(wrong / hit_rate) if hit_rate > 0 else 0.0,
                                    false_hit_penalty=false_hit_penalty)
    out["hit_rate"] = hit_rate
    out["wrong_answer_share"] = wrong
    out["monthly_cost_without_cache"] = daily_requests * days * llm_cost
    out["monthly_cost_with_cache"] = out["monthly_cost_without_cache"] - out["gross_saving"] + out["embedding_spend"]
    return out



def usd(amount: float, decimals: int = 0) -> str:
    """``$1,234`` / ``−$137``: the sign before the currency (``$-137`` read as a typo), and no
    ``−$0`` for an amount that rounds to nothing."""
    shown = f"{abs(amount):,.{decimals}f}"
    negative = amount < 0 and shown.strip("0.,") != ""
    return f"{'−' if negative else ''}${shown}"


def threshold_text(threshold: float) -> str:
    """``0.91`` → ``"0.91"``; a typed ``0.915`` → ``"0.915"``, not the ``"0.92"`` two decimals
    showed in the headline and the figure's title while the cache used 0.915."""
    return f"{threshold:.2f}" if round(threshold, 2) == threshold else f"{threshold:.4g}"


def break_even_text(rate: float) -> str:
    """The hit rate from which the cache pays, or why there is none (an infinite break-even: each
    hit's wrong-answer risk costs more than the call it saves) — it read "inf%"."""
    if rate != rate or rate == math.inf or rate > 1.0:
        return "never: at this threshold wrong answers cost more than the hits save"
    return f"{rate:.2%}"

class ThresholdPanel(Panel):
    """Tune the semantic-cache threshold on labelled pairs, and see what it saves or costs.

    The curves come from :func:`llmlab.cache.calibration.threshold_sweep` on ``pairs_path`` —
    recall (true paraphrases that hit) and false-hit rate (must-not-hit pairs that hit) against
    the threshold, with the hit guard (solid) and without it (dashed) — computed once per panel.
    The threshold is a slider plus a text box (``llmlab-threshold``, ``llmlab-threshold-text``);
    typing a value outside [0, 1] shows the semantic cache's own ``ConfigError``.  Below the plot:
    the metrics at the chosen threshold and the monthly money (:func:`threshold_economics`).
    """

    title = "Semantic-cache threshold"

    def __init__(self, pairs_path: Any = None, embedder: str = "hashed", *, threshold: float | None = None,
                 guard: bool = True, lang: str = "overall", thresholds: Sequence[float] | None = None,
                 repeat_share: float = 0.3, daily_requests: int = 10_000, llm_cost: float = DEFAULT_LLM_COST,
                 embedding_cost: float = DEFAULT_EMBEDDING_COST, false_hit_penalty: float = 0.5,
                 memo_path: Any = None, auto: bool = True, debounce_s: float = 0.3,
                 timer: TimerFactory | None = None, title: str | None = None) -> None:
        import numpy as np

        from ..cache.embedders import get_embedder
        from ..cache.semantic import threshold_for
        from ..catalogue import dataset_path

        super().__init__(auto=auto, debounce_s=debounce_s, timer=timer,
                         title=title if title is not None else f"Semantic-cache threshold ({embedder})")
        self.pairs_path = str(pairs_path if pairs_path is not None else dataset_path("pairs.jsonl"))
        self.embedder_name = embedder
        self._embedder = get_embedder(embedder)  # EmbedderUnavailable here, not on the first slider move
        self.memo_path = memo_path
        grid = np.round(np.arange(0.3, 1.0 + 1e-9, 0.01), 4) if thresholds is None else np.asarray(thresholds, float)
        self.grid = [float(x) for x in grid]
        self.daily_requests = daily_requests
        self.llm_cost = llm_cost
        self.embedding_cost = embedding_cost
        self._sweeps: dict[bool, Any] = {}
        start = float(threshold if threshold is not None else threshold_for(embedder)["threshold"])
        lo, hi = min(self.grid), max(self.grid)
        self.slider = W.FloatSlider(value=min(max(start, lo), hi), min=lo, max=hi, step=0.01, readout_format=".2f",
                                    description="threshold", continuous_update=False,
                                    style={"description_width": "initial"}, layout=W.Layout(width="460px"))
        self.text = W.FloatText(value=start, description="or type it", step=0.01,
                                style={"description_width": "initial"}, layout=W.Layout(width="200px"))
        self._threshold = start
        self._syncing = False
        self.add_control("threshold", self.slider, rerun=False)
        self.add_control("threshold_text", self.text, rerun=False)
        self.slider.observe(self._slider_moved, names="value")
        self.text.observe(self._text_typed, names="value")
        self.add_control("guard", W.Checkbox(value=guard, description="hit guard on", indent=False))
        self.add_control("lang", W.Dropdown(options=["overall", "en", "ko"], value=lang, description="language"))
        self.add_control("repeat_share", W.FloatSlider(value=repeat_share, min=0.0, max=1.0, step=0.05,
                                                       description="share of repeated questions",
                                                       readout_format=".2f", continuous_update=False,
                                                       style={"description_width": "initial"},
                                                       layout=W.Layout(width="460px")))
        self.add_control("false_hit_penalty", W.FloatText(value=false_hit_penalty,
                                                          description="cost of a wrong answer (USD)",
                                                          style={"description_width": "initial"}))

    # -- the threshold has two widgets and one value
    def _slider_moved(self, change: Any) -> None:
        if self._syncing:
            return
        self._threshold = float(change["new"])
        self._syncing = True
        try:
            self.text.value = round(self._threshold, 4)
        finally:
            self._syncing = False
        self._on_change()

    def _text_typed(self, change: Any) -> None:
        if self._syncing:
            return
        value = change["new"]
        self._threshold = value
        if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:  # a valid threshold the slider must show
            self._syncing = True
            try:
                # typed outside the slider's range: widen it rather than show a stale value
                self.slider.min, self.slider.max = min(self.slider.min, value), max(self.slider.max, value)
                self.slider.value = value
            finally:
                self._syncing = False
        self._on_change()

    @property
    def threshold(self) -> float:
        return self._threshold

    def values(self) -> dict[str, Any]:
        out = {name: w.value for name, w in self.controls.items() if name not in ("threshold", "threshold_text")}
        out["threshold"] = self._threshold
        return out

    # -- computing
    def sweep(self, guard: bool) -> Any:
        """The full curve for one guard setting (computed once, then reused)."""
        if guard not in self._sweeps:
            from ..cache.calibration import threshold_sweep

            self._sweeps[guard] = threshold_sweep(self.pairs_path, self.embedder_name, guard=guard,
                                                  thresholds=self.grid, memo_path=self.memo_path)
        return self._sweeps[guard]

    def at_threshold(self, threshold: float, guard: bool, lang: str) -> dict[str, float]:
        """Recall, false-hit rate and hit rate on the pairs at exactly ``threshold``."""
        curve = self.sweep(guard)
        rows = curve[(curve["lang"] == lang) & ((curve["threshold"] - threshold).abs() < 1e-9)]
        if not len(rows):
            from ..cache.calibration import threshold_sweep

            one = threshold_sweep(self.pairs_path, self.embedder_name, guard=guard, thresholds=[threshold],
                                  memo_path=self.memo_path)
            rows = one[one["lang"] == lang]
        row = rows.iloc[0]
        return {"recall": float(row["recall"]), "false_hit_rate": float(row["false_hit_rate"]),
                "hit_rate": float(row["hit_rate"])}

    def compute(self, values: Mapping[str, Any]) -> PanelResult:
        from ..cache.semantic import SemanticCache
        from ..teaching import threshold_figure

        t = values["threshold"]
        SemanticCache(self._embedder, threshold=t, guard=None)  # the cache's own validation of the value
        guard, lang = bool(values["guard"]), values["lang"]
        self.report_progress(10, 100)
        on, off = self.sweep(True), self.sweep(False)
        self.report_progress(60, 100)
        m = self.at_threshold(float(t), guard, lang)
        money = threshold_economics(m["recall"], m["false_hit_rate"], repeat_share=values["repeat_share"],
                                    daily_requests=self.daily_requests, llm_cost=self.llm_cost,
                                    embedding_cost=self.embedding_cost,
                                    false_hit_penalty=values["false_hit_penalty"])
        fig = threshold_figure(on, float(t), guard_off=off, lang=lang, highlight_guard=guard,
                               title=label(f"임계값 {threshold_text(t)}: 재질문 히트율과 오답 히트율 ({self.embedder_name})",
                                           f"threshold {threshold_text(t)}: hits on repeats vs false hits "
                                           f"({self.embedder_name})"))
        import pandas as pd

        table = pd.DataFrame([
            ("threshold", f"{t:.3f}"), ("hit guard", "on" if guard else "off"), ("language", lang),
            ("recall on true paraphrases", f"{m['recall']:.1%}"),
            ("false-hit rate on must-not-hit pairs", f"{m['false_hit_rate']:.1%}"),
            ("traffic hit rate (assumed repeats)", f"{money['hit_rate']:.1%}"),
            ("wrong answers served", f"{money['wrong_answer_share']:.2%} of requests"),
            ("monthly LLM cost without cache", usd(money["monthly_cost_without_cache"])),
            ("monthly LLM + embedding cost with cache", usd(money["monthly_cost_with_cache"])),
            ("gross saving / month", usd(money["gross_saving"])),
            ("embedding spend / month", usd(money["embedding_spend"], 2)),
            ("cost of wrong answers / month", usd(money["false_hit_penalty"])),
            ("net saving / month", usd(money["net_saving"])),
            ("break-even hit rate", break_even_text(money["break_even_hit_rate"])),
        ], columns=["quantity", "value"])
        headline = (f"threshold {threshold_text(t)}, guard {'on' if guard else 'off'}: hit rate {money['hit_rate']:.1%}, "
                    f"wrong answers {money['wrong_answer_share']:.2%}, net saving {usd(money['net_saving'])}/month")
        return PanelResult(fig, table, headline, {**m, **money})
