import logging

from llmlab import BudgetPolicy, FixedRouter, Gateway, PlanRouter
from llmlab.checklist import FAIL, PASS, UNKNOWN, checklist_dataframe, evaluate_checklist
from llmlab.guardrails import InjectionGuard, OutputFilterGuard, PIIMaskingGuard


def status(items, item):
    return next(i for i in items if i.item == item)


def test_default_gateway_fails_safety_and_cost_cap_items():
    items = evaluate_checklist(Gateway())
    assert len(items) == 15 and {i.category for i in items} == {"performance", "safety", "cost", "operations",
                                                                 "evaluation"}
    assert status(items, "PII masking").status == PASS  # on by default
    assert status(evaluate_checklist(Gateway(input_guards=())), "PII masking").status == FAIL
    assert status(items, "Prompt injection defence").status == FAIL
    assert status(items, "Spending cap").status == FAIL
    assert status(items, "Caching").status == PASS
    assert status(items, "Response latency P95 below target").status == UNKNOWN


def test_a_hardened_gateway_passes_them_and_evidence_decides_latency(caplog):
    gw = Gateway(router=PlanRouter(), input_guards=[PIIMaskingGuard(), InjectionGuard(policy="block")],
                 output_guards=[OutputFilterGuard()], budget=BudgetPolicy(default_cap=100.0))
    items = evaluate_checklist(gw, {"p95_latency_s": 2.4, "requests": 5000, "availability": 0.999,
                                    "injection_recall_on_attacks": 0.95})
    for name in ("PII masking", "Prompt injection defence", "Output filtering", "Spending cap", "Model tiering",
                 "Response latency P95 below target", "Concurrent request handling verified", "Red-team testing done"):
        assert status(items, name).status == PASS, name
    slow = evaluate_checklist(gw, {"p95_latency_s": 4.1}, p95_target_s=3.0)
    assert status(slow, "Response latency P95 below target").status == FAIL
    assert "4.10 s > target 3.00 s" in status(slow, "Response latency P95 below target").why


def test_mask_order_single_tier_and_single_provider_chains_fail():
    gw = Gateway(router=FixedRouter("gpt-4o"), fallbacks={"gpt-4o": ["gpt-4o-mini"]},
                 input_guards=[InjectionGuard(policy="block"), PIIMaskingGuard()])
    items = evaluate_checklist(gw)
    assert status(items, "PII masking").status == FAIL and "after InjectionGuard" in status(items, "PII masking").why
    assert status(items, "Model tiering").status == FAIL
    assert status(items, "Fallback chain").status == FAIL and "one provider" in status(items, "Fallback chain").why


def test_logging_item_follows_the_logger_configuration():
    logger = logging.getLogger("llmlab")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert status(evaluate_checklist(Gateway()), "Log collection and analysis").status == PASS
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    df = checklist_dataframe(evaluate_checklist(Gateway()))
    assert list(df.columns) == ["category", "item", "item_ko", "status", "why"] and len(df) == 15


def test_streaming_scenarios_are_judged_on_ttft():
    items = evaluate_checklist(Gateway(), {"p95_latency_s": 9.0, "ttft_p95_s": 2.1, "latency_metric": "ttft"})
    item = status(items, "Response latency P95 below target")
    assert item.status == PASS and item.why.startswith("TTFT P95 2.10 s")


def test_checklist_cli_with_a_scenario(capsys):
    from llmlab.checklist import cli_main

    assert cli_main(["--scenario", "b2b-saas", "--requests", "300", "--json"]) == 0
    import json

    items = json.loads(capsys.readouterr().out)
    assert len(items) == 15 and status_of(items, "Spending cap") == "pass"
    assert status_of(items, "Response latency P95 below target") in ("pass", "fail")  # evidence was computed


def status_of(items, name):
    return next(i["status"] for i in items if i["item"] == name)


