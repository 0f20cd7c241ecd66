"""Synthetic traffic, generated once per run as compact columns and replayed in arrival order.

Why columns: common random numbers.  The policy run and the baseline run must see *the same*
requests, so the traffic is drawn once (numpy, vectorised) and both runs read it; Python
objects (``Request``, messages, metadata) are built only when a turn arrives and dropped when
it is served, so a million-request run does not hold a million requests in memory.

The model, in the order it is drawn:

* **arrivals** — sessions start as a non-homogeneous Poisson process: ``rate_per_s /
  session_turns_mean`` × a 24-hour diurnal profile × bursts (explicit windows and random
  flash crowds), sampled by thinning (Lewis & Shedler).  The run starts in the steady state:
  conversations begun before it (drawn over a warm-up of several session lifetimes) send their
  later turns into it, with their earlier turns as context — an empty start ran below
  ``rate_per_s`` for the first ``think_time_s × session_turns_mean`` seconds or so;
* **sessions** — a tenant (groups by ``share``, Zipf-skewed inside a group: a few customers
  send most requests), a language, a geometric number of turns separated by exponential
  think times.  Later turns carry the conversation so far, so their cache namespace (which
  includes a context fingerprint) differs and they hit the cache less — as in production.
  The arrivals are open loop, drawn before any answer: a think time runs from the previous
  turn's arrival, not its answer, so that the policy and the baseline see the same arrivals
  (common random numbers).  A follow-up may therefore arrive before the answer it follows
  (12 % of realtime-chat's at its 20 s mean think time, more during a slowdown) and carries
  that answer, as the traffic describes it, whatever the run made of it: cut at the request's
  ``max_tokens``, or the answering deployments' ``max_output_tokens``, when it was longer (what
  the user was shown); a cache hit's stored answer was
  cut the same way and drawn from the same lengths; a failed turn's answer is kept too — the
  follow-up was drawn as the conversation going on, and context that shrank when a run failed
  would make the policy and the baseline bill the same turn differently (and reward failing);
* **queries** — an intent drawn Zipf-like over the catalogue's popularity ranks, a paraphrase
  template and slot values drawn uniformly, rendered once per distinct combination (memoised:
  the vocabulary is bounded), and the intent's answer length jittered lognormally (mean kept).

Token counts come from the catalogue (``prompt_tokens`` incl. system prompt,
``answer_tokens``) — nothing is tokenised per request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..tokens import estimate_tokens

if TYPE_CHECKING:
    from ..catalogue import Catalogue, Intent
    from .scenario import Scenario, TrafficConfig

DIURNAL = {
    "flat": [1.0] * 24,
    # B2B: office hours, a lunch dip, quiet nights
    "business": [0.15, 0.1, 0.08, 0.08, 0.1, 0.15, 0.3, 0.7, 1.4, 1.9, 2.0, 1.9, 1.5, 1.8, 1.9, 1.8, 1.6,
                 1.2, 0.8, 0.55, 0.4, 0.3, 0.25, 0.2],
    # consumers: evenings
    "consumer": [0.55, 0.35, 0.22, 0.15, 0.15, 0.2, 0.35, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.1, 1.0, 1.0, 1.1,
                 1.25, 1.45, 1.75, 1.95, 1.85, 1.45, 0.95],
}
DEFAULT_ANSWER_TOKENS = 200


@dataclass(slots=True)
class Traffic:
    """User turns in arrival order, as parallel arrays plus small lookup tables.

    Row ``i`` is one user turn.  ``prev[i]`` is the previous turn of the same session (or -1);
    a turn's messages are rebuilt from that chain when it arrives.  ``carried`` holds, per session
    already in progress when the run starts, its earlier turns (text ids, answer key ids, oldest
    first): context its turns in the run carry, never simulated themselves.  ``opaque`` marks
    texts that are only a hash (trace rows that logged no prompt): the driver gives them random,
    unrelated embeddings so a semantic cache can only hit identical prompts.
    """

    arrival_s: np.ndarray
    tenant: np.ndarray
    text: np.ndarray
    key: np.ndarray
    intent: np.ndarray
    prompt_tokens: np.ndarray
    answer_tokens: np.ndarray
    prev: np.ndarray
    session: np.ndarray
    tenants: list[str]
    tenant_plans: list[str]
    texts: list[str]
    text_tokens: list[int]
    answers: list[str]  # the canned answer per key: what an assistant turn in the history says
    keys: list[str]
    intents: list[str]
    intent_category: list[str]
    intent_lang: list[str]
    intent_action: list[str | None]
    horizon_s: float
    opaque: set[int] = field(default_factory=set)
    carried: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    source: str = "synthetic"
    #: epoch seconds of virtual time 0: a trace's first request (None: the scenario's ``start``),
    #: so a replay's ledger carries the log's own times (at ``speedup`` 1; a compressed replay's clock
    #: runs S times faster from it, and its budgets read the log's months: :mod:`~llmlab.sim.trace_time`)
    epoch0: float | None = None

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def mean_rate_per_s(self) -> float:
        return len(self) / self.horizon_s if self.horizon_s > 0 else 0.0

    def latest_plans(self) -> dict[str, str]:
        """Each tenant's plan on its latest turn: the plan its monthly cap is read for.  A trace's
        tenant may change plan, and its rows may come in any order (a log exported newest first),
        so neither the first nor the last ``(tenant, plan)`` pair of the tables is its current one."""
        ids = np.asarray(self.tenant)
        # the latest turn of each (tenant, plan) id, then, per name, the id whose latest turn is latest
        uniq, first_from_end = np.unique(ids[::-1], return_index=True)
        latest: dict[str, tuple[int, str]] = {name: (-1, plan) for name, plan in zip(self.tenants, self.tenant_plans)}
        for ix, at in zip(uniq.tolist(), (len(ids) - 1 - first_from_end).tolist()):
            name = self.tenants[ix]
            if at > latest[name][0]:
                latest[name] = (at, self.tenant_plans[ix])
        return {name: plan for name, (_, plan) in latest.items()}

    def history(self, i: int) -> list[int]:
        """Earlier turns of ``i``'s session, oldest first."""
        out = []
        j = int(self.prev[i])
        while j >= 0:
            out.append(j)
            j = int(self.prev[j])
        return out[::-1]


