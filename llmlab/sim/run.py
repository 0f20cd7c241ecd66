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
import time
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .._validate import first_few
from ..request import Request
from ..tokens import max_message_tokens
from .build import build_embedder, build_gateway, build_semantic_cache, check_cache_options, embedder_named
from .driver import EmbedModel, SimDriver, Task
from .metrics import OUTAGE_KEYS, Recorder, per_answered_savings_pct, refused_savings_pct, requests_frame, summarise
from .outages import Window, scenario_windows, windows_for
from .parallel import baseline_beside, baseline_run, policy_and_baseline
from .progress import progress_bar
from .projection import TenantCaps
from .providers import GOLDEN, M64, MAX_DELAY_S, SimProvider, growth, mix64, shared_buckets, uniforms
from .replications import replicate
from .scenario import Scenario, ScenarioError, check_baseline_model, load_scenario
from .trace_time import TraceMonthBudgets, with_trace_ttl
from .traffic import Traffic, generate_traffic

if TYPE_CHECKING:
    import pandas as pd

    from ..gateway import Gateway

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

    def tenants(self) -> "pd.DataFrame":
        """One row per tenant, the dearest first: turns, spend (and the baseline's), budget
        refusals, availability, P95 latency, monthly cap (:func:`llmlab.sim.tenants.tenant_table`)."""
        from .tenants import tenant_table

        return tenant_table(self)

    def outage_table(self) -> "pd.DataFrame":
        """One row per outage window (the first run's when replicated): what it was, the turns
        that arrived during it and their service, and the baseline's
        (:func:`llmlab.sim.outage_table.outage_table`)."""
        from .outage_table import outage_table

        return outage_table(self)

    def __repr__(self) -> str:
        s = self.summary
        return (f"SimResult({self.scenario.name!r}, requests={s.get('requests')}, cost=${s.get('cost_usd', 0):.4f}, "
                f"savings={s.get('savings_pct', math.nan):.1f}%, p95={s.get('p95_latency_s', math.nan):.2f}s)")


def preflight(scenario: Scenario, *, requests: Any = None, hours: Any = None, seed: Any = 0,
              replications: Any = 1) -> None:
    """Every check a run makes before its first request, without running it: argument ranges,
    cache options, the catalogue's languages and domain, plans with a route (a one-request
    draw of the traffic; the whole window when hours size the run, which may hold no request;
    or the whole trace file).  Sweeps call it for every combination."""
    requests, hours, seed, _ = check_run_args(scenario, requests=requests, hours=hours, seed=seed,
                                              replications=replications)
    check_cache_options(scenario)
    check_gateway(scenario, seed)
    by_hours = hours is not None or (requests is None and scenario.traffic.hours is not None)
    whole = scenario.traffic.trace is not None or by_hours  # the window may hold no request at all
    make_traffic(scenario, requests=requests if whole else 1, hours=hours, seed=seed)
    drawn = 1 if whole else 0  # the seed's whole traffic is checked already: not drawn again
    check_every_seed(scenario, requests=requests, hours=hours, seed=seed + drawn, replications=replications - drawn)


def check_gateway(scenario: Scenario, seed: int) -> None:
    """Build the scenario's gateway once, unused: the rules only the gateway knows (a
    :class:`~llmlab.errors.ConfigError`) and its warnings (a hedge with no fallbacks to go to)."""
    semantic = None
    if scenario.gateway.cache.semantic:
        embedder_named(scenario.gateway.cache.embedder)
        semantic = build_semantic_cache(scenario, embedder_named("hashed"))  # the options' values
    build_gateway(scenario, lambda: 0.0, seed=seed, semantic_cache=semantic, simulated=True)


def warn_here(scenario: Scenario, seed: int, trace: str | None) -> None:
    """The configuration's warnings, given in this process before replications that may run in
    child processes (:mod:`~llmlab.sim.parallel`): a child's log goes to a file the caller sees
    only when the child fails, so ``simulate(replications=N)`` of a long run said nothing of a cap
    no tenant group makes or of a hedge with nowhere to go.  Each is said once per process: the
    runs that go on here do not repeat it.  (A trace's uncapped tenants are warned about where the
    trace is read to count its turns, here too.)"""
    if trace is None and scenario.traffic.trace is None:
        warn_unknown_caps(scenario)
    check_gateway(scenario, seed)


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


