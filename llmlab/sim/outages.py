"""Outage windows: scheduled by the scenario, or drawn from a status-page incident process.

Three kinds, because real incidents are rarely a clean "down":

* ``down`` — every call fails fast with 503 (or hangs until the client's timeout);
* ``errors`` — an elevated error rate on top of the baseline one;
* ``slow`` — latency multiplied (TTFT longer, tokens/s lower).

The incident process is Poisson with ``per_month`` incidents and lognormal durations fitted to
the published median and 90th percentile (``sigma = ln(p90/p50) / 1.2816``).  A run also sees
the incidents already in progress when it starts, so its share of outage time is the long
run's whatever its length.  Incidents belong to a *provider group* (``provider = "openai"``):
when OpenAI has an incident, every deployment on OpenAI shares it, which is exactly why a
fallback chain should cross providers.

Windows are drawn once per run from ``(seed, group)`` so the policy run and the baseline run
see the same outages (common random numbers).
"""
from __future__ import annotations

import math
import zlib
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:
    from .scenario import IncidentConfig, Scenario

SECONDS_PER_MONTH = 30 * 86_400.0
Z90 = 1.2815515655446004  # standard normal 90th percentile


@dataclass(frozen=True, slots=True)
class Window:
    """One outage interval, in simulated seconds since the start of the run."""

    target: str  # deployment name or provider group
    start_s: float
    end_s: float
    kind: str = "down"  # "down" | "errors" | "slow"
    error_rate: float = 0.5
    latency_factor: float = 3.0
    origin: str = "scheduled"  # or "incident"

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


def lognormal_params(p50: float, p90: float) -> tuple[float, float]:
    """``(mu, sigma)`` of a lognormal with the given median and 90th percentile."""
    return math.log(p50), max(0.0, math.log(p90 / p50) / Z90)


def draw_incidents(group: str, profile: "IncidentConfig", horizon_s: float,
                   rng: np.random.Generator) -> list[Window]:
    """Incidents of one provider group in force during ``[0, horizon_s)``, sorted by start.

    Those starting inside the run, plus those already in progress when it begins (their window
    starts at 0): the process has been running all along, so a short run sees its share of
    outage *time*, not only of outage starts (without them a one-hour run saw a fifth of it).
    A lognormal duration seen in progress is length-biased — lognormal with ``mu + sigma²`` —
    and the run begins at a uniform point of it.
    """
    if profile.per_month <= 0 or horizon_s <= 0:
        return []
    rate_s = profile.per_month / SECONDS_PER_MONTH
    mu, sigma = lognormal_params(profile.duration_p50_min * 60.0, profile.duration_p90_min * 60.0)
    kinds = sorted(profile.mix)
    weights = np.array([profile.mix[k] for k in kinds], dtype=float)
    weights /= weights.sum()
    out: list[Window] = []
    n = int(rng.poisson(rate_s * horizon_s))
    if n:
        starts = np.sort(rng.uniform(0.0, horizon_s, n))
        durations = rng.lognormal(mu, sigma, n)
        picks = rng.choice(len(kinds), size=n, p=weights)
        out = [Window(group, float(s), float(s + d), kinds[k], profile.error_rate, profile.latency_factor, "incident")
               for s, d, k in zip(starts, durations, picks)]
    # drawn after the ones above, so a seed's incidents inside the run are what they were
    m = int(rng.poisson(rate_s * math.exp(mu + sigma * sigma / 2.0)))  # in progress at 0: rate × mean duration
    if m:
        remaining = rng.lognormal(mu + sigma * sigma, sigma, m) * rng.uniform(0.0, 1.0, m)
        picks = rng.choice(len(kinds), size=m, p=weights)
        out = [Window(group, 0.0, float(r), kinds[k], profile.error_rate, profile.latency_factor, "incident")
               for r, k in zip(remaining, picks)] + out
    return out


def expected_unavailability(profile: "IncidentConfig") -> float:
    """Long-run share of failed calls caused by incidents (down counts 1, errors their rate, slow 0)."""
    mu, sigma = lognormal_params(profile.duration_p50_min * 60.0, profile.duration_p90_min * 60.0)
    mean_s = math.exp(mu + sigma * sigma / 2.0)
    share_of_time = profile.per_month * mean_s / SECONDS_PER_MONTH
    total = sum(profile.mix.values()) or 1.0
    severity = (profile.mix.get("down", 0.0) + profile.mix.get("errors", 0.0) * profile.error_rate) / total
    return share_of_time * severity


def scenario_windows(scenario: "Scenario", horizon_s: float, seed: int, speedup: float = 1.0) -> list[Window]:
    """Scheduled windows plus (if enabled) incidents for every provider group, sorted by start.

    ``speedup``: a trace replayed S times faster.  Its outages are in the trace's own time, as its
    arrivals are: scheduled windows and incidents (drawn at their monthly rate over the trace's
    real span) are compressed with it, so the same requests meet the same outage at any S.  Left
    in the run's compressed clock, a window at minutes 10–13 held 5 % of the example trace's
    turns at S = 1, 10 % at S = 2 and none at S = 10, and a month's incidents came S times rarer."""
    out = [Window(w.target, w.start_s, w.end_s, w.kind, w.error_rate, w.latency_factor)
           for w in scenario.outages.windows]
    if speedup != 1.0:
        horizon_s *= speedup
    if scenario.outages.incidents:
        profiles: dict[str, "IncidentConfig"] = {}
        for name in sorted(scenario.providers):
            p = scenario.providers[name]
            if p.incidents is not None and p.provider not in profiles:
                profiles[p.provider] = p.incidents  # one incident process per provider group
        for group, profile in sorted(profiles.items()):
            # the whole seed (below 2**64, llmlab.sim.run.MAX_SEED): cut to 32 bits, seeds 2**32 apart
            # drew the same incidents while their traffic and provider draws differed
            rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, zlib.crc32(group.encode()), 7])
            out += draw_incidents(group, profile, horizon_s, rng)
    if speedup != 1.0:
        out = [dataclasses.replace(w, start_s=w.start_s / speedup, end_s=w.end_s / speedup) for w in out]
    return sorted(out, key=lambda w: (w.start_s, w.target))


def windows_for(deployment: str, group: str, windows: Iterable[Window]) -> list[Window]:
    return [w for w in windows if w.target in (deployment, group)]


class OutageState:
    """The combined effect of the windows active at time ``t`` on one deployment.

    Refreshed lazily: the provider asks for it on each call, and it only recomputes when the
    simulated clock passes the next window boundary, so outages cost no SimPy events.
    """

    __slots__ = ("windows", "next_change", "down", "error_rate", "latency_factor")

    def __init__(self, windows: Iterable[Window]) -> None:
        self.windows = sorted(windows, key=lambda w: w.start_s)
        self.down = False
        self.error_rate = 0.0
        self.latency_factor = 1.0
        self.next_change = self.windows[0].start_s if self.windows else math.inf

    def refresh(self, t: float) -> None:
        active = [w for w in self.windows if w.active(t)]
        self.down = any(w.kind == "down" for w in active)
        self.error_rate = max([w.error_rate for w in active if w.kind == "errors"], default=0.0)
        self.latency_factor = max([w.latency_factor for w in active if w.kind == "slow"], default=1.0)
        upcoming = [w.start_s for w in self.windows if w.start_s > t] + [w.end_s for w in active]
        self.next_change = min(upcoming, default=math.inf)
