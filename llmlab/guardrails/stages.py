"""Pipeline stages that wrap the detectors in the `InputGuard` / `OutputGuard` protocol.

The detectors (`PIIMasker`, `InjectionDetector`, `OutputFilter`) work on one string; the stages
work on a request's messages or an answer and return verdicts. Keeping the two apart lets the
detectors be used alone (in a notebook, a batch job, the FP benchmark) with no pipeline types.

파이프라인 단계: 문자열 단위 탐지기를 메시지/답변 단위의 판정(verdict)으로 감싸는 얇은 층입니다.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from ..request import ROLES
from .base import (Finding, GuardrailConfigError, InputVerdict, OutputVerdict, check_has, check_name,
                   check_strings)
from .injection import InjectionDetector, Policy, check_policy, check_threshold
from .output_filter import OutputFilter
from .pii import _PLACEHOLDER, PIIMasker, may_contain_pii, unmask

__all__ = ["InjectionGuard", "OutputFilterGuard", "PIIMaskingGuard", "answer_masker", "unmask_answer"]

#: what ``OutputFilterGuard(**options)`` hands to :class:`OutputFilter`
FILTER_OPTIONS = tuple(p for p in inspect.signature(OutputFilter).parameters)


def _shift(f: Finding, index: int, part: int | None = None) -> Finding:
    where = f"message {index}" if part is None else f"message {index} part {part}"
    return Finding(f.kind, f"{where}: {f.detail}", f.start, f.end)


class PIIMaskingGuard:
    """Masks PII in every message's content, ``name`` and tool-call arguments; placeholders are
    consistent across messages.

    The restore map is merged over the whole conversation: the same address in the system
    prompt and in the user turn becomes the same `[EMAIL_1]`. Content given as a list of parts
    (OpenAI multimodal format) has its ``{"type": "text"}`` parts masked; other parts pass.
    A placeholder typed anywhere in the request (``[EMAIL_1]`` in a template) is numbered past,
    so no value takes it and the answer's ``[EMAIL_1]`` stays what the user wrote.
    """

    #: distinct PII-free texts remembered (the memo is cleared when full)
    MEMO_SIZE = 8192

    def __init__(self, masker: PIIMasker | None = None, *, name: str = "pii") -> None:
        if masker is not None:
            check_has("PIIMaskingGuard.masker", masker, "mask", "a PIIMasker (or any object with mask(text, reuse=…)), "
                                                               "or None for the default")
        self.masker = masker if masker is not None else PIIMasker()
        self.name = check_name("PIIMaskingGuard.name", name)
        self._clean: set[str] = set()  # texts in which no detector could match

    def __repr__(self) -> str:
        kinds = getattr(self.masker, "kinds", None)
        return f"PIIMaskingGuard(kinds={kinds!r})" if kinds is not None else f"PIIMaskingGuard({self.masker!r})"

    def _may_contain_pii(self, text: str) -> bool:
        """``may_contain_pii`` memoised per text.

        The same system prompt, conversation history and (bounded vocabulary of) questions come
        back on every request, so the regex scan was repeated on identical texts.  The decision
        depends on the text alone, so the memo changes no verdict.  Only texts in which nothing
        was found are remembered (see :meth:`_remember_clean`), so the guard never keeps
        PII-bearing text alive.
        """
        if text in self._clean:
            return False
        if may_contain_pii(text):
            return True
        self._remember_clean(text)
        return False

    def _remember_clean(self, text: str) -> None:
        memo = self._clean
        if len(memo) >= self.MEMO_SIZE:
            memo.clear()
        memo.add(text)

    def mask_text(self, text: str, reuse: Mapping[str, str] | None = None) -> str:
        """``text`` with its PII masked, numbering on from ``reuse`` (a request's restore map):
        for answers before they are cached or logged, since a model can repeat what it saw."""
        if not self._may_contain_pii(text):
            return text
        result = self.masker.mask(text, reuse=reuse)
        if not result.findings:  # digits that are no PII (an order number): scanned once, not per answer
            self._remember_clean(text)
        return result.text

    def check_input(self, messages: Sequence[Mapping[str, Any]]) -> InputVerdict:
        maybe = self._may_contain_pii
        for m in messages:
            content = m.get("content")
            # a name, tool calls (their JSON arguments) or content parts: the full pass below
            if not isinstance(content, str) or len(m) > 2 or maybe(content):
                break
        else:
            return InputVerdict(tuple(messages))  # the common case: no text could hold PII
        restore: dict[str, str] = {}
        findings: list[Finding] = []
        out: list[dict] = []
        # Placeholders typed into any text of the request (a template, an earlier masked answer kept
        # in the history) are numbered past, as the masker does within one text: "[EMAIL_1]" in the
        # first turn and an address in the last both went out as [EMAIL_1], and the answer's
        # "[EMAIL_1]" came back as the address where the user had written the placeholder.
        typed = {ph: ph for m in messages for text in _texts(m) if "[" in text for ph in _PLACEHOLDER.findall(text)}

        def mask(text: str, index: int, part: int | None = None) -> str:
            if not self._may_contain_pii(text):
                return text
            result = self.masker.mask(text, reuse={**typed, **restore} if typed else restore)
            if not result.findings:  # an order number, say: the next request skips the full scan
                self._remember_clean(text)
            restore.update(result.mapping)
            findings.extend(_shift(f, index, part) for f in result.findings)
            return result.text

        for i, message in enumerate(messages):
            content = message.get("content")
            new = dict(message)
            if isinstance(content, str):
                new["content"] = mask(content, i)
            elif isinstance(content, (list, tuple)):
                parts = list(content)
                for j, key, text in _text_parts(content):
                    parts[j] = {**parts[j], key: mask(text, i, j)}
                new["content"] = parts
            if isinstance(message.get("name"), str):
                new["name"] = mask(message["name"], i)
            calls = message.get("tool_calls")
            if isinstance(calls, (list, tuple)):  # an assistant turn's tool calls: their arguments are text
                new["tool_calls"] = [_with_arguments(c, mask(c["function"]["arguments"], i))
                                     if _arguments(c) is not None else c for c in calls]
            legacy = message.get("function_call")  # the older single-call form: {"name", "arguments"}
            if isinstance(legacy, Mapping) and isinstance(legacy.get("arguments"), str):
                new["function_call"] = {**legacy, "arguments": mask(legacy["arguments"], i)}
            out.append(new)
        if not findings:  # nothing masked: hand back the caller's messages untouched
            return InputVerdict(tuple(messages))
        return InputVerdict(tuple(out), None, tuple(findings), MappingProxyType(restore))


class InjectionGuard:
    """Scans user (and tool) messages for prompt injection.

    ``policy="flag"`` returns findings and lets the request through; ``policy="block"`` sets
    `blocked` when the highest message score reaches `threshold`. System and assistant turns
    are not scanned by default: the system prompt is ours, and assistant turns are the model's
    own words. Tool results *are* scanned — that is where indirect injection arrives.
    """

    def __init__(
        self,
        policy: Policy = "flag",
        threshold: float = 0.5,
        *,
        roles: Iterable[str] = ("user", "tool", "function"),
        detector: InjectionDetector | None = None,
        name: str = "injection",
    ) -> None:
        self.policy = check_policy("InjectionGuard", policy)
        self.threshold = check_threshold("InjectionGuard", threshold)
        self.roles = frozenset(check_strings("InjectionGuard.roles", roles, "chat roles from " + ", ".join(
            map(repr, sorted(ROLES))), options=sorted(ROLES), at_least_one=True))
        if detector is not None:
            check_has("InjectionGuard.detector", detector, "scan", "an InjectionDetector (or any object with "
                                                                   "scan(text)), or None for the default")
        self.detector = detector if detector is not None else InjectionDetector(policy=self.policy,
                                                                                threshold=self.threshold)
        self.name = check_name("InjectionGuard.name", name)

    def __repr__(self) -> str:
        """The policy first: ``"flag"`` (the default) lets every request through with findings."""
        return f"InjectionGuard(policy={self.policy!r}, threshold={self.threshold:g}, roles={sorted(self.roles)})"

    def check_input(self, messages: Sequence[Mapping[str, Any]]) -> InputVerdict:
        findings: list[Finding] = []
        worst = 0.0
        categories: dict[str, None] = {}
        for i, message in enumerate(messages):
            if message.get("role") not in self.roles:
                continue
            for j, _key, text in _text_parts(message.get("content")):
                report = self.detector.scan(text)
                if report.score >= self.threshold:
                    categories.update(dict.fromkeys(report.categories))
                worst = max(worst, report.score)
                findings.extend(_shift(f, i, j) for f in report.findings)
        blocked = None
        if self.policy == "block" and worst >= self.threshold:
            blocked = (f"prompt injection suspected (score {worst:.2f} >= {self.threshold:.2f}: "
                       f"{', '.join(categories)})")
        return InputVerdict(tuple(dict(m) for m in messages), blocked, tuple(findings))


def answer_masker(guard: Any) -> Callable[[str, Mapping[str, str]], str] | None:
    """How ``guard`` masks the PII in a text (an answer, numbering on from a restore map), or None
    when it masks none: a :class:`PIIMaskingGuard`, or a guard of one's own holding a ``masker``."""
    mask_text = getattr(guard, "mask_text", None)
    if mask_text is not None:
        return mask_text
    masker = getattr(guard, "masker", None)
    if masker is None:
        return None
    return lambda text, restore: masker.mask(text, reuse=restore).text


def _arguments(call: Any) -> str | None:
    """A tool call's JSON arguments (``{"function": {"arguments": "…"}}``), when it has them."""
    fn = call.get("function") if isinstance(call, Mapping) else None
    args = fn.get("arguments") if isinstance(fn, Mapping) else None
    return args if isinstance(args, str) else None


def _with_arguments(call: Mapping[str, Any], arguments: str) -> dict:
    return {**call, "function": {**call["function"], "arguments": arguments}}


#: content parts that carry text, and the key it is under: an assistant turn's ``refusal`` part is
#: the model's words as much as a ``text`` part (it was sent back to the provider unmasked)
TEXT_PARTS = {"text": "text", "refusal": "refusal"}


def _texts(message: Mapping[str, Any]) -> Iterable[str]:
    """Every text of ``message`` the PII guard masks: content (or its text parts), ``name``, and
    tool-call (or legacy function-call) arguments."""
    for _j, _key, text in _text_parts(message.get("content")):
        yield text
    if isinstance(message.get("name"), str):
        yield message["name"]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, (list, tuple)) else ():
        if (arguments := _arguments(call)) is not None:
            yield arguments
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping) and isinstance(legacy.get("arguments"), str):
        yield legacy["arguments"]