# ----------------------------------------------------------------------------- one run
class _Rows:
    """The traffic's per-turn integer columns as memoryviews over the same memory.

    A turn reads about ten of them.  Indexing a NumPy array makes a NumPy scalar, which the code
    then turned into an int or used as an index; indexing a memoryview gives the int at once
    (≈ a quarter of the work).  The traffic's own arrays are viewed, not copied (they are int32:
    as int64 copies they took 64 more bytes a turn, 640 MB at the 10M-turn limit); only a column
    that is not a native-order contiguous integer array is converted, once."""

    __slots__ = ("tenant", "text", "key", "intent", "prompt_tokens", "answer_tokens", "prev", "session")

    def __init__(self, traffic: Traffic) -> None:
        for name in self.__slots__:
            column = np.ascontiguousarray(getattr(traffic, name))
            if column.dtype.kind not in "iu" or not column.dtype.isnative:
                column = column.astype(np.int64)
            setattr(self, name, memoryview(column))


class _App:
    """The simulated application: builds each turn's requests and serves them through the gateway."""

    #: a trace's texts whose prompt needs a padded system message of their own (:meth:`_stand_in_system`)
    own_system: Mapping[int, tuple] = MappingProxyType({})

    def __init__(self, env: Any, scenario: Scenario, traffic: Traffic, gateway: "Gateway", driver: SimDriver,
                 recorder: Recorder, seed: int, tag: str) -> None:
        self.env = env
        self.t = traffic
        self.rows = _Rows(traffic)
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
        stays the same for every turn, as it would in the real application.

        Except, in a trace, for a text whose prompt is far longer than the rest (more than
        :data:`OWN_PADDING_TOKENS` beyond the median text's shortfall: a trace's row that carried
        a document or a history the log did not show), which gets a padded system message of its
        own (:attr:`own_system`) — as such a request would not share the others' context live
        either.  Padded into the shared message, one 60,000-token row of one tenant made every
        other request of the log reserve 60,000 tokens: another tenant's $0.05 cap refused all of
        its gpt-4o requests, and per-minute token limits were held as far."""
        t = self.t
        first = np.asarray(t.prev) < 0
        if t.carried:
            first &= ~np.isin(np.asarray(t.session), np.fromiter(t.carried, dtype=np.int64))
        billed = np.zeros(len(t.texts), dtype=np.int64)
        np.maximum.at(billed, np.asarray(t.text)[first], np.asarray(t.prompt_tokens)[first])
        needs = {}
        for text_id in np.flatnonzero(billed).tolist():
            sent = max_message_tokens(self.system + ({"role": "user", "content": t.texts[text_id]},))
            needs[text_id] = min(int(billed[text_id]), self.max_prompt) - sent
        # a trace's only: synthetic turns are the catalogue's questions behind one application's prompt
        bulk = (float(np.median(list(needs.values()))) + OWN_PADDING_TOKENS if needs and t.source != "synthetic"
                else math.inf)
        short = max([0] + [need for need in needs.values() if need <= bulk])
        self.own_system = {text_id: self._system_padded(need) for text_id, need in needs.items() if need > bulk}
        return self._system_padded(short) if short > 0 else self.system

    def _system_padded(self, short: int) -> tuple:
        """The system message with ``short`` tokens' worth of bytes more."""
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
        rows = self.rows
        msgs = self.own_system.get(rows.text[i], self.system) + extra
        if t.carried:  # a conversation going when the run started: its earlier turns first
            earlier = t.carried.get(rows.session[i])
            if earlier is not None:
                for text, key in zip(*earlier):
                    msgs += (self._user_message(text), {"role": "assistant", "content": t.answers[key]})
        if rows.prev[i] >= 0:
            for j in t.history(i):
                msgs += (self._user_message(rows.text[j]), {"role": "assistant", "content": t.answers[rows.key[j]]})
        return msgs + (self._user_message(rows.text[i]),)

    def arrivals(self) -> None:
        """Schedule the first arrival; each arrival schedules the next and starts its turn.

        No arrivals process and no ``simpy.Process`` per turn (:class:`~llmlab.sim.driver.Task`):
        a turn starts in the callback of its arrival's timeout, where the process's ``Initialize``
        event used to run it a step later at the same instant.  The order of every event is kept:
        the next arrival's timeout is made before the turn runs, turns arriving at one instant
        start in their order, and each delay is ``arrival - now`` at the previous arrival."""
        self._times = self.t.arrival_s.tolist()
        self._next = 0
        if self._times:
            self.env.timeout(max(0.0, self._times[0] - self.env.now)).callbacks.append(self._arrive)

    def _arrive(self, _event: Any) -> None:
        env = self.env
        times = self._times
        now = env._now
        first = i = self._next
        i += 1
        while i < len(times) and times[i] - now <= 0:  # arriving at this instant too
            i += 1
        self._next = i
        if i < len(times):
            env.timeout(times[i] - now).callbacks.append(self._arrive)
        for k in range(first, i):
            Task(self.guarded_turn(k)).start()

    def guarded_turn(self, i: int) -> Any:
        """A bug in the simulated application must not end the run: the turn is recorded as failed."""
        arrival = self.env._now
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
        arrival = env._now
        key = mix64(self.seed_key ^ (i * GOLDEN & M64))
        rows = self.rows
        intent_ix = rows.intent[i]
        intent = t.intents[intent_ix]
        answer_key = t.keys[rows.key[i]]
        prompt_tokens = rows.prompt_tokens[i]
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
        system = self.own_system.get(rows.text[i], self.system)
        if len(messages) > len(system) + len(extra) + 1:  # history: the padded system message covers the rest
            messages = self._padded(messages, prompt_tokens)
        tenant_ix = rows.tenant[i]
        tenant = t.tenants[tenant_ix]
        plan = t.tenant_plans[tenant_ix]
        meta = {"intent": intent, "category": t.intent_category[intent_ix], "lang": t.intent_lang[intent_ix],
                "prompt_tokens": prompt_tokens, "answer_tokens": rows.answer_tokens[i],
                "query_tokens": t.text_tokens[rows.text[i]], "answer_key": answer_key, "turn": i}
        tool = self.tool_actions.get(t.intent_action[intent_ix]) if self.tool_actions else None
        outcomes = []
        if tool is None:
            req = Request(messages, tenant, plan, params=self.params, metadata=meta, request_id=f"{self.tag}{i}",
                          cache=True)
            started = env._now
            outcomes.append((yield from self.driver.drive(self.pipeline.handle(req, stream=cfg.stream), key)))
        else:
            tc = self.tools
            plan_meta = {**meta, "answer_tokens": tc.plan_tokens, "step": "tool_call"}
            req = Request(messages, tenant, plan, params={**self.params, "max_tokens": tc.plan_tokens,
                                                          "tools": [tool]},
                          metadata=plan_meta, request_id=f"{self.tag}{i}-tool", cache=tc.cacheable)
            started = env._now
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
                started = env._now
                outcomes.append((yield from self.driver.drive(self.pipeline.handle(req2, stream=cfg.stream),
                                                              mix64(key ^ _TOOL_SALT))))
        self.in_flight -= 1
        self.rec.record(i, arrival, env._now, outcomes, started, intent, answer_key)