def test_policy_refusals_are_not_unavailability_and_a_classifiers_own_deployment_needs_no_chain():
    items = evaluate_checklist(Gateway(), {"requests": 5000, "availability": 0.93, "service_availability": 1.0})
    assert status(items, "Concurrent request handling verified").status == PASS  # 7 % refused by budgets
    from llmlab import ClassifierRouter, Deployment

    deps = [Deployment("clf", "gpt-4o-mini"), Deployment("gpt-4o", "gpt-4o"),
            Deployment("claude", "anthropic/claude-sonnet-4-20250514", price_model="claude-sonnet-4-20250514")]
    routed = Gateway(deps, router=ClassifierRouter("clf", {"faq": "gpt-4o", "general": "gpt-4o", "complex": "claude"}),
                     fallbacks={"gpt-4o": ["claude"], "claude": ["gpt-4o"]})
    assert status(evaluate_checklist(routed), "Fallback chain").status == PASS


def test_checklist_cli_sees_the_scenarios_semantic_cache(capsys):
    from llmlab.checklist import cli_main

    assert cli_main(["--scenario", "b2b-saas", "--requests", "200", "--json"]) == 0
    import json

    items = json.loads(capsys.readouterr().out)
    assert "semantic" in next(i["why"] for i in items if i["item"] == "Caching")


def test_checklist_cli_refuses_requests_without_a_scenario(capsys):
    """--requests simulates for evidence only with --scenario; alone it was silently ignored."""
    from llmlab.checklist import cli_main

    assert cli_main(["--requests", "100"]) == 2  # one line and an exit code, not argparse's usage and SystemExit
    out, err = capsys.readouterr()
    assert out == "" and err == "llmlab checklist: error: --requests: only with --scenario (requests simulated for evidence)\n"


def test_the_load_item_names_the_availability_it_judged():
    """`llmlab simulate` prints availability 93 % for the run the checklist calls available at 100 %."""
    items = evaluate_checklist(Gateway(), {"requests": 5000, "availability": 0.93, "service_availability": 1.0})
    why = status(items, "Concurrent request handling verified").why
    assert "5,000 requests" in why and "service availability (policy refusals left out) 100.00%" in why
    items = evaluate_checklist(Gateway(), {"requests": 5000, "availability": 0.95})
    assert "availability 95.00% < 99 %" in status(items, "Concurrent request handling verified").why


def test_the_fallback_item_takes_a_simulated_outage_as_evidence():
    """Chains on paper pass; a simulated outage that the chains did not catch fails the item, and
    one they caught is named.  Budget refusals during the outage are not the chain's failure."""
    gw = Gateway()  # the defaults: multi-provider chains
    assert status(evaluate_checklist(gw), "Fallback chain").status == PASS
    caught = status(evaluate_checklist(gw, {"outage_turn_share": 0.15, "outage_service_availability": 1.0,
                                            "outage_availability": 0.9}), "Fallback chain")
    assert caught.status == PASS and caught.why.endswith("during outages (15.0% of the turns) 100.00% were served")
    missed = status(evaluate_checklist(gw, {"outage_turn_share": 0.2, "outage_service_availability": 0.6}),
                    "Fallback chain")
    assert missed.status == FAIL and "60.00% were served (< 99 %)" in missed.why
    for no_outage in ({"outage_turn_share": 0.0, "outage_service_availability": float("nan")},
                      {"availability": 0.5}):
        assert status(evaluate_checklist(gw, no_outage), "Fallback chain").why.startswith("every routed deployment")


def test_the_checklist_of_a_scenario_judges_its_fallbacks_on_its_scheduled_outage(capsys):
    from llmlab.checklist import cli_main
    from llmlab.sim import simulate

    summary = simulate("b2b-saas", requests=3000, seed=0, parallel=False).summary  # the outage: 600–780 s
    assert summary["outage_turn_share"] > 0 and summary["outage_service_availability"] > 0.99
    assert summary["outage_availability"] < summary["outage_service_availability"]  # budget refusals in it
    assert summary["baseline_outage_service_availability"] == 0.0  # no fallback: nothing served
    cli_main(["--scenario", "b2b-saas", "--requests", "3000"])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "Fallback chain" in line or "폴백 체인" in line)
    assert "during outages" in line and f"{summary['outage_service_availability']:.2%} were served" in line