def _text_parts(content: Any) -> Iterable[tuple[int | None, str, str]]:
    """``(part index, key, text)`` of ``content``'s text (index ``None``: the content is the text)."""
    if isinstance(content, str):
        yield None, "", content
    elif isinstance(content, (list, tuple)):
        for j, p in enumerate(content):
            kind = p.get("type") if isinstance(p, Mapping) else None
            key = TEXT_PARTS.get(kind) if isinstance(kind, str) else None  # a list as the type: no text part
            if key is not None and isinstance(p.get(key), str):
                yield j, key, p[key]


class OutputFilterGuard:
    """Runs an `OutputFilter` on the answer; a ``"block"`` action becomes `blocked`.

    ``incremental``: a stream's text may be checked part by part as it grows (an `OutputFilter`'s
    regexes are cheap), so streamed answers keep streaming (see :mod:`llmlab.stream_guard`); a
    filter of one's own may not be, and its streams are held until it has seen the whole answer."""

    def __init__(self, output_filter: OutputFilter | None = None, *, name: str = "output_filter",
                 **filter_options: Any) -> None:
        for option, value in filter_options.items():  # an unknown one was a TypeError out of OutputFilter
            if option not in FILTER_OPTIONS:
                raise GuardrailConfigError(f"OutputFilterGuard.{option}", "an OutputFilter option: "
                                           + ", ".join(FILTER_OPTIONS), value)
        if output_filter is not None:
            if filter_options:
                raise GuardrailConfigError("OutputFilterGuard.output_filter", "an OutputFilter or its options "
                                           "(blocked_terms=…), not both",
                                           f"an OutputFilter and {sorted(filter_options)}")
            check_has("OutputFilterGuard.output_filter", output_filter, "check",
                      "an OutputFilter (or any object with check(text)), or None with the filter's options")
        self.filter = output_filter if output_filter is not None else OutputFilter(**filter_options)
        self.name = check_name("OutputFilterGuard.name", name)

    def __repr__(self) -> str:
        """Settings, and how many blocked terms (never the terms: a codename list is not for logs)."""
        f = self.filter
        if not isinstance(f, OutputFilter):
            return f"OutputFilterGuard({type(f).__name__})"
        return (f"OutputFilterGuard(blocked_terms={len(f.blocked_terms)}, term_action={f.term_action!r}, "
                f"detect_secrets={f.detect_secrets})")

    @property
    def incremental(self) -> bool:
        return isinstance(self.filter, OutputFilter)

    def check_output(self, text: str) -> OutputVerdict:
        report = self.filter.check(text)
        blocked = None
        if report.action == "block":
            blocked = "answer withheld by the output filter: " + "; ".join(
                f.detail for f in report.findings if f.kind == "output.blocked_term")
        return OutputVerdict(report.text, blocked, report.findings)


def unmask_answer(text: str, restore: Mapping[str, str]) -> str:
    """Put the original values back into an answer produced from masked messages."""
    return unmask(text, restore)