def _fixed_hourly(scenario: Scenario, names: list[str]) -> float:
    return sum(scenario.providers[n].hourly_cost_usd for n in names)


@lru_cache(maxsize=None)
def _environment() -> type:
    """A SimPy environment in which no single wait exceeds :data:`~llmlab.sim.providers.MAX_DELAY_S`
    (embedding latency, a retry's backoff, a provider that hangs until a huge timeout, an
    application step): the one place every simulated delay passes through.

    The simulator's hot paths (a turn, the gateway's clock, the providers) read the time as
    ``env._now``, the attribute SimPy's ``Environment.now`` property returns: the property is a
    Python call each time, ≈ 13 reads a request (1.4 % of a run's instructions)."""
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
        windows = run_windows(scenario, traffic, seed)
    # a compressed trace: cache lifetimes and budget months follow the log's own time (trace_time.py)
    scale = time_scale(scenario, traffic)
    served = with_trace_ttl(scenario, scale)
    on_trace_time = {"budget_backend": TraceMonthBudgets(epoch0, scale)} if scale != 1.0 and not baseline else {}
    semantic = None
    if not baseline and scenario.gateway.cache.semantic:
        semantic = build_semantic_cache(served, embed_model.embedder, embed_model.similarity_table())
    gateway = build_gateway(served, lambda: epoch0 + env._now, seed=seed, baseline=baseline, semantic_cache=semantic,
                            keep_records=keep_requests, simulated=True, **on_trace_time)
    names = [scenario.baseline_model] if baseline else list(scenario.providers)
    configs = {n: scenario.providers[n] for n in names}
    accounts = shared_buckets(configs)
    providers = {n: SimProvider(env, n, c, windows_for(n, c.provider, windows), accounts.get(c.rate_limit_group))
                 for n, c in configs.items()}
    driver = SimDriver(env, providers, embed_model if semantic is not None else None)
    rec = Recorder()
    rec.outcomes = gateway.ledger.records  # filled only when keep_requests (the per-request table)
    app = _App(env, scenario, traffic, gateway, driver, rec, seed, "b" if baseline else "r")
    app.arrivals()
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
    duration = max(rec.last_end(), traffic.horizon_s)
    hourly = _fixed_hourly(scenario, names)
    overshoot = 0.0
    caps = None
    if not baseline and gateway.pipeline.budget_policy is not None:
        policy = gateway.pipeline.budget_policy
        plan_of = traffic.latest_plans()  # a tenant that changed plan: the plan of its latest turn
        caps = TenantCaps(traffic.tenant, traffic.tenants, traffic.tenant_plans, policy.cap_for, plan_of)
        spent = getattr(gateway.budgets, "spend_by_month", lambda: {})()  # caps are monthly: month by month
        for (tenant, _month), amount in spent.items():
            cap = policy.cap_for(tenant, plan_of.get(tenant, ""))
            if cap is not None:
                overshoot += max(0.0, amount - cap)
    # standby capacity is paid for the real time the traffic spans: a trace replayed ``speedup``
    # times faster still stands for its own hours (a per-token bill does not shrink either); the
    # drain after the last arrival is the providers' own time, not the trace's, and is not scaled
    real_s = traffic.horizon_s * scale + (duration - traffic.horizon_s)
    summary = summarise(rec, fixed_cost_usd=hourly * real_s / 3600.0, fixed_cost_per_hour_usd=hourly,
                        turns_per_month=traffic_rate(scenario, traffic) * 86_400.0 * 30.0,
                        slo_s=scenario.slo.latency_s, slo_metric=scenario.slo.metric,
                        slo_percentile=scenario.slo.percentile,
                        budget_overshoot_usd=overshoot, duration_s=duration, caps=caps,
                        windows=windows)
    summary["internal_errors"] = driver.internal_errors
    summary["breaker_opens"] = {n: b.times_opened for n, b in gateway.pipeline.breakers.items() if b.times_opened}
    return rec, summary


