"""What a scenario error tells a user who wrote the file from the README and the presets' comments.

Each refusal must name the field *and* what it accepts: a typo in a key was answered
"unknown field" with no hint of the right name, an unknown provider profile with the folders
searched but not the profiles in them, a language with no intents without the ones there are,
and an SLO percentile written as a fraction (0.95, as many tools take it) ran as P0.95 — met by
almost any run — instead of being refused.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from llmlab.sim import load_scenario, simulate
from llmlab.sim.fields import fields_of, scenario_fields
from llmlab.sim.scenario import ScenarioError


def message(overrides: dict) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario("b2b-saas", overrides)
    return str(info.value)


@pytest.mark.parametrize("key, value, guess, table, some", [
    ("traffic.reqests", 10, "requests", "traffic", ("rate_per_s", "tenants")),
    ("gateway.cache.treshold", 0.9, "threshold", "gateway.cache", ("semantic", "embedder")),
    ("providers.gpt-4o.ttft", 1.0, "ttft_s", "providers.gpt-4o", ("timeout_s", "tokens_per_s")),
    ("traffic.tenants.0.nme", "x", "name", "traffic.tenants.0", ("plan", "monthly_budget_usd")),
    ("slo.latency", 3, "latency_s", "slo", ("percentile", "metric")),
])
def test_an_unknown_field_names_the_nearest_field_and_what_its_table_takes(key, value, guess, table, some):
    text = message({key: value})
    assert text.startswith(f"{key}: unknown field (did you mean {guess!r}?); {table} takes "), text
    assert all(name in text for name in some), text


def test_an_unknown_field_with_nothing_close_still_lists_the_table():
    text = message({"gateway.router.zzz": 1})
    assert text.startswith("gateway.router.zzz: unknown field; gateway.router takes type, deployment, plans"), text
    assert message({"colour": "red"}).startswith("colour: unknown field; a scenario takes name, description")


def test_fields_of_agrees_with_the_fields_listing():
    listed = {f.key for f in scenario_fields()}
    for table in (("traffic",), ("providers", "any-name"), ("traffic", "tenants", "3"), ("gateway", "hedge")):
        pattern = ".".join(table).replace(".any-name", ".<name>").replace(".3", "[i]")
        assert {f"{pattern}.{name}" for name in fields_of(table)} == \
            {k for k in listed if k.startswith(pattern + ".") and "." not in k[len(pattern) + 1:].replace("[i]", "")}
    assert fields_of(("no", "such")) == []


def test_an_unknown_profile_lists_the_profiles_there_are():
    text = message({"providers.gpt-4o.profile": "openai-gpt4o"})
    assert text.startswith("providers.gpt-4o.profile: a provider profile (anthropic-claude-sonnet, "), text
    assert "openai-gpt-4o, openai-gpt-4o-mini" in text and text.endswith("(got 'openai-gpt4o')")
    assert "realtime-chat" not in text  # the preset beside b2b-saas is a scenario, not a profile


def test_a_language_without_intents_lists_the_languages_there_are():
    with pytest.raises(ScenarioError) as info:  # checked when the traffic is drawn, before the run
        simulate("b2b-saas", requests=1, overrides={"traffic.languages": {"fr": 1.0}}, baseline=False)
    text = str(info.value)
    assert text == "traffic.languages: languages with intents for domain 'saas' in the catalogue (en, ko) (got 'fr')"


@pytest.mark.parametrize("value", [0.95, 0.5, 10.0, 49.9])
def test_an_slo_percentile_below_the_median_is_refused(value):
    assert message({"slo.percentile": value}) == f"slo.percentile: must be >= 50.0 (got {value})"


def test_slo_percentiles_in_percent_still_load():
    for value in (50.0, 95, 99.9):
        assert load_scenario("b2b-saas", {"slo.percentile": value}).slo.percentile == value


def test_cli_says_it_in_one_line():
    done = subprocess.run([sys.executable, "-m", "llmlab", "simulate", "--scenario", "b2b-saas",
                           "--set", "gateway.router.plan={paid='gpt-4o'}"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "gateway.router.plan: unknown field (did you mean 'plans'?)" in done.stderr


@pytest.mark.parametrize("key, table", [("none", "a scenario"), ("gateway.int", "gateway"),
                                        ("gateway.cache.float", "gateway.cache")])
def test_an_unknown_key_spelled_like_a_pydantic_branch_is_named_too(key, table):
    """pydantic names a union's branches ("int", "none", "float") in an error's location, and
    those are dropped from the field's name — an unknown key so spelled was dropped with them,
    and the error itself failed (found by test_properties' override fuzz: ``{"none": None}``)."""
    assert message({key: 1}).startswith(f"{key}: unknown field; {table} takes "), message({key: 1})
