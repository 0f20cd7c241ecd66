"""The policy a scenario describes, served live: ``build_gateway`` on the real clock with the
scenario's own servers and keys, plus what a live service adds (shared state, a ledger sink)."""
from __future__ import annotations

import logging
import time

import pytest

from llmlab.budgets import MemoryBudgets
from llmlab.errors import ConfigError
from llmlab.ledger import Ledger
from llmlab.ratelimit import RateLimit
from llmlab.sim import ScenarioError, build_gateway, load_scenario, scenario_rate_limits, simulate

KEY = "sk-llmlab-test-0123456789abcdef"


def test_a_deployments_server_and_key_variable_become_its_call_parameters(monkeypatch):
    monkeypatch.setenv("LLMLAB_TEST_FT_KEY", KEY)
    sc = load_scenario("b2b-saas", {"providers.self-hosted-ft.api_base": "http://10.0.0.7:8000/v1",
                                    "providers.self-hosted-ft.api_key_env": "LLMLAB_TEST_FT_KEY"})
    gw = build_gateway(sc, time.time, seed=0)
    ft = gw.deployments["self-hosted-ft"]
    assert dict(ft.params) == {"api_base": "http://10.0.0.7:8000/v1", "api_key": KEY}
    assert KEY not in repr(ft) and KEY not in repr(gw.deployments)  # params never shown
    assert all(not d.params for name, d in gw.deployments.items() if name != "self-hosted-ft")  # litellm's defaults
    monkeypatch.delenv("LLMLAB_TEST_FT_KEY")  # unset: a placeholder, never litellm's own variable (see below)
    ft = build_gateway(sc, time.time, seed=0).deployments["self-hosted-ft"]
    assert dict(ft.params) == {"api_base": "http://10.0.0.7:8000/v1", "api_key": "unset-LLMLAB_TEST_FT_KEY"}


@pytest.mark.parametrize("field, value, says", [
    ("api_base", "ftp://10.0.0.7/v1", "http:// or https:// URL"),
    ("api_base", "http://host name/v1", "http:// or https:// URL"),
    ("api_key_env", "MY-KEY", "environment variable's name"),
    ("api_key_env", "9KEY", "environment variable's name"),
])
def test_a_bad_server_or_key_variable_is_refused_naming_the_field(field, value, says):
    with pytest.raises(ScenarioError) as info:
        load_scenario("b2b-saas", {f"providers.gpt-4o.{field}": value})
    assert info.value.field == f"providers.gpt-4o.{field}" and says in str(info.value)


def test_the_simulator_ignores_the_live_settings():
    live = {"providers.gpt-4o.api_base": "http://127.0.0.1:9/v1", "providers.gpt-4o.api_key_env": "NOT_SET_ANYWHERE"}
    common = {"gateway.cache.embedder": "hashed"}
    a = simulate("b2b-saas", requests=300, seed=1, progress=False, overrides=common).summary
    b = simulate("b2b-saas", requests=300, seed=1, progress=False, overrides={**common, **live}).summary
    assert {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in b.items() if k != "wall_s"}


def test_a_scenario_gateway_serves_through_its_own_server(caplog):
    from llmlab.testing import FakeProvider

    with FakeProvider(reply="Your invoice is attached.") as fp:
        sc = load_scenario("b2b-saas", {"providers.gpt-4o.api_base": fp.base_url,
                                        "providers.gpt-4o.api_key_env": "LLMLAB_TEST_LIVE_KEY"})
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LLMLAB_TEST_LIVE_KEY", KEY)
            gw = build_gateway(sc, time.time, seed=0)
        with caplog.at_level(logging.DEBUG):
            out = gw.complete("Where is my invoice for March?", tenant="paid-001", plan="paid")
        served = [r.model for r in fp.requests]
    assert out.ok and out.deployment == "gpt-4o" and out.text == "Your invoice is attached."
    assert served == ["gpt-4o"]  # the paid plan's route reached the scenario's server
    assert KEY not in caplog.text


def test_live_additions_replace_what_the_scenario_would_set():
    ledger_seen = []
    shared = MemoryBudgets()
    ledger = Ledger(keep=False, sink=ledger_seen.append)
    a = build_gateway("b2b-saas", time.time, seed=0, budget_backend=shared, ledger=ledger, log_content=True)
    b = build_gateway("b2b-saas", time.time, seed=0, budget_backend=shared)
    assert a.ledger is ledger and a.budgets is shared and b.budgets is shared  # two replicas, one budget store
    assert a.pipeline.log_content is True and b.pipeline.log_content is False
    assert a.pipeline.budget_policy is not None  # the scenario's caps are kept
    baseline = build_gateway("b2b-saas", time.time, seed=0, baseline=True, ledger=ledger)
    assert baseline.ledger is ledger