#: a text whose prompt needs this many tokens of padding more than the median text's gets a
#: padded system message of its own (:meth:`_App._stand_in_system`)
OWN_PADDING_TOKENS = 1024

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
    span = traffic.horizon_s * time_scale(scenario, traffic)
    return len(traffic) / span if span >= MIN_PROJECTION_SPAN_S else math.nan


def time_scale(scenario: Scenario, traffic: Traffic) -> float:
    """Real seconds per simulated second: a trace's ``speedup`` (1 for synthetic traffic)."""
    return scenario.traffic.speedup if traffic.source != "synthetic" else 1.0


def run_windows(scenario: Scenario, traffic: Traffic, seed: int) -> list[Window]:
    """The run's outage windows in its own clock (a compressed trace's, see
    :func:`~llmlab.sim.outages.scenario_windows`)."""
    return scenario_windows(scenario, traffic.horizon_s, seed, time_scale(scenario, traffic))


def make_traffic(scenario: Scenario, *, requests: int | None = None, hours: float | None = None, seed: int = 0,
                 trace: str | None = None) -> Traffic:
    """Synthetic traffic, or the scenario's (or given) trace."""
    trace = trace or scenario.traffic.trace
    if trace is not None:
        from pathlib import Path

        from .trace import TraceError, load_trace, shipped_trace

        path = Path(trace)
        if not path.is_absolute() and not path.exists():
            # then relative to the scenario file, then a trace shipped with llmlab (example_trace.csv)
            beside = Path(scenario.source).parent / path if scenario.source else None
            shipped = shipped_trace(path)
            if beside is not None and beside.exists():
                path = beside
            elif shipped is not None:
                path = shipped
            elif beside is not None:
                raise ScenarioError("traffic.trace", f"a trace file: {str(path)!r} is neither in the current "
                                    f"folder ({Path.cwd()}) nor beside the scenario ({beside.parent}) nor "
                                    "shipped with llmlab")
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
        warn_uncapped(scenario, traffic)
        return traffic
    traffic = generate_traffic(scenario, requests=requests, hours=hours, seed=seed)
    check_plans(scenario, traffic)
    warn_unknown_caps(scenario)
    if len(traffic) == 0:
        field = "hours" if hours is not None else "traffic.hours"
        raise ScenarioError(field, f"a window in which at least one request arrives (raise {field} or "
                            "traffic.rate_per_s)", hours if hours is not None else scenario.traffic.hours)
    return traffic


