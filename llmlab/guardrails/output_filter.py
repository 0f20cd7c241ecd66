"""Output filtering: blocked terms and leaked secrets in a model's answer.

Why filter outputs at all when inputs are guarded: models repeat what is in their context —
a key pasted into a support ticket, a credential in a retrieved document, a system prompt that
quotes an internal codename. The output filter is the last place to catch that, and it runs
*before* the cache fill so a leaked secret is never served again from the cache.

Two kinds of rule, two reactions:

* **secrets** (OpenAI-style ``sk-…`` keys, ``AKIA…`` AWS access keys, PEM private keys, JWTs,
  GitHub/Slack/Google tokens, ``api_key=…``/``password: …`` assignments) are *redacted*: the
  answer stays useful, the value becomes ``[REDACTED:openai_key]``. Obvious placeholders
  (``YOUR_API_KEY``, ``<token>``, ``${API_KEY}``, ``****``) are left alone, because answers that
  *explain* how to configure a key are normal and useful;
* **blocked terms** (operator-configured) *block* the whole answer by default
  (``term_action="redact"`` replaces just the term). Matching is case-insensitive and
  word-boundary aware, so "class" does not hit "classic". Korean terms match as whole words
  followed optionally by a particle (폭탄 matches "폭탄을", "폭탄이" but not "시한폭탄" or "폭탄주"),
  since Korean attaches particles to nouns without a space.

출력 필터: 금지어(대소문자 무시, 단어 경계 인식 — 한국어는 조사 허용)가 있으면 차단하고, 유출된
비밀값(API 키, AWS 키, 개인키, JWT 등)은 `[REDACTED:종류]`로 가립니다. `YOUR_API_KEY` 같은
자리표시자는 설명용 답변에 흔하므로 가리지 않습니다.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .base import Finding, GuardrailConfigError, check_flag, check_strings

__all__ = ["OutputFilter", "OutputReport", "SECRET_PATTERNS", "TERM_ACTIONS"]

TERM_ACTIONS = ("block", "redact")
Action = Literal["allow", "redact", "block"]

_B = r"(?<![A-Za-z0-9_\-])"  # left boundary for token-like secrets
_E = r"(?![A-Za-z0-9_\-])"  # right boundary

# (name, pattern, group): `group` is the part to redact (0 = whole match). Specific patterns
# first: when a generic `api_key=...` overlaps an `sk-...` key, the specific name wins.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*\Z)"), 0),
    ("openai_key", re.compile(_B + r"sk-(?:proj-|svcacct-|admin-|ant-(?:api\d\d-)?)?[A-Za-z0-9_\-]{20,}" + _E), 0),
    ("aws_access_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"), 0),
    ("github_token", re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})" + _E), 0),
    ("slack_token", re.compile(_B + r"xox[abprs]-[A-Za-z0-9-]{10,}" + _E), 0),
    ("google_api_key", re.compile(_B + r"AIza[0-9A-Za-z_\-]{35}" + _E), 0),
    ("jwt", re.compile(_B + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}" + _E), 0),
    ("credential_assignment", re.compile(
        r"(?i)(?<![A-Za-z0-9])(?:api[_\- ]?key|apikey|secret(?:[_\-]?key)?|client[_\-]?secret|access[_\-]?token"
        r"|auth[_\-]?token|bearer|password|passwd|pwd|aws_secret_access_key"
        r"|비밀번호|패스워드|api\s*키|시크릿|토큰)"
        r"[\"']?\s*(?:[:=]|:=|=>)\s*[\"']?([^\s\"',;}{)(]{8,})"), 1),
)

_PLACEHOLDER_VALUE = re.compile(
    r"(?i)^(?:<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|your[_\-].*|.*[_\-]here|x{4,}|\*{3,}|\.{3,}"
    r"|os\.environ.*|getenv.*|env\(.*|process\.env.*|\[REDACTED.*|(?:example|changeme|placeholder|dummy|test)\w*)$"
)

_JOSA = r"(?:은|는|이|가|을|를|의|에|에서|에게|께|한테|로|으로|와|과|도|만|까지|부터|이나|나|랑|이랑|들|이다|입니다|이에요|예요|요)"


def _is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3" or "\u3131" <= ch <= "\u318e"


def _term_pattern(term: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(w) for w in term.split())
    left = r"(?<![0-9A-Za-z_\uac00-\ud7a3])" if _is_hangul(term[0]) else r"(?<![0-9A-Za-z_])"
    if _is_hangul(term[-1]):
        right = rf"(?={_JOSA}?(?![0-9A-Za-z_\uac00-\ud7a3]))"
    else:
        right = r"(?![0-9A-Za-z_])"
    return re.compile(left + body + right, re.IGNORECASE)


class _Hit(NamedTuple):
    start: int
    end: int
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class OutputReport:
    """What to do with an answer, the text to use, and why."""

    action: Action
    text: str
    findings: tuple[Finding, ...]


class OutputFilter:
    """Checks answers for blocked terms and leaked secrets.

    `blocked_message` replaces the text when the action is ``"block"``, so a caller that
    forgets to look at `action` still cannot show the blocked answer.
    """

    def __init__(
        self,
        blocked_terms: Iterable[str] = (),
        detect_secrets: bool = True,
        *,
        term_action: Literal["block", "redact"] = "block",
        blocked_message: str = "The answer was withheld by the output filter.",
    ) -> None:
        if term_action not in TERM_ACTIONS:
            raise GuardrailConfigError("OutputFilter.term_action", TERM_ACTIONS, term_action)
        terms = check_strings("OutputFilter.blocked_terms", blocked_terms)
        self.blocked_terms = tuple(t.strip() for t in terms)
        self.detect_secrets = check_flag("OutputFilter.detect_secrets", detect_secrets)
        self.term_action = term_action
        if not isinstance(blocked_message, str):  # it replaces a blocked answer's text
            raise GuardrailConfigError("OutputFilter.blocked_message", "a string", blocked_message)
        self.blocked_message = blocked_message
        self._term_patterns = tuple(_term_pattern(t) for t in self.blocked_terms)

    def _secrets(self, text: str) -> list[_Hit]:
        hits: list[_Hit] = []
        for name, pattern, group in SECRET_PATTERNS:
            for m in pattern.finditer(text):
                start, end = m.span(group)
                if group and _PLACEHOLDER_VALUE.match(m.group(group)):
                    continue
                if any(start < h.end and h.start < end for h in hits):
                    continue
                hits.append(_Hit(start, end, "secret", name))
        return hits

    def _terms(self, text: str) -> list[_Hit]:
        return [_Hit(m.start(), m.end(), "term", f"#{i + 1} {term!r}")
                for i, (term, pattern) in enumerate(zip(self.blocked_terms, self._term_patterns))
                for m in pattern.finditer(text)]

    def check(self, text: str) -> OutputReport:
        secrets = self._secrets(text) if self.detect_secrets else []
        terms = [t for t in self._terms(text) if not any(t.start < s.end and s.start < t.end for s in secrets)]
        findings = [Finding("output.secret", f"{h.name} redacted", h.start, h.end) for h in secrets]
        findings += [Finding("output.blocked_term", f"blocked term {h.name}", h.start, h.end) for h in terms]
        findings.sort(key=lambda f: f.start)

        if terms and self.term_action == "block":
            return OutputReport("block", self.blocked_message, tuple(findings))
        redactions = sorted(secrets + (terms if self.term_action == "redact" else []))
        if not redactions:
            return OutputReport("allow", text, tuple(findings))
        out, pos = [], 0
        for h in redactions:
            out.append(text[pos:h.start])
            out.append(f"[REDACTED:{h.name}]" if h.kind == "secret" else "[REDACTED]")
            pos = h.end
        out.append(text[pos:])
        return OutputReport("redact", "".join(out), tuple(findings))
