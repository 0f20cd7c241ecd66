"""Every field a scenario file (or ``--set``) accepts, read from the pydantic models themselves.

``llmlab simulate --fields`` prints the list: dotted key, type, allowed range, default, and the
note written beside the field in :mod:`llmlab.sim.scenario`.  Generated, not typed by hand, so
the reference cannot drift from what validation accepts.  Keys under a mapping show its key as
``<name>`` (``providers.<name>.timeout_s``); items of a list show ``[i]``
(``traffic.tenants[i].plan``, set as ``traffic.tenants.0.plan``).
"""
from __future__ import annotations

import inspect
import io
import tokenize
import types
import typing
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["ScenarioField", "scenario_fields", "format_fields", "fields_of"]


@dataclass(frozen=True)
class ScenarioField:
    key: str
    type: str
    allowed: str
    default: str
    note: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def _bounds(metadata: list[Any], type_name: str) -> list[str]:
    """What validation asks of a value beyond its type: numeric bounds, a minimum length or a pattern
    (in the words the error message uses)."""
    from .scenario import _PATTERNS

    out = [f"{symbol} {getattr(m, name):g}" for m in metadata for name, symbol in _BOUNDS
           if getattr(m, name, None) is not None]
    for m in metadata:
        least = getattr(m, "min_length", None)
        if least is not None:
            out.append("not empty" if type_name == "str" and least == 1 else
                       f"at least {least} {'character' if type_name == 'str' else 'item'}{'s' if least > 1 else ''}")
        pattern = getattr(m, "pattern", None)
        if pattern is not None:
            out.append(_PATTERNS[pattern].removeprefix("must be ") if pattern in _PATTERNS else f"matches {pattern}")
    return out


def _describe(annotation: Any) -> tuple[str, list[str]]:
    """A readable type name and its constraints, for an annotation as pydantic stores it."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        name, limits = _describe(base)
        return name, limits + _bounds([m for e in extra for m in getattr(e, "metadata", [e])], name)
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(annotation)]
        names = [n for n, _ in parts]
        return " | ".join(names), [b for _, bounds in parts for b in bounds]
    if origin is Literal:
        values = typing.get_args(annotation)
        return type(values[0]).__name__, ["one of " + ", ".join(repr(a) for a in values)]
    if origin in (list, dict):  # what each item (each key, each value) must be: `traffic.languages` weights ≥ 0
        parts = [_describe(a) for a in typing.get_args(annotation)]
        roles = ("each item",) if origin is list else ("each key", "each value")
        limits = [f"{role} {', '.join(found)}" for role, (_, found) in zip(roles, parts) if found]
        return f"{origin.__name__}[{', '.join(name for name, _ in parts)}]", limits
    if annotation is type(None):
        return "None", []
    return getattr(annotation, "__name__", str(annotation)), []


def _models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """Nested models an annotation holds, with the key suffix that reaches them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args:
        return [("[i]" + s, m) for s, m in _models_in(args[0])]
    if origin is dict and len(args) == 2:
        return [(".<name>" + s, m) for s, m in _models_in(args[1])]
    if origin in (Union, types.UnionType, typing.Annotated):
        return [found for a in args for found in _models_in(a)]
    return []


@lru_cache(maxsize=None)
def _notes(model: type[BaseModel]) -> dict[str, str]:
    """The comment written at the end of each field's line in the model's source."""
    try:
        lines, _ = inspect.getsourcelines(model)
    except (OSError, TypeError):  # pragma: no cover - source not shipped
        return {}
    notes: dict[str, str] = {}
    tokens = list(tokenize.generate_tokens(io.StringIO("".join(lines)).readline))
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.COMMENT or tok.start[1] == 0:
            continue
        row = [t for t in tokens[:i] if t.start[0] == tok.start[0] and t.type not in (tokenize.INDENT, tokenize.DEDENT)]
        if len(row) >= 2 and row[0].type == tokenize.NAME and row[1].string == ":" and row[0].start[1] == 4:
            notes[row[0].string] = tok.string.lstrip("#").strip()
    return notes


def _default(info: Any) -> str:
    if info.default is not PydanticUndefined:
        value = info.default
    elif info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            return "(its fields below)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"{len(value)} item{'s' if len(value) > 1 else ''}, defaults below"
    else:
        return "required"
    text = value.isoformat() if hasattr(value, "isoformat") else repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def scenario_fields(model: type[BaseModel] | None = None, prefix: str = "") -> list[ScenarioField]:
    """Every settable field below ``model`` (default: the whole :class:`~llmlab.sim.scenario.Scenario`)."""
    if model is None:
        from .scenario import Scenario

        model = Scenario
    notes = _notes(model)
    rows: list[ScenarioField] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = info.annotation
        if info.metadata:
            annotation = typing.Annotated[(annotation, *info.metadata)]
        type_name, allowed = _describe(annotation)
        rows.append(ScenarioField(key, type_name, "; ".join(allowed), _default(info), notes.get(name, "")))
        for suffix, nested in _models_in(info.annotation):
            rows.extend(scenario_fields(nested, f"{key}{suffix}."))
    return rows


@lru_cache(maxsize=1)
def _key_parts() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(f.key.replace("[i]", ".[i]").split(".")) for f in scenario_fields())


def fields_of(table: "typing.Sequence[str]") -> list[str]:
    """The fields the scenario table at path ``table`` takes (``("gateway", "router")``; a list
    item by number, a mapping's entry by its key: ``("providers", "gpt-4o")``), in the order
    ``--fields`` lists them.  An unknown field's error names them, so that a typo
    (``gateway.router.model``) is answered with what the table accepts, not only refused."""
    depth = len(table)
    found = [parts[-1] for parts in _key_parts() if len(parts) == depth + 1 and all(
        want == got or want == "<name>" or (want == "[i]" and got.isdigit()) for want, got in zip(parts, table))]
    return list(dict.fromkeys(found))


def format_fields(rows: list[ScenarioField]) -> str:
    """An aligned plain-text table (one field a line)."""
    columns = [f.name for f in fields(ScenarioField)]
    table = [ScenarioField(*columns), *rows]
    aligned = columns[:-1]  # the note, last, runs free
    widths = {col: max(len(getattr(r, col)) for r in table) for col in aligned}
    return "\n".join("  ".join([*(getattr(r, col).ljust(widths[col]) for col in aligned), r.note]).rstrip()
                     for r in table)