def test_an_unknown_gateway_keyword_is_a_typed_error_naming_it():
    with pytest.raises(ConfigError) as info:
        build_gateway("b2b-saas", time.time, seed=0, budget_backnd=MemoryBudgets())
    assert info.value.field == "gateway_kwargs.budget_backnd" and "budget_backend" in str(info.value)
    with pytest.raises(ConfigError) as info:  # set by the scenario and build_gateway's own arguments
        build_gateway("b2b-saas", time.time, seed=0, prices={"gpt-4o": (1.0, 2.0)})
    assert info.value.field == "gateway_kwargs.prices"
    with pytest.raises(ConfigError) as info:  # a bad value of a keyword passed on: named as passed, not as a scenario field
        build_gateway("b2b-saas", time.time, seed=0, cache_ttl_s=-1.0)
    assert not isinstance(info.value, ScenarioError) and info.value.field == "cache_ttl_s"


def test_shared_rate_limits_get_the_scenarios_limits():
    sc = load_scenario("b2b-saas", {"gateway.rate_limits": {"free": {"rpm": 30, "tpm": 40000},
                                                            "paid": {"rpm": 600}}})
    limits = scenario_rate_limits(sc)
    assert limits == {"free": RateLimit(30, 40000), "paid": RateLimit(600, None)}
    assert build_gateway(sc, time.time, seed=0).pipeline.rate_limiter.per_plan == limits
    assert scenario_rate_limits("realtime-chat") == {}


@pytest.mark.parametrize("field, value, secret", [
    ("api_key_env", "sk-proj-" + KEY, KEY),  # the key pasted where its variable's name belongs
    ("api_key_env", "3f9a1c0b7d2e4f6a8b9c0d1e2f3a4b5c", "3f9a1c0b7d2e4f6a8b9c0d1e2f3a4b5c"),  # Azure-style, not key-shaped
    ("api_base", "https://ops:" + KEY + "@llm.internal/v1 ", KEY),  # a password in a URL with a stray space
])
def test_a_refused_key_or_server_setting_never_repeats_the_secret(field, value, secret):
    """The message goes to a terminal, a CI log or an application's log: it names the field and
    what to put there, never the credential (the message repeated the raw value)."""
    with pytest.raises(ScenarioError) as info:
        load_scenario("b2b-saas", {f"providers.gpt-4o.{field}": value})
    err = info.value
    assert err.field == f"providers.gpt-4o.{field}" and secret not in str(err) and secret not in repr(err.value)
    assert ("not the key itself" in str(err)) if field == "api_key_env" else ("http:// or https:// URL" in str(err))


def test_semantic_cache_true_serves_the_cache_the_lab_tuned():
    """Built by hand as the README said (``SemanticCache(get_embedder(...))``), the live cache took
    the embedder's calibrated threshold (0.47 for hashed) and a day's TTL, not the scenario's."""
    from llmlab.cache.embedders import get_embedder
    from llmlab.cache.semantic import SemanticCache
    from llmlab.sim.build import build_semantic_cache

    tuned = {"gateway.cache.embedder": "hashed", "gateway.cache.threshold": 0.8, "gateway.cache.ttl_s": 120.0,
             "gateway.cache.capacity": 50, "gateway.cache.options": {"candidates": 3, "last_resort_threshold": 0.6}}
    sc = load_scenario("b2b-saas", tuned)
    lab = build_semantic_cache(sc, get_embedder("hashed"))  # what the simulator serves with (less its vector table)
    live = build_gateway(sc, time.time, seed=0, semantic_cache=True).pipeline.semantic_cache
    settings = ("threshold", "last_resort_threshold", "ttl_s", "capacity", "candidates")
    assert [getattr(live, k) for k in settings] == [getattr(lab, k) for k in settings] == [0.8, 0.6, 120.0, 50, 3]
    assert SemanticCache(get_embedder("hashed")).threshold != 0.8  # the hand-built cache drifted
    assert type(live.embedder).__name__ != "EmbeddingMemo"  # live texts' vectors are not written to disk
    assert build_gateway(sc, time.time, seed=0, baseline=True, semantic_cache=True).pipeline.semantic_cache is None
    with pytest.raises(ScenarioError) as info:  # no semantic cache in the scenario: said, not silently none
        build_gateway(load_scenario("b2b-saas", {"gateway.cache.semantic": False}), time.time, seed=0,
                      semantic_cache=True)
    assert info.value.field == "gateway.cache.semantic"