def check_plans(scenario: Scenario, traffic: Traffic, field: str = "traffic.tenants") -> None:
    """A plan router must have a route for every plan in the traffic (else every request would
    fail), and a per-plan cap or rate limit of synthetic traffic must name one of its tenants'
    plans: one for ``fre`` (a typo of ``free``) was silently never applied."""
    r = scenario.gateway.router
    plans = set(traffic.tenant_plans)
    if r.type == "plan" and r.default is None:
        missing = sorted(plans - set(r.plans))
        if missing:
            # which tenants: a log's plan column may hold one stray value among thousands of rows
            users = sorted({t for t, p in zip(traffic.tenants, traffic.tenant_plans) if p == missing[0]})
            raise ScenarioError(field, f"plans with a route in gateway.router.plans ({', '.join(sorted(r.plans))}); "
                                f"no route for {', '.join(map(repr, missing))} (plan {missing[0]!r}: "
                                f"{len(users)} tenant{'' if len(users) == 1 else 's'}, {first_few(users, 3)})")
    if traffic.source != "synthetic":  # one scenario may serve several logs, not all with every plan
        return
    g = scenario.gateway
    keyed = {"gateway.rate_limits": g.rate_limits, "gateway.budget.plan_caps": g.budget.plan_caps if g.budget else {}}
    for where, by_plan in keyed.items():
        unknown = sorted(set(by_plan) - plans)
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", f"a plan of traffic.tenants ({', '.join(sorted(plans))})")


#: (trace, uncapped tenants) already warned about: once per process, not once per run of a sweep
_warned_uncapped: set[tuple[str, tuple[str, ...]]] = set()


def warn_uncapped(scenario: Scenario, traffic: Traffic) -> None:
    """Warn when a scenario with monthly caps replays a trace some of whose tenants none of them
    covers.  A group's ``monthly_budget_usd`` caps the tenants the group generates (``paid-001`` …),
    never a trace's, so b2b-saas replaying a log ran every one of its customers uncapped ("budget
    rejections 0") with nothing saying the caps had not applied.  Not an error: a log's tenants
    may be uncapped on purpose."""
    from .build import budget_policy

    policy = budget_policy(scenario)
    if policy is None:
        return
    plans = traffic.latest_plans()
    uncapped = tuple(sorted(name for name, plan in plans.items() if policy.cap_for(name, plan) is None))
    if not uncapped or (traffic.source, uncapped) in _warned_uncapped:
        return
    _warned_uncapped.add((traffic.source, uncapped))
    log.warning("traffic.trace: %d of the trace's %d tenants have no monthly cap (%s): a tenant group's "
                "monthly_budget_usd caps only the tenants it generates; cap a log's tenants with gateway.budget.caps, "
                "plan_caps or default_cap", len(uncapped), len(plans), first_few(uncapped, 5))


