"""Gateway.warm_up(): after it, the first live call builds nothing lazily on the event loop.

Without it (or with the old warm-up, which only imported litellm) the first ``acomplete`` held
the loop ≈ 0.2 s and the first ``astream`` ≈ 0.5 s while litellm imported modules, built pydantic
models and loaded tiktoken encodings.  Timing on this shared VM is noise, so the tests count that
lazy work instead, in fresh processes (it is built once per process): the measurement is
``benchmarks/first_call_lag.py``'s, which also reports the lag.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from llmlab import Deployment, FixedRouter, Gateway, warmup
from llmlab.live import import_litellm
from llmlab.testing import FakeProvider

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / "benchmarks" / "first_call_lag.py"


def start_first_call(mode: str, level: str, url: str) -> subprocess.Popen:
    """A fresh process measuring its first ``mode`` call after ``level`` ("imported": litellm
    imported, all the old warm_up did; "warmed": warm_up()); its JSON is the benchmark child's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, str(BENCHMARK), "--child", mode, level, url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def result_of(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def first_calls() -> dict:
    """The first acomplete and astream after warm_up(), and a first astream after importing
    litellm only (which shows the counting sees lazy work), each in its own process, at once."""
    with FakeProvider() as fp:
        procs = {(mode, level): start_first_call(mode, level, fp.base_url)
                 for mode, level in (("acomplete", "warmed"), ("astream", "warmed"), ("astream", "imported"))}
        return {key: result_of(proc) for key, proc in procs.items()}


def test_with_litellm_only_imported_the_first_call_builds_on_the_loop(first_calls):
    imported = first_calls["astream", "imported"]  # what the warmed runs must not show
    assert imported["first_builds"] and imported["first_imports"] and imported["first_encodings"]


@pytest.mark.parametrize("mode", ["acomplete", "astream"])
def test_after_warm_up_the_first_call_imports_builds_and_loads_nothing(first_calls, mode):
    warmed = first_calls[mode, "warmed"]
    assert warmed["first_imports"] == []
    assert warmed["first_builds"] == []
    assert warmed["first_encodings"] == []


#: a fresh process: Anthropic's, Azure's and Bedrock's wire formats (the tests' local servers),
#: warm_up(), then each route's first acomplete and astream (Bedrock's server answers JSON only),
#: with the lazy work each did
OTHER_ROUTES = """
import asyncio, json, sys
from first_call_lag import Lazy
from anthropic_wire import AnthropicServer, answer
from azure_wire import AzureServer, chunks, completion
from canned_http import Either
from test_live_bedrock_wire import Bedrock, converse
from llmlab import FixedRouter, Gateway

anthropic, azure, bedrock = AnthropicServer(), AzureServer(), Bedrock()
gw = Gateway([anthropic.deployment("claude", (200, {}, answer("Hello", " there"))),
              azure.deployment("gpt4o-prod", (200, {}, Either(completion("Hello there"), chunks("Hello", " there")))),
              bedrock.deployment((200, {}, converse("Hello there")))],
             router=FixedRouter("claude"))
gw.warm_up()
lazy = Lazy()

async def first(model, stream, question):
    lazy.start()
    if stream:
        response = gw.astream(question, model=model)
        async for _ in response:
            pass
        ok = response.outcome.ok
    else:
        ok = (await gw.acomplete(question, model=model)).ok
    return {"ok": ok, **lazy.seen()}

async def main():
    calls = [(m, h) for m in ("claude", "gpt4o-prod") for h in ("acomplete", "astream")] + [("bedrock-claude", "acomplete")]
    return {f"{model} {how}": await first(model, how == "astream", f"question {i}") for i, (model, how) in enumerate(calls)}

print(json.dumps(asyncio.run(main())))
"""


def test_after_warm_up_anthropic_azure_and_bedrock_first_calls_import_build_and_load_nothing():
    paths = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests"), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    done = subprocess.run([sys.executable, "-c", OTHER_ROUTES], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    firsts = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(firsts) == 5
    for call, seen in firsts.items():
        assert seen == {"ok": True, "imports": [], "builds": [], "encodings": []}, call


@pytest.fixture
def fresh_warm_up(monkeypatch):
    """warm_up's memory of warmed models emptied (other tests warmed some in this process), with
    a count of the deployments it runs through litellm."""
    runs: list[str] = []
    original = warmup._run_offline
    monkeypatch.setattr(warmup, "_warmed", set())
    monkeypatch.setattr(warmup, "_run_offline", lambda dep, *loop: (runs.append(dep.name), original(dep, *loop)))
    return runs


