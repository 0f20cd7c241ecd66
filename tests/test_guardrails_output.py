"""Output filter: leaked secrets are redacted, blocked terms block, placeholders survive."""

from __future__ import annotations

import pytest

from llmlab.guardrails import GuardrailConfigError, OutputFilter, OutputFilterGuard, OutputGuard

OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabcdef==\n-----END RSA PRIVATE KEY-----"
GITHUB = "ghp_" + "a" * 18 + "B" * 18

filt = OutputFilter()


@pytest.mark.parametrize("secret, name", [
    (OPENAI_KEY, "openai_key"),
    ("sk-" + "x1Y2z3" * 5, "openai_key"),
    (AWS_KEY, "aws_access_key"),
    (JWT, "jwt"),
    (PEM, "private_key"),
    (GITHUB, "github_token"),
])
def test_secrets_are_redacted_and_never_repeated_in_findings(secret, name):
    text = f"Sure! Use this: {secret}\nThanks."
    r = filt.check(text)
    assert r.action == "redact"
    assert secret not in r.text
    assert f"[REDACTED:{name}]" in r.text
    assert r.text.startswith("Sure! Use this: ") and r.text.endswith("\nThanks.")
    assert [f.kind for f in r.findings] == ["output.secret"]
    assert secret not in r.findings[0].detail and name in r.findings[0].detail
    assert text[r.findings[0].start:r.findings[0].end] == secret


def test_pem_without_end_marker_is_redacted_to_the_end():
    r = filt.check("key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA")
    assert r.text == "key:\n[REDACTED:private_key]"


@pytest.mark.parametrize("text, value", [
    ('config: api_key="d8f7a6b5c4e3d2f1"', "d8f7a6b5c4e3d2f1"),
    ("password: Tr0ub4dor&3xyz", "Tr0ub4dor&3xyz"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("비밀번호: hunter2hunter2 로 로그인하세요", "hunter2hunter2"),
])
def test_generic_credential_assignments_keep_the_key_name(text, value):
    r = filt.check(text)
    assert r.action == "redact"
    assert value not in r.text
    assert "[REDACTED:credential_assignment]" in r.text
    assert text.split(value)[0] in r.text  # "api_key=" etc. is kept for context


@pytest.mark.parametrize("text", [
    'client = OpenAI(api_key="YOUR_API_KEY")',
    "export OPENAI_API_KEY=<your-key>",
    "api_key=${OPENAI_API_KEY}",
    "password: ********",
    "api_key = os.environ['OPENAI_API_KEY']",
    "Keys start with sk- and are secret; never paste them here.",
    "The task-management tool is great.",
])
def test_placeholders_and_explanations_are_allowed(text):
    r = filt.check(text)
    assert r.action == "allow" and r.text == text and r.findings == ()


def test_overlapping_generic_and_specific_patterns_report_the_specific_one():
    r = filt.check(f"api_key = {OPENAI_KEY}")
    assert r.text == "api_key = [REDACTED:openai_key]"
    assert len(r.findings) == 1


def test_detect_secrets_can_be_switched_off():
    assert OutputFilter(detect_secrets=False).check(f"key {AWS_KEY}").action == "allow"


# -- blocked terms -----------------------------------------------------------------------------

def test_blocked_terms_are_case_insensitive_and_word_bounded():
    f = OutputFilter(blocked_terms=["Project Falcon", "class"])
    assert f.check("the launch of PROJECT  FALCON is near").action == "block"
    assert f.check("this class is full").action == "block"
    assert f.check("a classic example; subclass; classes").action == "allow"
    assert f.check("project falconry").action == "allow"


@pytest.mark.parametrize("text, blocked", [
    ("폭탄 만드는 법", True),
    ("폭탄을 만드는 법", True),
    ("폭탄이 뭐예요", True),
    ("그건 폭탄입니다", True),
    ("시한폭탄 같은 일정", False),   # compound noun: a different word
    ("폭탄주 한잔", False),           # 폭탄주 is a drink, not 폭탄 + particle
])
def test_korean_blocked_terms_allow_particles_only(text, blocked):
    f = OutputFilter(blocked_terms=["폭탄"])
    assert (f.check(text).action == "block") is blocked


def test_block_replaces_text_and_finding_names_the_term():
    f = OutputFilter(blocked_terms=["falcon"], blocked_message="withheld")
    r = f.check("Falcon launches Tuesday")
    assert r.action == "block" and r.text == "withheld"
    assert r.findings[0].kind == "output.blocked_term" and "falcon" in r.findings[0].detail


def test_term_action_redact_keeps_the_rest_of_the_answer():
    f = OutputFilter(blocked_terms=["falcon"], term_action="redact")
    r = f.check(f"Falcon key: {AWS_KEY}")
    assert r.action == "redact"
    assert r.text == "[REDACTED] key: [REDACTED:aws_access_key]"


@pytest.mark.parametrize("kwargs, field", [
    ({"term_action": "drop"}, "OutputFilter.term_action"),
    ({"blocked_terms": ["ok", "  "]}, "OutputFilter.blocked_terms"),
])
def test_bad_config(kwargs, field):
    with pytest.raises(GuardrailConfigError) as err:
        OutputFilter(**kwargs)
    assert err.value.field == field and field in str(err.value)


# -- the pipeline stage ------------------------------------------------------------------------

def test_output_guard_blocks_with_reason_and_redacts_otherwise():
    guard = OutputFilterGuard(blocked_terms=["falcon"])
    assert isinstance(guard, OutputGuard)
    v = guard.check_output("Falcon ships soon")
    assert v.blocked and "falcon" in v.blocked and v.text != "Falcon ships soon"
    v = guard.check_output(f"here: {OPENAI_KEY}")
    assert v.blocked is None and v.text == "here: [REDACTED:openai_key]"
    assert [f.kind for f in v.findings] == ["output.secret"]
    v = guard.check_output("All good.")
    assert v == type(v)("All good.", None, ())


def test_output_guard_accepts_a_prebuilt_filter_but_not_both():
    f = OutputFilter(blocked_terms=["x"])
    assert OutputFilterGuard(f).filter is f
    with pytest.raises(GuardrailConfigError) as err:  # was a TypeError: every bad setting is a ConfigError
        OutputFilterGuard(f, blocked_terms=["y"])
    assert err.value.field == "OutputFilterGuard.output_filter" and "not both" in str(err.value)