def test_the_latency_item_says_the_p95_during_outages_when_the_evidence_has_it():
    ev = {"p95_latency_s": 9.0, "ttft_p95_s": 2.7, "latency_metric": "ttft", "slo_metric": "ttft",
          "slo_percentile": 95.0, "outage_turn_share": 0.19, "outage_slo_value_s": 3.26}
    item = status(evaluate_checklist(Gateway(), ev), "Response latency P95 below target")
    assert item.status == PASS and item.why == "TTFT P95 2.70 s ≤ target 3.00 s (during outages: 3.26 s)"
    other = {**ev, "slo_percentile": 99.0}  # the outage value is at another percentile: not said
    assert status(evaluate_checklist(Gateway(), other), "Response latency P95 below target").why.endswith("3.00 s")
    failed = {**ev, "outage_slo_value_s": float("inf")}
    assert status(evaluate_checklist(Gateway(), failed), "Response latency P95 below target").why.endswith(
        "(during outages: failed)")


def test_a_bare_model_name_is_served_by_its_family_not_by_openai():
    from llmlab.checklist import provider_of

    assert [provider_of(m) for m in ("claude-sonnet-4-20250514", "gpt-4o-mini", "o3-mini", "gemini-2.5-flash",
                                     "anthropic/claude-3-5-haiku", "azure/gpt-4o", "my-finetune")] == \
        ["anthropic", "openai", "openai", "gemini", "anthropic", "azure", "my-finetune"]


def test_a_chain_from_openai_to_a_bare_claude_name_crosses_providers():
    from llmlab import Deployment

    deps = [Deployment("gpt-4o", "gpt-4o", {"mock_response": "ok"}),
            Deployment("claude", "claude-sonnet-4-20250514", {"mock_response": "ok"})]
    gw = Gateway(deps, router=FixedRouter("gpt-4o"), fallbacks={"gpt-4o": ["claude"]})
    item = next(i for i in evaluate_checklist(gw) if i.item == "Fallback chain")
    assert "stay on one provider" not in item.why  # every bare name was taken for OpenAI's


def test_a_deployment_behind_its_own_server_is_its_servers_not_openais():
    """The README's setup of a self-hosted model (``model = "openai/<model>"`` with ``api_base``)
    is served by that server: counted as OpenAI's, b2b-saas's free chain gpt-4o-mini → fine-tune
    "stayed on one provider" and the item failed once a team followed the README."""
    import time

    from llmlab import Deployment
    from llmlab.checklist import deployment_provider
    from llmlab.sim import build_gateway, load_scenario

    live = {"providers.self-hosted-ft.model": "openai/support-ft-8b",
            "providers.self-hosted-ft.api_base": "http://ops:pw@10.0.0.7:8000/v1"}
    gw = build_gateway(load_scenario("b2b-saas", live), time.time, seed=0)
    assert deployment_provider(gw.deployments["self-hosted-ft"]) == "10.0.0.7"  # the host alone: no port, no password
    assert status(evaluate_checklist(gw), "Fallback chain").status == PASS
    # the provider's own endpoint is still that provider; two deployments on one server share its outages
    deps = [Deployment("gpt-4o", "gpt-4o"), Deployment("backup", "openai/gpt-4o", {"api_base": "https://api.openai.com/v1"}),
            Deployment("ft-a", "openai/ft", {"api_base": "http://gpu1:8000/v1"}, price_model="gpt-4o-mini"),
            Deployment("ft-b", "openai/ft", {"api_base": "http://GPU1:8001/v1"}, price_model="gpt-4o-mini")]
    for fallbacks in ({"gpt-4o": ["backup"]}, {"ft-a": ["ft-b"]}):
        primary = next(iter(fallbacks))
        gw = Gateway(deps, router=FixedRouter(primary), fallbacks=fallbacks)
        assert "stay on one provider" in status(evaluate_checklist(gw), "Fallback chain").why
