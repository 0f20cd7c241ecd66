"""Test helpers: a fault-injecting OpenAI-compatible server (`FakeProvider`) and its plans.

테스트 도구: 장애를 주입하는 OpenAI 호환 가짜 서버.
"""

from .faults import Decision, Fault, FaultPlan, ModelRule
from .fake_provider import FakeProvider, NonLoopbackHostError, ProviderStats, RecordedRequest, cli_main

__all__ = ["Decision", "FakeProvider", "Fault", "FaultPlan", "ModelRule", "NonLoopbackHostError",
           "ProviderStats", "RecordedRequest", "cli_main"]