def test_an_unset_key_variable_never_sends_another_variables_key_to_the_deployments_server(monkeypatch, caplog):
    """``api_key_env`` naming a variable that is not set (a typo, a secret not mounted) left litellm
    to its own variable for the route: a self-hosted ``openai/…`` model's server received the
    organisation's OPENAI_API_KEY.  Now it gets a placeholder naming the variable, and the build
    warns naming the field."""
    from canned_http import CannedServer, send_json

    class Server(CannedServer):
        authorizations: list = []

        def reply_to(self, handler, body):
            self.authorizations.append(handler.headers.get("Authorization"))
            send_json(handler, 200, {}, {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": "Sure."}}],
                                         "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})

    org_key = "sk-org-openai-" + KEY
    monkeypatch.setenv("OPENAI_API_KEY", org_key)
    monkeypatch.delenv("LLMLAB_TEST_TYPO_KEY", raising=False)
    server = Server()
    try:
        sc = load_scenario("b2b-saas", {"providers.self-hosted-ft.model": "openai/support-ft-8b",
                                        "providers.self-hosted-ft.api_base": server.base_url + "/v1",
                                        "providers.self-hosted-ft.api_key_env": "LLMLAB_TEST_TYPO_KEY",
                                        "gateway.router.plans": {"paid": "self-hosted-ft", "free": "self-hosted-ft"}})
        with caplog.at_level(logging.WARNING, logger="llmlab.sim"):
            gw = build_gateway(sc, time.time, seed=0)
        out = gw.complete("Where is my invoice?", tenant="paid-001", plan="paid")
    finally:
        server.close()
    assert out.ok and server.authorizations == ["Bearer unset-LLMLAB_TEST_TYPO_KEY"]
    assert "providers.self-hosted-ft.api_key_env names LLMLAB_TEST_TYPO_KEY, which is not set" in caplog.text
    assert org_key not in caplog.text


def test_shared_backends_that_drop_the_labs_cache_ttl_or_rate_limits_are_warned_about(caplog):
    """``from_url(url)`` builds its store with an hour's TTL and its limiter with no limits: passed
    to build_gateway as the README shows, they silently replaced b2b-saas's 24 h cache and a
    scenario's per-plan limits.  The stand-ins below are what from_url returns without Redis."""
    from llmlab.cache.store import MemoryStore
    from llmlab.ratelimit import RateLimiter

    sc = load_scenario("b2b-saas", {"gateway.rate_limits": {"free": {"rpm": 30}}})
    with caplog.at_level(logging.WARNING, logger="llmlab.sim"):
        build_gateway(sc, time.time, seed=0, cache_store=MemoryStore(ttl_s=3600.0), rate_limiter=RateLimiter())
    assert "gateway_kwargs.cache_store keeps entries 3600 s, the scenario's gateway.cache.ttl_s 86400 s" in caplog.text
    assert "gateway_kwargs.rate_limiter does not hold the scenario's gateway.rate_limits (free)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmlab.sim"):  # carried over: nothing to say
        build_gateway(sc, time.time, seed=0, cache_store=MemoryStore(ttl_s=86400.0),
                      rate_limiter=RateLimiter(per_plan=scenario_rate_limits(sc)))
    assert "gateway_kwargs" not in caplog.text


def test_a_simulation_of_a_scenario_with_an_unset_key_variable_warns_of_nothing(monkeypatch, caplog):
    """The simulator builds the same gateway and sends nothing: the live-only warning about an
    unset ``api_key_env`` was printed by every `llmlab simulate` of a scenario written for live use."""
    from llmlab.sim import simulate

    monkeypatch.delenv("LLMLAB_TEST_SIM_ONLY_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="llmlab.sim"):
        result = simulate("b2b-saas", requests=50, seed=0, baseline=False, parallel=False,
                          overrides={"providers.gpt-4o.api_key_env": "LLMLAB_TEST_SIM_ONLY_KEY"})
    assert result.summary["requests"] == 50
    assert not [r for r in caplog.records if "LLMLAB_TEST_SIM_ONLY_KEY" in r.getMessage()]
