"""The README's Python examples run as written, offline, and print what the text around them says.

The public-API example is run with its gateway on a scripted driver (no keys, no network): the
same defaults, arguments and calls, with providers standing in.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import llmlab
from llmlab import CallError, ErrorKind
from llmlab.scripted import FakeClock, ScriptedDriver

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(path: Path = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def public_api_example() -> str:
    return next(b for b in python_blocks() if "gw.stream(" in b)


class CutsFirstStream(ScriptedDriver):
    """The first streamed answer breaks off after a few words (as a provider's connection may)."""

    cut = True

    def stream_call(self, call):
        if not self.cut:
            return (yield from super().stream_call(call))
        self.cut = False
        self.calls.append(call)
        yield "Refunds are "
        return CallError(ErrorKind.CONNECTION, "stream cut midway", partial_text="Refunds are ")


def run_offline(code: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                driver: ScriptedDriver) -> str:
    real = llmlab.Gateway

    def gateway(*args, **kwargs):  # the README's own arguments, on the scripted driver and its clock
        return real(*args, driver=driver, clock=driver.clock, seed=0, **kwargs)

    monkeypatch.setattr(llmlab, "Gateway", gateway)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return capsys.readouterr().out


def test_the_public_api_example_prints_the_answer_and_streams_text_only(monkeypatch, capsys):
    driver = CutsFirstStream(clock=FakeClock(), default="Refunds are accepted within 30 days.")
    out = run_offline(public_api_example(), monkeypatch, capsys, driver)
    # out.text, out.model, out.cost_usd, out.latency_s, out.cache
    assert out.startswith("Refunds are accepted within 30 days. gpt-4o-mini ")
    # a broken stream restarts on another attempt: the loop shows text and says so, never a marker's repr
    assert "StreamReset" not in out, out
    streamed = out.split("\n", 1)[1]
    assert streamed.startswith("Refunds are \n[answer restarted on gpt-4o-mini]\nRefunds are accepted within 30 days.")
    assert re.search(r"\nTTFT \d", streamed), streamed


def test_the_readme_lists_every_outcome_error():
    """BudgetUnavailable (a shared budget store down, budgets failing closed) was missing."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    sentence = text[text.index("Every request ends in exactly one `Outcome`"):][:700]
    errors = [name for name in llmlab.__all__ if isinstance(getattr(llmlab, name), type)
              and issubclass(getattr(llmlab, name), llmlab.GatewayError)]
    assert len(errors) >= 7 and [e for e in errors if f"`{e}`" not in sentence] == []
