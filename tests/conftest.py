"""Shared fixtures.  Tests run offline: litellm reads its bundled price map, never the network."""
from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

from llmlab import Deployment, Gateway  # noqa: E402
from llmlab.scripted import FakeClock, ScriptedDriver  # noqa: E402
# here, not imported by each module: a session fixture imported into a module is that module's own,
# and the three-master cluster took 2 s to start per module
from redis_fixtures import redis_cluster  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _reset_litellm_callbacks():
    """litellm keeps callbacks in module globals; reset them so tests cannot leak into each other."""
    yield
    litellm = sys.modules.get("litellm")
    if litellm is not None:
        litellm.logging_callback_manager._reset_all_callbacks()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def driver(clock: FakeClock) -> ScriptedDriver:
    return ScriptedDriver(clock=clock)


THREE = [Deployment("gpt-4o", "gpt-4o"), Deployment("claude", "anthropic/claude-sonnet-4-20250514",
                                                    price_model="claude-sonnet-4-20250514"),
         Deployment("gpt-4o-mini", "gpt-4o-mini")]


@pytest.fixture
def make_gateway(clock: FakeClock, driver: ScriptedDriver):
    """Build a Gateway on the fake clock and scripted driver; keyword arguments override defaults."""

    def make(**kw) -> Gateway:
        kw.setdefault("router", __import__("llmlab").FixedRouter("gpt-4o"))
        kw.setdefault("fallbacks", {"gpt-4o": ["claude", "gpt-4o-mini"]})
        deployments = kw.pop("deployments", THREE)
        return Gateway(deployments, clock=clock, driver=driver, seed=kw.pop("seed", 0), **kw)

    return make
