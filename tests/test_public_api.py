"""The public API as a library user meets it: type hints a checker reads, reprs, copies, typed errors."""
from __future__ import annotations

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
