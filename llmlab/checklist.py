"""The lecture's production checklist, evaluated against a gateway configuration.

Fifteen items in five categories (performance, safety, cost, operations, evaluation).  Each is
checked from what the gateway is actually configured to do — its guards, caches, router,
fallback chains and budgets — and from *evidence* a team has gathered (a simulation summary,
a load test, a red-team run).  An item is ``pass``, ``fail`` (with what is missing) or
``unknown`` (it needs evidence the configuration cannot provide), never ticked by hand.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

    from .gateway import Gateway

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    category: str
    item: str
    item_ko: str
    status: str
    why: str


def _guard_named(guards: Sequence[Any], class_name: str) -> Any | None:
    return next((g for g in guards if type(g).__name__ == class_name), None)


def _perf_p95(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    metric = ev.get("latency_metric", "latency")  # streaming products judge time to first token
    p95 = ev.get("ttft_p95_s") if metric == "ttft" else ev.get("p95_latency_s")
    if p95 is None:
        return UNKNOWN, "no latency evidence: run `llmlab simulate` (p95_latency_s) or a load test"
    label = "TTFT P95" if metric == "ttft" else "P95"
    if p95 <= target:
        return PASS, f"{label} {p95:.2f} s ≤ target {target:.2f} s" + _during_outages(ev, metric)
    return FAIL, (f"{label} {p95:.2f} s > target {target:.2f} s: tighten timeouts, stream, route to faster models"
                  + _during_outages(ev, metric))


def _during_outages(ev: Mapping[str, Any], metric: str) -> str:
    """The same P95 over the turns a simulated outage hit, when the evidence has it: a run's P95
    dilutes a drill (said, not judged: the item is the lecture's whole-service P95)."""
    during = ev.get("outage_slo_value_s")
    same = ev.get("slo_metric", "latency") == metric and ev.get("slo_percentile", 95.0) == 95.0
    if not same or not ev.get("outage_turn_share") or during is None or during != during:
        return ""
    return f" (during outages: {'failed' if during == float('inf') else f'{during:.2f} s'})"


def _perf_concurrency(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    n = ev.get("max_concurrent_requests") or ev.get("requests")
    # budget and rate-limit refusals are the policy working, not the service failing under load
    # (named as such: `llmlab simulate` prints the stricter `availability` next to it)
    service = "service_availability" in ev
    availability = ev.get("service_availability", ev.get("availability"))
    what = "service availability (policy refusals left out)" if service else "availability"
    if n is None:
        return UNKNOWN, "no load evidence: run the simulator, or benchmarks/live_load.py from llmlab's repository"
    if availability is not None and availability < 0.99:
        return FAIL, f"{n:,} requests tested but {what} {availability:.2%} < 99 %"
    return PASS, f"{n:,} requests exercised" + (f", {what} {availability:.2%}" if availability is not None else "")


def _perf_tokens(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    return PASS, "the ledger records prompt/completion tokens and cost for every request (Ledger.to_dataframe)"


def _safety_injection(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    guard = _guard_named(gw.pipeline.input_guards, "InjectionGuard")
    if guard is None:
        return FAIL, "no InjectionGuard in input_guards"
    policy = getattr(guard, "policy", "?")
    return (PASS if policy == "block" else FAIL,
            f"InjectionGuard policy={policy!r}" + ("" if policy == "block" else ": flags only, nothing is blocked"))


def _safety_output(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    guards = gw.pipeline.output_guards
    return (PASS, f"output guards: {', '.join(type(g).__name__ for g in guards)}") if guards else \
        (FAIL, "no output guard (blocked terms, leaked secrets)")


def _safety_pii(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    if _guard_named(gw.pipeline.input_guards, "PIIMaskingGuard") is None:
        return FAIL, "no PIIMaskingGuard: PII would reach providers, caches and logs"
    first = type(gw.pipeline.input_guards[0]).__name__
    if first != "PIIMaskingGuard":
        return FAIL, f"PII masking runs after {first}: mask first so nothing sees raw PII"
    return PASS, "PII masked before anything is sent, cached or logged"


def _cost_cap(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    policy = gw.pipeline.budget_policy
    if policy is None or (not policy.caps and not policy.plan_caps and policy.default_cap is None):
        return FAIL, "no monthly budget cap (BudgetPolicy)"
    scope = "every tenant" if policy.default_cap is not None else "listed tenants/plans only"
    return PASS, f"monthly caps for {scope}, on_exceed={policy.on_exceed!r}"


def _cost_tiering(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    targets = gw.router.targets()
    prices = {gw.prices.price(gw.deployments[t].price_key).output_per_token for t in targets}
    if len(prices) < 2:
        return FAIL, f"the router ({type(gw.router).__name__}) only reaches one price tier: {sorted(targets)}"
    return PASS, f"{type(gw.router).__name__} routes across {len(prices)} price tiers"


def _cost_cache(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    kinds = [k for k, on in (("exact", gw.pipeline.exact_cache is not None),
                             ("semantic", gw.pipeline.semantic_cache is not None)) if on]
    return (PASS, f"caches: {', '.join(kinds)}") if kinds else (FAIL, "no cache configured")


def _ops_logs(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    logger = logging.getLogger("llmlab")
    if logger.hasHandlers() and logger.getEffectiveLevel() <= logging.INFO:
        return PASS, "structured per-request records are emitted on the 'llmlab' logger"
    return FAIL, "no handler at INFO for the 'llmlab' logger: request records are not collected"


#: a bare model name's provider, by its family (litellm routes a name without ``provider/`` by it)
_FAMILIES = (("anthropic", ("claude",)), ("gemini", ("gemini",)), ("mistral", ("mistral", "mixtral", "codestral")),
             ("cohere", ("command",)),
             ("openai", ("gpt-", "chatgpt", "o1", "o3", "o4", "text-embedding", "davinci", "babbage")))


def provider_of(model: str) -> str:
    """Who serves ``model``: its ``provider/`` prefix, else its family (``claude-…`` is Anthropic's);
    an unknown bare name is its own.  Every bare name counted as OpenAI's, so a chain from gpt-4o
    to claude-sonnet-4 "stayed on one provider"."""
    if "/" in model:
        return model.split("/", 1)[0]
    bare = model.lower()
    for provider, prefixes in _FAMILIES:
        if bare.startswith(prefixes):
            return provider
    return bare


#: the public endpoints of providers whose routes a bare name also reaches (an ``api_base`` set to one
#: of them is that provider, not a server of its own)
_PROVIDER_HOSTS = {"api.openai.com": "openai", "api.anthropic.com": "anthropic", "api.mistral.ai": "mistral",
                   "generativelanguage.googleapis.com": "gemini", "api.cohere.com": "cohere",
                   "api.cohere.ai": "cohere"}


def deployment_provider(dep: Any) -> str:
    """Who serves deployment ``dep``: the host of its ``api_base`` when it has one, else
    :func:`provider_of` its model.  A self-hosted model behind an OpenAI-compatible server is
    named ``openai/<model>`` (litellm's route for that protocol) and served by its own server:
    taken for OpenAI's, the README's own setup of b2b-saas's fine-tune made the chain from
    gpt-4o-mini to it "stay on one provider"."""
    from urllib.parse import urlsplit

    base = (getattr(dep, "params", None) or {}).get("api_base")
    if isinstance(base, str) and base:
        try:
            host = (urlsplit(base).hostname or "").lower()
        except ValueError:  # a malformed URL: the litellm call will say so; judge by the model
            host = ""
        if host:
            return _PROVIDER_HOSTS.get(host, host)
    return provider_of(dep.model)


def _ops_fallback(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    from .routing import answer_targets

    targets = answer_targets(gw.router)  # a classifier's own deployment needs no chain: its router has a default
    short = [t for t in sorted(targets) if len(gw.pipeline.chain_for(t)) < 2]
    if short:
        return FAIL, f"no fallback for {', '.join(short)}"
    providers = {t: {deployment_provider(d) for d in gw.pipeline.chain_for(t)} for t in targets}
    single = [t for t, p in providers.items() if len(p) < 2]
    if single:
        return FAIL, f"chains of {', '.join(sorted(single))} stay on one provider: an outage takes them all down"
    configured = "every routed deployment has a multi-provider fallback chain, retries and a circuit breaker"
    # evidence that the chains catch an outage: the service of the turns a simulated outage hit
    # (policy refusals left out: a tenant over its cap is not an outage the chain should catch)
    share, served = ev.get("outage_turn_share"), ev.get("outage_service_availability")
    if not share or served is None or served != served:
        return PASS, configured
    seen = f"during outages ({share:.1%} of the turns) {served:.2%} were served"
    if served < 0.99:
        return FAIL, f"chains configured, but {seen} (< 99 %): the fallbacks share the outage or give up too soon"
    return PASS, f"{configured}; {seen}"


def _ops_ab(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    if ev.get("ab_testing"):
        return PASS, "A/B infrastructure reported in evidence"
    return FAIL, "no traffic splitting: compare policies offline with llmlab.sim.sweep, online needs a split router"


def _eval_pipeline(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    if ev.get("eval_pipeline"):
        return PASS, "automatic evaluation reported in evidence"
    if type(gw.router).__name__ == "CascadeRouter":
        return UNKNOWN, "a cascade acceptance check grades answers online; an offline evaluation suite is not shown"
    return UNKNOWN, "not visible from the gateway: provide evidence {'eval_pipeline': True}"


def _eval_redteam(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    recall = ev.get("injection_recall_on_attacks")
    if recall is None:
        return UNKNOWN, "no red-team evidence: run benchmarks/guardrails_fp.py from llmlab's repository"
    return (PASS if recall >= 0.9 else FAIL), f"injection recall on the attack set {recall:.0%}"


def _eval_feedback(gw: "Gateway", ev: Mapping[str, Any], target: float) -> tuple[str, str]:
    if ev.get("feedback_path"):
        return PASS, "user feedback path reported in evidence"
    return UNKNOWN, "not visible from the gateway: provide evidence {'feedback_path': True}"


CHECKS: list[tuple[str, str, str, Callable[..., tuple[str, str]]]] = [
    ("performance", "Response latency P95 below target", "응답 지연 시간 P95 < 목표값", _perf_p95),
    ("performance", "Concurrent request handling verified", "동시 요청 처리 능력 확인", _perf_concurrency),
    ("performance", "Token usage monitoring in place", "토큰 사용량 모니터링 구축", _perf_tokens),
    ("safety", "Prompt injection defence", "프롬프트 인젝션 방어", _safety_injection),
    ("safety", "Output filtering", "출력 필터링 구현", _safety_output),
    ("safety", "PII masking", "PII 마스킹 적용", _safety_pii),
    ("cost", "Spending cap", "비용 상한선 설정", _cost_cap),
    ("cost", "Model tiering", "모델 계층화 적용", _cost_tiering),
    ("cost", "Caching", "캐싱 구현", _cost_cache),
    ("operations", "Log collection and analysis", "로그 수집 및 분석", _ops_logs),
    ("operations", "Fallback chain", "폴백 체인 구성", _ops_fallback),
    ("operations", "A/B testing infrastructure", "A/B 테스트 인프라", _ops_ab),
    ("evaluation", "Automatic evaluation pipeline", "자동 평가 파이프라인 구축", _eval_pipeline),
    ("evaluation", "Red-team testing done", "레드팀 테스트 완료", _eval_redteam),
    ("evaluation", "User feedback collection path", "사용자 피드백 수집 경로 확보", _eval_feedback),
]


def evaluate_checklist(gateway: "Gateway", evidence: Mapping[str, Any] | None = None,
                       p95_target_s: float = 3.0) -> list[ChecklistItem]:
    """Check every item against ``gateway`` and ``evidence`` (e.g. a simulation summary dict)."""
    ev = dict(evidence or {})
    out = []
    for category, item, item_ko, check in CHECKS:
        try:
            status, why = check(gateway, ev, p95_target_s)
        except Exception as exc:  # a custom router or guard must not break the report
            status, why = UNKNOWN, f"could not evaluate: {type(exc).__name__}: {exc}"
        out.append(ChecklistItem(category, item, item_ko, status, why))
    return out


def checklist_dataframe(items: Sequence[ChecklistItem]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame([asdict(i) for i in items])


def cli_main(argv: Sequence[str] | None = None) -> int:
    from .cli_args import OneLineParser, parse_or_refuse, refuse

    prog = "llmlab checklist"
    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", help="evaluate the gateway of a scenario preset or file and simulate it for evidence")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests to simulate for evidence (with --scenario; default: the scenario's own run, "
                             "so scheduled drills are in the evidence)")
    parser.add_argument("--json", action="store_true", help="print the items as one JSON list")
    args = parse_or_refuse(parser, prog, list(argv or []))
    if args is None:
        return 2
    if args.scenario is not None and not args.scenario.strip():  # "" ran as if no scenario were given
        return refuse(prog, "--scenario: a preset name or a TOML file (got an empty string)")
    if args.requests is not None and not args.scenario:  # it would be ignored: nothing is simulated
        return refuse(prog, "--requests: only with --scenario (requests simulated for evidence)")
    evidence: dict[str, Any] = {}
    target = 3.0
    if args.scenario:
        import time

        from .errors import ConfigError
        from .sim import build_gateway, load_scenario, simulate

        try:
            scenario = load_scenario(args.scenario)
            # the scenario's gateway as it would serve, semantic cache included
            gateway = build_gateway(scenario, time.time, seed=0, semantic_cache=scenario.gateway.cache.semantic or None)
            evidence = dict(simulate(scenario, requests=args.requests, seed=0).summary)
        except ConfigError as exc:  # a one-line message naming the field, as `llmlab simulate` prints
            print(f"llmlab checklist: error: {exc}".splitlines()[0], file=sys.stderr)
            return 2
        if scenario.slo.percentile == 95.0:
            target = scenario.slo.latency_s
            evidence["latency_metric"] = scenario.slo.metric
    else:
        from .gateway import Gateway

        gateway = Gateway()
    items = evaluate_checklist(gateway, evidence, target)
    if args.json:
        print(json.dumps([asdict(i) for i in items], ensure_ascii=False))
        return 0
    mark = {PASS: "✓", FAIL: "✗", UNKNOWN: "?"}
    for i in items:
        print(f"{mark[i.status]} [{i.category:<11}] {i.item:<40} {i.why}")
    return 0