def diurnal_profile(spec: Sequence[float] | str) -> np.ndarray:
    """24 hourly multipliers with mean 1."""
    values = np.asarray(DIURNAL[spec] if isinstance(spec, str) else spec, dtype=float)
    return values / values.mean()


def zipf_probs(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1, dtype=float) ** s
    return p / p.sum()


MAX_SLOTS = 3  # the catalogue's intents have at most three slots


class _Renderer:
    """Renders each distinct (intent, template, slot values) once; the rest are array lookups.

    A query is coded by integers drawn in bulk: the template index and, per slot in sorted name
    order, an index into that slot's choices *minus the values already taken by earlier slots of
    the same type* (two products compared are never the same product).  Only the distinct codes
    are turned into text — the vocabulary is bounded, so a million turns render a few thousand
    queries.
    """

    def __init__(self, tables: "_Tables", intents: "Sequence[Intent]") -> None:
        self.tables = tables
        self.intents = list(intents)
        n = len(self.intents)
        self.n_templates = np.array([len(i.templates) for i in self.intents], dtype=np.int64)
        self.slot_len = np.zeros((n, MAX_SLOTS), dtype=np.int64)
        for k, it in enumerate(self.intents):
            seen: dict[str, int] = {}
            for j, name in enumerate(sorted(it.slots)[:MAX_SLOTS]):
                typ = it.slots[name]
                self.slot_len[k, j] = len(it.slot_choices.get(name, ())) - seen.get(typ, 0)
                seen[typ] = seen.get(typ, 0) + 1
        self.t_base = int(self.n_templates.max(initial=1))
        self.s_base = int(self.slot_len.max(initial=1)) or 1

    def codes(self, intent: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One int64 per turn identifying its rendered query (``u``: uniforms, shape (n, 4))."""
        nt = self.n_templates[intent]
        code = intent.astype(np.int64) * self.t_base + np.minimum((u[:, 0] * nt).astype(np.int64), nt - 1)
        for j in range(MAX_SLOTS):
            size = self.slot_len[intent, j]
            pick = np.where(size > 0, np.minimum((u[:, 1 + j] * np.maximum(size, 1)).astype(np.int64), size - 1), 0)
            code = code * self.s_base + pick
        return code

    def render(self, code: int) -> tuple[int, int]:
        """``(text id, answer key id)`` of a code."""
        picks = []
        for _ in range(MAX_SLOTS):
            picks.append(code % self.s_base)
            code //= self.s_base
        picks.reverse()
        template = code % self.t_base
        it = self.intents[code // self.t_base]
        values: dict[str, str] = {}
        taken: dict[str, set[str]] = {}
        for j, name in enumerate(sorted(it.slots)):
            typ = it.slots[name]
            used = taken.setdefault(typ, set())
            choices = [v for v in it.slot_choices.get(name, ()) if v not in used]
            values[name] = choices[int(picks[j]) if j < MAX_SLOTS else 0]
            used.add(values[name])
        q = it.render(None, values, template=int(template))
        return self.tables.text_id(q.text), self.tables.key_id(q.answer_key, q.answer)


class _Tables:
    """Interning tables shared by synthetic generation and trace replay."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.text_tokens: list[int] = []
        self._text_ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.answers: list[str] = []
        self._key_ids: dict[str, int] = {}
        self.intents: list[str] = []
        self.intent_category: list[str] = []
        self.intent_lang: list[str] = []
        self.intent_action: list[str | None] = []
        self._intent_ids: dict[str, int] = {}
        self.tenants: list[str] = []
        self.tenant_plans: list[str] = []
        self._tenant_ids: dict[tuple[str, str], int] = {}

    def text_id(self, text: str, tokens: int | None = None) -> int:
        i = self._text_ids.get(text)
        if i is None:
            i = self._text_ids[text] = len(self.texts)
            self.texts.append(text)
            self.text_tokens.append(tokens if tokens is not None else estimate_tokens(text) + 4)
        return i

    def key_id(self, key: str, answer: str = "") -> int:
        i = self._key_ids.get(key)
        if i is None:
            i = self._key_ids[key] = len(self.keys)
            self.keys.append(key)
            self.answers.append(answer or f"(answer for {key.split('|', 1)[0]})")
        return i

    def intent_id(self, name: str, category: str = "general", lang: str = "en", action: str | None = None) -> int:
        i = self._intent_ids.get(name)
        if i is None:
            i = self._intent_ids[name] = len(self.intents)
            self.intents.append(name)
            self.intent_category.append(category)
            self.intent_lang.append(lang)
            self.intent_action.append(action)
        return i

    def tenant_id(self, name: str, plan: str) -> int:
        """One id per (tenant, plan): a trace's tenant may change plan midway (an upgrade), and each
        request must be served on the plan it had then; budgets and caches key on the name."""
        i = self._tenant_ids.get((name, plan))
        if i is None:
            i = self._tenant_ids[(name, plan)] = len(self.tenants)
            self.tenants.append(name)
            self.tenant_plans.append(plan)
        return i

    def build(self, **arrays: Any) -> Traffic:
        return Traffic(tenants=self.tenants, tenant_plans=self.tenant_plans, texts=self.texts,
                       text_tokens=self.text_tokens, answers=self.answers, keys=self.keys, intents=self.intents,
                       intent_category=self.intent_category, intent_lang=self.intent_lang,
                       intent_action=self.intent_action, **arrays)


# ----------------------------------------------------------------------------- arrivals
def _bursts(cfg: "TrafficConfig", horizon_s: float, rng: np.random.Generator,
            explicit: bool = True) -> list[tuple[float, float, float]]:
    out = [(b.start_s, b.start_s + b.duration_s, b.multiplier) for b in cfg.bursts] if explicit else []
    if cfg.burst_rate_per_day > 0:
        # flash crowds are a process running all along: one begun up to a duration before the run still counts
        lead = cfg.burst_duration_s
        n = int(rng.poisson(cfg.burst_rate_per_day * (horizon_s + lead) / 86_400.0))
        for start in np.sort(rng.uniform(-lead, horizon_s, n)):
            out.append((float(start), float(start) + cfg.burst_duration_s, cfg.burst_multiplier))
    return out


def _int32(tokens: np.ndarray) -> np.ndarray:
    """Token counts as int32, saturated rather than wrapped: a long session's history past 2³¹
    tokens became negative (a negative answer length, a negative delay: a simulator error);
    saturated, the request exceeds every context window and is refused as one."""
    return np.minimum(tokens, np.iinfo(np.int32).max).astype(np.int32)


#: candidate session starts one thinning pass may draw (about 0.5 GB of arrays)
MAX_DRAWS = 40_000_000


def _power(multiplier_count: tuple[float, int]) -> float:
    """``m ** n``, infinite past the float range (as a product of floats is; ``**`` raises)."""
    multiplier, count = multiplier_count
    try:
        return multiplier ** count
    except OverflowError:
        return math.inf


def _peak_multiplier(bursts: list[tuple[float, float, float]]) -> float:
    """The largest product of burst multipliers in force at one instant.

    The thinning bound: the product of *every* burst's multiplier would be exact only if all of
    them overlapped, and twelve 3× bursts a day would ask for 3¹² times the draws.  The bursts in
    force are counted by multiplier (the random ones share one; scheduled ones are few), so each
    start costs the distinct multipliers, not the bursts in force: a product over every burst in
    force took minutes for a month of minute-long flash crowds at the allowed 1,440 a day.
    """
    edges = sorted([(lo, 1, k) for k, (lo, _, _) in enumerate(bursts)] +
                   [(hi, 0, k) for k, (_, hi, _) in enumerate(bursts)])  # at a tie, a burst ends before one starts
    active: dict[float, int] = {}
    peak = 1.0
    for _, starts, k in edges:
        multiplier = bursts[k][2]
        if starts:
            active[multiplier] = active.get(multiplier, 0) + 1
            # powers, not a running quotient: no drift over thousands of starts and ends
            peak = max(peak, math.prod(map(_power, active.items())))
        elif active[multiplier] == 1:
            del active[multiplier]
        else:
            active[multiplier] -= 1
    return peak


def session_starts(cfg: "TrafficConfig", horizon_s: float, start_hour: float, rng: np.random.Generator,
                   explicit_bursts: bool = True) -> np.ndarray:
    """Session start times in ``[0, horizon_s)``: thinning of a bounding homogeneous process.

    ``explicit_bursts=False`` leaves out the scenario's scheduled bursts (their times are the
    run's, not a warm-up's)."""
    profile = diurnal_profile(cfg.diurnal)
    bursts = _bursts(cfg, horizon_s, rng, explicit_bursts)
    base = cfg.rate_per_s / cfg.session_turns_mean
    peak_burst = _peak_multiplier(bursts)
    lam_max = base * profile.max() * peak_burst
    if lam_max * horizon_s > MAX_DRAWS:  # overlapping bursts multiply: 5 of ×100 at once is ×10¹⁰
        from .scenario import ScenarioError

        raise ScenarioError("traffic.bursts", f"bursts whose overlap multiplies the rate by at most "
                            f"{MAX_DRAWS / (base * profile.max() * horizon_s):,.4g} over this window", peak_burst)
    n = int(rng.poisson(lam_max * horizon_s))
    t = np.sort(rng.uniform(0.0, horizon_s, n))
    hours = ((start_hour + t / 3600.0) % 24.0).astype(int)
    lam = base * profile[hours]
    for lo, hi, mult in bursts:  # t is sorted: each burst is one slice (a pass over every draw per burst took minutes)
        lam[np.searchsorted(t, lo, "left"):np.searchsorted(t, hi, "left")] *= mult
    keep = rng.uniform(0.0, 1.0, n) * lam_max < lam
    return t[keep]


# ----------------------------------------------------------------------------- generation
#: the warm-up spans this many mean session lifetimes (think_time_s × session_turns_mean): the
#: share of in-progress conversations it misses is e^-7 ≈ 0.1 %
WARMUP_LIFETIMES = 7.0
#: ... and draws at most about this many turns (a month-long conversation at 10,000 requests/s
#: would otherwise ask for billions; the warm-up is then shorter and the start slightly quiet)
MAX_WARMUP_TURNS = 250_000


def warmup_s(cfg: "TrafficConfig", horizon_s: float) -> float:
    """Seconds before the run over which conversations still going at its start are drawn."""
    if cfg.session_turns_mean <= 1.0:
        return 0.0  # one-turn sessions: nothing begun before the run reaches into it
    return min(WARMUP_LIFETIMES * cfg.think_time_s * cfg.session_turns_mean,
               max(horizon_s, MAX_WARMUP_TURNS / cfg.rate_per_s))


def _session_turns(cfg: "TrafficConfig", starts: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(arrival, session, turn number)`` of every turn of sessions starting at ``starts``."""
    n = len(starts)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    turns = (rng.geometric(1.0 / cfg.session_turns_mean, size=n) if cfg.session_turns_mean > 1
             else np.ones(n, dtype=np.int64))
    session = np.repeat(np.arange(n, dtype=np.int64), turns)
    first = np.concatenate(([0], np.cumsum(turns)[:-1])).astype(np.int64)
    number = np.arange(len(session), dtype=np.int64) - first[session]
    think = rng.exponential(cfg.think_time_s, size=len(session))
    think[number == 0] = 0.0
    offset = np.cumsum(think)
    offset -= offset[first][session]  # cumulative think time within the session
    return starts[session] + offset, session, number


def _turn_times(cfg: "TrafficConfig", horizon_s: float, start_hour: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(arrival, session, turn number)`` of every turn of the sessions starting in the window,
    then of the sessions begun during the warm-up before it that are still going at 0 (their
    earlier turns have negative arrival times)."""
    arrival, session, number = _session_turns(cfg, session_starts(cfg, horizon_s, start_hour, rng), rng)
    warmup = warmup_s(cfg, horizon_s)
    if warmup > 0.0:
        from .scenario import ScenarioError

        try:
            early = session_starts(cfg, warmup, (start_hour - warmup / 3600.0) % 24.0, rng, explicit_bursts=False)
        except ScenarioError:  # flash crowds overlapping past the draw bound in the warm-up only: start empty
            return arrival, session, number
        a, s, k = _session_turns(cfg, early - warmup, rng)
        ongoing = np.zeros(len(early), dtype=bool)
        ongoing[s[a >= 0.0]] = True  # only conversations with a turn in the run matter
        mask = ongoing[s]
        renumber = np.cumsum(ongoing) - 1 + (int(session.max()) + 1 if len(session) else 0)
        arrival = np.concatenate([arrival, a[mask]])
        session = np.concatenate([session, renumber[s[mask]]])
        number = np.concatenate([number, k[mask]])
    return arrival, session, number


def check_catalogue(cfg: Any, cat: "Catalogue") -> None:
    """The domain, and every language a session may draw, have intents in the catalogue.

    Checked up front for every language with weight, not when a run happens to draw it: a rare
    language used to pass a one-request preflight (or a run on one seed) and then fail the full
    run (or another seed), and an unknown domain was reported as a language mistake."""
    from .scenario import ScenarioError

    domains = sorted({i.domain for i in cat.intents})
    if cfg.domain is not None and cfg.domain not in domains:
        raise ScenarioError("traffic.domain", "a catalogue domain (" + ", ".join(domains) + "), or unset for all",
                            cfg.domain)
    drawn = [(f"traffic.tenants.{i}.languages", g.languages) for i, g in enumerate(cfg.tenants)
             if g.share > 0 and g.languages]
    if any(g.share > 0 and not g.languages for g in cfg.tenants):
        drawn.append(("traffic.languages", cfg.languages))
    for where, weights in drawn:
        for code in sorted(k for k, v in weights.items() if v > 0):
            if not cat.select(lang=code, domain=cfg.domain):
                langs = sorted({i.lang for i in cat.intents if cfg.domain is None or i.domain == cfg.domain})
                raise ScenarioError(where, f"languages with intents for domain {cfg.domain!r} in the catalogue "
                                    f"({', '.join(langs)})", code)


def generate_traffic(scenario: "Scenario", *, requests: int | None = None, hours: float | None = None,
                     seed: int = 0, catalogue: "Catalogue | None" = None) -> Traffic:
    """Draw the scenario's synthetic traffic: ``requests`` turns, or every turn within ``hours``."""
    from ..catalogue import load_catalogue

    cfg = scenario.traffic
    if requests is None and hours is None:
        requests, hours = cfg.requests, cfg.hours
    cat = catalogue or load_catalogue()
    check_catalogue(cfg, cat)
    start = scenario.start
    start_hour = start.hour + start.minute / 60.0 + start.second / 3600.0
    if hours is not None:
        horizon = hours * 3600.0
        arrival, session, number = _turn_times(cfg, horizon, start_hour, np.random.default_rng([seed, 11]))
        keep = np.flatnonzero((arrival >= 0.0) & (arrival < horizon))
        keep = keep[np.argsort(arrival[keep], kind="stable")]
    else:
        horizon = requests / cfg.rate_per_s * 1.1 + 60.0
        for attempt in range(40):  # grow the window until it surely holds the first `requests` turns
            arrival, session, number = _turn_times(cfg, horizon, start_hour,
                                                   np.random.default_rng([seed, 11, attempt]))
            inside = np.flatnonzero((arrival >= 0.0) & (arrival < horizon))
            if len(inside) >= requests:
                break
            horizon *= 1.5
        keep = inside[np.argsort(arrival[inside], kind="stable")][:requests]
        horizon = float(arrival[keep[-1]]) if len(keep) else horizon
    # a kept turn's earlier turns arrived earlier, so they are kept too — or, before 0, are the
    # context of a conversation already going when the run starts: drawn like any turn (``keep``
    # past its first ``n``), carried as history, never simulated
    n = len(keep)
    pre = np.flatnonzero(arrival < 0.0)
    if len(pre):
        kept_session = np.zeros(int(session.max()) + 1, dtype=bool)
        kept_session[session[keep]] = True
        pre = pre[kept_session[session[pre]]]
        pre = pre[np.argsort(arrival[pre], kind="stable")]
    keep = np.concatenate([keep, pre]).astype(np.int64)
    rng = np.random.default_rng([seed, 12])
    n_sessions = int(session.max()) + 1 if len(session) else 0
    tables = _Tables()
    groups = cfg.tenants
    shares = np.array([g.share for g in groups], dtype=float)
    group_of = rng.choice(len(groups), size=n_sessions, p=shares / shares.sum())
    member_u = rng.uniform(size=n_sessions)
    lang_u = rng.uniform(size=n_sessions)
    total = len(arrival)
    intent_u = rng.uniform(size=total)
    render_u = rng.uniform(size=(total, 4))
    jitter = rng.standard_normal(total)

    # sessions: tenant (Zipf inside its group) and language, drawn per group in bulk
    session_tenant = np.zeros(n_sessions, dtype=np.int32)
    session_lang = np.zeros(n_sessions, dtype=object)
    for gi, g in enumerate(groups):
        mask = group_of == gi
        ids = np.array([tables.tenant_id(name, g.plan) for name in g.tenant_names()], dtype=np.int32)
        cum = np.cumsum(zipf_probs(g.count, g.tenant_zipf_s))
        session_tenant[mask] = ids[np.minimum(np.searchsorted(cum, member_u[mask], side="right"), len(ids) - 1)]
        weights = g.languages or cfg.languages
        names = sorted(k for k, v in weights.items() if v > 0)
        lcum = np.cumsum(np.array([weights[k] for k in names], dtype=float))
        lcum /= lcum[-1]
        picks = np.minimum(np.searchsorted(lcum, lang_u[mask], side="right"), len(names) - 1)
        session_lang[mask] = np.array(names, dtype=object)[picks]

    # turns: only the kept ones, in arrival order (then the carried context)
    m = len(keep)
    sess = session[keep]
    lang = session_lang[sess]
    pool_intents: list = []
    intent_local = np.zeros(m, dtype=np.int64)  # index into pool_intents
    for code in sorted(set(lang.tolist())):
        chosen = sorted(cat.select(lang=code, domain=cfg.domain), key=lambda i: i.popularity_rank)
        rows = np.flatnonzero(lang == code)
        cum = np.cumsum(zipf_probs(len(chosen), cfg.zipf_s))
        offset = len(pool_intents)
        pool_intents.extend(chosen)
        intent_local[rows] = offset + np.minimum(np.searchsorted(cum, intent_u[keep[rows]], side="right"),
                                                 len(chosen) - 1)
    renderer = _Renderer(tables, pool_intents)
    codes = renderer.codes(intent_local, render_u[keep])
    unique, inverse = np.unique(codes, return_inverse=True)
    rendered = np.array([renderer.render(int(c)) for c in unique], dtype=np.int64).reshape(len(unique), 2)
    out_text = rendered[inverse.reshape(-1), 0].astype(np.int32)
    out_key = rendered[inverse.reshape(-1), 1].astype(np.int32)
    catalogue_ids = np.array([tables.intent_id(i.id, i.category, i.lang, i.action) for i in pool_intents],
                             dtype=np.int32)
    out_intent = catalogue_ids[intent_local] if m else np.zeros(0, dtype=np.int32)

    typical_answer = np.array([i.answer_tokens for i in pool_intents], dtype=float)
    typical_prompt = np.array([i.prompt_tokens for i in pool_intents], dtype=np.int64)
    sigma = cfg.answer_tokens_sigma
    if cfg.fixed_answer_tokens:
        out_answer = np.full(m, cfg.fixed_answer_tokens, dtype=np.int64)
    else:
        scale = np.exp(sigma * jitter[keep] - sigma * sigma / 2)  # lognormal jitter, mean kept
        out_answer = np.maximum(1, np.rint(typical_answer[intent_local] * scale)).astype(np.int64)
    base_prompt = np.full(m, cfg.fixed_prompt_tokens, dtype=np.int64) if cfg.fixed_prompt_tokens \
        else typical_prompt[intent_local]

    # conversation context: earlier turns of the session (user text + answer) add to the prompt,
    # each answer as the user got it — cut at ``max_tokens`` (every answering call of a turn, an
    # agent's second one too, carries the scenario's; a tool-choosing call's own bound applies to
    # a step the history does not keep) or at the deployment's ``max_output_tokens`` (the
    # provider's own limit, :func:`~llmlab.sim.scenario.answer_cap`).  Counted uncut, 3.5 % of
    # realtime-chat's answers (≈ 170 tokens over each) were billed again in every later turn at
    # a length no user saw.
    from .scenario import answer_cap

    text_tokens = np.array(tables.text_tokens, dtype=np.int64)
    delivered = np.minimum(out_answer, answer_cap(scenario))
    contribution = text_tokens[out_text] + delivered + 8
    position = np.arange(m)
    position[n:] -= m  # carried context (negative arrival) sorts before its session's turns in the run
    order = np.lexsort((position, sess))  # by session, then arrival
    sorted_sess = sess[order]
    first = np.ones(m, dtype=bool)
    first[1:] = sorted_sess[1:] != sorted_sess[:-1]
    csum = np.cumsum(contribution[order])
    start_of_group = np.maximum.accumulate(np.where(first, np.arange(m), 0))
    before = np.concatenate(([0], csum))[start_of_group]
    history = np.empty(m, dtype=np.int64)
    history[order] = csum - contribution[order] - before
    prev = np.full(m, -1, dtype=np.int32)
    prev_sorted = np.where(first, -1, np.concatenate(([-1], order[:-1])))
    prev[order] = prev_sorted
    prev = np.where(prev[:n] >= n, -1, prev[:n])  # a carried turn is context, not a row
    carried: dict[int, tuple[list[int], list[int]]] = {}
    for row in range(n, m):  # oldest first: ``pre`` is in arrival order
        texts, keys = carried.setdefault(int(sess[row]), ([], []))
        texts.append(int(out_text[row]))
        keys.append(int(out_key[row]))

    traffic = tables.build(arrival_s=arrival[keep[:n]], tenant=session_tenant[sess[:n]], text=out_text[:n],
                           key=out_key[:n], intent=out_intent[:n],
                           prompt_tokens=_int32((base_prompt + history)[:n]),
                           answer_tokens=_int32(out_answer[:n]), prev=prev,
                           session=sess[:n].astype(np.int32), horizon_s=max(horizon, 1e-9))
    traffic.carried = carried
    return traffic