#: tenant names in gateway.budget.caps that no tenant group makes, already warned about
_warned_unknown_caps: set[tuple[str, ...]] = set()


def warn_unknown_caps(scenario: Scenario) -> None:
    """Warn when ``gateway.budget.caps`` names tenants no tenant group of synthetic traffic makes:
    such a cap is never applied in the run (a cap keyed by a plan no tenant has is an error, see
    :func:`check_plans`).  Not an error: the README's way to live traffic puts a team's real
    tenant names there, for the live gateway, beside the groups' generated ones."""
    b = scenario.gateway.budget
    if b is None or not b.caps:
        return
    made = {name for group in scenario.traffic.tenants for name in group.tenant_names()}
    unknown = tuple(sorted(set(b.caps) - made))
    if not unknown or unknown in _warned_unknown_caps:
        return
    _warned_unknown_caps.add(unknown)
    log.warning("gateway.budget.caps: no tenant group makes %s, so %s never applied in this run (the groups make "
                "tenants named like %s; a group's monthly_budget_usd caps each of its tenants)", first_few(unknown, 5),
                "this cap is" if len(unknown) == 1 else "these caps are",
                scenario.traffic.tenants[0].tenant_names()[0])


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


def _frame(cols: dict[str, np.ndarray], rec: Recorder, traffic: Traffic, windows: list[Window]) -> "pd.DataFrame":
    import pandas as pd

    from .metrics import CACHES, KINDS, during_windows

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
        "steps": cols["steps"], "downgraded": cols["downgraded"].astype(bool),
        "hedged": cols["hedge"] > 0, "hedge_won": cols["hedge"] == 2,
        "coalesced": cols["coalesced"].astype(bool),
        "during_outage": during_windows(cols["arrival_s"], windows),
    })


#: the most user requests one run may hold (≈ 20 min of simulation on one core; ≈ 1 GB of arrays)
MAX_REQUESTS = 10_000_000
#: the largest seed a run (or its replications' last) may use: the per-request draws key on it
#: modulo 2**64 (:class:`_App`), so seeds 2**64 apart would be one world
MAX_SEED = 2**64 - 1
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
    replications = _whole(f"{arg_prefix}replications", replications, 1, 1_000)
    seed = _whole(f"{arg_prefix}seed", seed, 0, MAX_SEED - (replications - 1))  # seeds seed … seed+n-1
    return requests, hours, seed, replications