def test_warm_up_sends_nothing_and_litellm_callbacks_do_not_see_it(fresh_warm_up):
    litellm = import_litellm()
    from litellm.integrations.custom_logger import CustomLogger

    seen: list[str] = []

    class Recorder(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(kwargs["messages"][-1]["content"])

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(kwargs["messages"][-1]["content"])

    litellm.callbacks = [Recorder()]  # the conftest resets litellm's callbacks after each test
    with FakeProvider() as fp:
        gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test"})],
                     router=FixedRouter("gpt-4o"))
        gw.warm_up()
        assert fresh_warm_up == ["gpt-4o"] and fp.stats.total == 0 and len(gw.ledger) == 0
        assert gw.complete("a real question").ok and fp.stats.total == 1
        deadline = time.monotonic() + 10  # litellm logs success on a worker thread: wait for the real call's
        while "a real question" not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "a real question" in seen and "warm up" not in seen


def test_warm_up_is_idempotent_works_inside_a_running_loop_and_survives_a_route_litellm_refuses(fresh_warm_up):
    deployments = [Deployment("gpt-4o", "openai/gpt-4o", {"mock_response": "hi"}),
                   Deployment("copy", "openai/gpt-4o", {"mock_response": "hi"}),  # same route: warmed once
                   Deployment("odd", "no-such-provider/model", price_model="gpt-4o")]
    gw = Gateway(deployments, router=FixedRouter("gpt-4o"))

    async def serving() -> None:
        assert gw.warm_up() is gw  # sync, inside a running loop: asyncio.run would refuse
        assert await gw.awarm_up() is gw

    asyncio.run(serving())
    gw.warm_up()
    assert fresh_warm_up == ["gpt-4o", "odd"]
    assert gw.complete("hello").text == "hi"


def test_warm_up_warns_of_a_deployment_litellm_cannot_route(fresh_warm_up, caplog):
    """A fallback whose model litellm cannot route (the b2b-saas preset's ``self-hosted/…`` as
    shipped) fails every call, and before only in the outage it was there for: warm-up's offline
    calls already meet the refusal, which they logged at DEBUG."""
    deployments = [Deployment("gpt-4o", "openai/gpt-4o", {"mock_response": "hi"}),
                   Deployment("ft", "self-hosted/support-ft-8b", price_model="gpt-4o-mini")]
    with caplog.at_level("WARNING", logger="llmlab"):
        Gateway(deployments, router=FixedRouter("gpt-4o")).warm_up()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "deployment ft's model 'self-hosted/support-ft-8b'" in warned[0]


def test_awarm_up_on_a_loop_that_served_leaves_litellm_s_logging_worker_to_it(fresh_warm_up):
    """litellm binds its logging worker to the loop of its latest async call: the warm-up's async
    calls on a fresh loop took it from the serving loop, whose pending worker task was destroyed
    ("Task was destroyed but it is pending!" through the loop's exception handler)."""
    from llmlab.testing import FakeProvider

    problems: list[str] = []

    def deployment(base_url: str, name: str) -> Deployment:
        return Deployment(name, f"openai/{name}", {"api_base": base_url, "api_key": "sk-test"},
                          price_model="gpt-4o-mini")

    async def serving() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: problems.append(context["message"]))
        async with FakeProvider() as fp:
            serving_gw = Gateway([deployment(fp.base_url, "a")], router=FixedRouter("a"), cache=False)
            assert (await serving_gw.acomplete("a real question", max_tokens=5)).ok
            added = Gateway([deployment(fp.base_url, "b")], router=FixedRouter("b"), cache=False)
            assert await added.awarm_up() is added
            gc.collect()
            await asyncio.sleep(0.05)
            assert (await added.acomplete("another question", max_tokens=5)).ok

    asyncio.run(serving())
    assert fresh_warm_up == ["b"] and problems == []


def test_complete_models_builds_a_deferred_model_and_the_models_its_fields_hold():
    class Leaf(BaseModel):
        model_config = ConfigDict(defer_build=True)
        value: int

    class Middle(BaseModel):
        model_config = ConfigDict(defer_build=True)
        leaves: list[Leaf]

    class Root(BaseModel):
        model_config = ConfigDict(defer_build=True)
        middle: Middle | None = None

    assert not any(m.__pydantic_complete__ for m in (Root, Middle, Leaf))
    assert warmup.complete_models(Root) == 3
    assert all(m.__pydantic_complete__ for m in (Root, Middle, Leaf))
    assert warmup.complete_models(Root) == 0
