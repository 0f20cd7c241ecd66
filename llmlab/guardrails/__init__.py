"""Guardrails: PII masking, prompt-injection heuristics and output filtering (EN + KO).

Each guard is a detector that works on one string (`PIIMasker`, `InjectionDetector`,
`OutputFilter`) plus a pipeline stage that applies it to a request or an answer
(`PIIMaskingGuard`, `InjectionGuard`, `OutputFilterGuard`). Stages follow the `InputGuard` /
`OutputGuard` protocols in `base` and never perform I/O.

가드레일: 개인정보 마스킹, 프롬프트 인젝션 탐지, 출력 필터(영어·한국어).
"""

from .base import Finding, GuardrailConfigError, InputGuard, InputVerdict, OutputGuard, OutputVerdict
from .injection import InjectionDetector, InjectionReport
from .output_filter import OutputFilter, OutputReport
from .pii import MaskResult, PIIMasker, luhn_valid, unmask
from .stages import InjectionGuard, OutputFilterGuard, PIIMaskingGuard, unmask_answer

__all__ = [
    "Finding",
    "GuardrailConfigError",
    "InjectionDetector",
    "InjectionGuard",
    "InjectionReport",
    "InputGuard",
    "InputVerdict",
    "MaskResult",
    "OutputFilter",
    "OutputFilterGuard",
    "OutputGuard",
    "OutputReport",
    "OutputVerdict",
    "PIIMasker",
    "PIIMaskingGuard",
    "luhn_valid",
    "unmask",
    "unmask_answer",
]