def simulate(scenario: "Scenario | str", *, requests: int | None = None, hours: float | None = None, seed: int = 0,
             progress: bool | Callable[[int, int], None] = False, replications: int = 1, trace: str | None = None,
             baseline: bool | None = None, keep_requests: bool = True,
             overrides: Mapping[str, Any] | None = None, parallel: bool | None = None) -> SimResult:
    """Run a scenario: the gateway and the baseline over the same traffic, in virtual time.

    ``scenario`` is a preset name, a TOML path or a :class:`Scenario`; ``overrides`` are dotted
    keys applied to it first (``{"gateway.cache.semantic": False}``, as ``--set``).  ``trace``
    replays a request log (CSV or JSON lines, ``datasets/traces/README.md``) instead of synthetic traffic.
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
    :data:`~llmlab.sim.parallel.PARALLEL_MIN_TURNS` turns when two CPUs are usable, True always,
    False never.  Never raises for what happens *during* the run; configuration errors raise
    :class:`~llmlab.sim.scenario.ScenarioError` first.
    """
    if parallel is not None and not isinstance(parallel, bool):
        raise ScenarioError("parallel", "True, False or None (None: in parallel for long runs on two or more CPUs)",
                            parallel)
    if baseline is not None and not isinstance(baseline, bool):  # "no" ran the baseline: any text is truthy
        raise ScenarioError("baseline", "True, False or None (None: as the scenario's [baseline] enabled says)",
                            baseline)
    if not isinstance(keep_requests, bool):
        raise ScenarioError("keep_requests", "True or False", keep_requests)
    sc = load_scenario(scenario, overrides)
    if baseline:  # a disabled [baseline] was not checked with the scenario
        check_baseline_model(sc)
    requests, hours, seed, replications = check_run_args(sc, requests=requests, hours=hours, seed=seed,
                                                         replications=replications, trace=trace)
    if replications > 1:
        check_every_seed(sc, requests=requests, hours=hours, seed=seed, replications=replications, trace=trace)
        warn_here(sc, seed, trace)
        return replicate(sc, requests=requests, hours=hours, seed=seed, progress=progress, n=replications,
                          trace=trace, baseline=baseline, keep_requests=keep_requests, parallel=parallel)
    t0 = time.perf_counter()
    traffic = make_traffic(sc, requests=requests, hours=hours, seed=seed, trace=trace)
    embed = _embed_model(sc, traffic)
    windows = run_windows(sc, traffic, seed)
    do_baseline = sc.baseline.enabled if baseline is None else baseline
    base_summary = base_turns = None
    if do_baseline and baseline_beside(parallel, len(traffic)):
        rec, summary, (base_rec, base_summary) = policy_and_baseline(sc, traffic, seed, windows, embed,
                                                                      keep_requests, progress)
    else:
        bar = progress_bar(len(traffic), progress, "policy", phases=2 if do_baseline else 1)
        rec, summary = run_once(sc, traffic, seed=seed, windows=windows, keep_requests=keep_requests,
                                progress=bar.update_to if bar else None, embed_model=embed)
        if bar:
            bar.close()
        if do_baseline:
            bar = progress_bar(len(traffic), progress, "baseline", phases=2, phase=1)
            base_rec, base_summary = baseline_run(sc, traffic, seed, windows, progress=bar.update_to if bar else None)
            if bar:
                bar.close()
    if do_baseline:
        base_turns = _frame(base_rec.columns(), base_rec, traffic, windows)
        summary["baseline_cost_usd"] = base_summary["cost_usd"]
        summary["baseline_fixed_cost_usd"] = base_summary["fixed_cost_usd"]
        summary["baseline_projected_monthly_cost_usd"] = base_summary["projected_monthly_cost_usd"]
        summary["baseline_p95_latency_s"] = base_summary["p95_latency_s"]
        summary["baseline_ttft_p95_s"] = base_summary["ttft_p95_s"]
        summary["baseline_slo_violation_rate"] = base_summary["slo_violation_rate"]
        summary["baseline_availability"] = base_summary["availability"]
        for key in OUTAGE_KEYS:
            summary[f"baseline_{key}"] = base_summary[key]
        summary["savings_pct"] = (100.0 * (1.0 - summary["cost_usd"] / base_summary["cost_usd"])
                                  if base_summary["cost_usd"] > 0 else math.nan)
        summary["savings_per_answered_pct"] = per_answered_savings_pct(summary, base_summary)
    else:
        summary["baseline_cost_usd"] = math.nan
        summary["savings_pct"] = summary["savings_per_answered_pct"] = math.nan
    summary["scenario"] = sc.name
    summary["seed"] = seed
    summary["traffic"] = traffic.source
    summary["outage_windows"] = len(windows)
    cols = rec.columns()
    turns = _frame(cols, rec, traffic, windows)
    summary["refused_savings_pct"] = (refused_savings_pct(turns, base_turns, base_summary["cost_usd"])
                                      if base_turns is not None else math.nan)
    return SimResult(sc, summary, requests_frame(rec, traffic, cols) if keep_requests else _empty_frame(),
                     turns, base_summary, base_turns, windows, None, seed,
                     wall_s=time.perf_counter() - t0)


def _empty_frame() -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame()
