"""A faster ``__init__`` for frozen, slotted dataclasses built once or more per request.

A frozen dataclass's generated ``__init__`` stores each field with ``object.__setattr__(self,
name, value)``: a global lookup, an attribute lookup and a string-keyed call per field — about
0.2 µs a field, 4 µs for the 21 fields of an :class:`~llmlab.effects.Outcome`.  A slot is a
descriptor whose ``__set__`` stores straight into the instance, so an ``__init__`` that calls
the descriptors (looked up once, at class creation) does the same work in about half the time.
The instances stay frozen: ``obj.field = x`` still raises ``FrozenInstanceError``, and
equality, hashing, ``repr`` and ``dataclasses.replace`` are the dataclass's own.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class _Factory:
    """The default of a field with a ``default_factory`` (shown as ``<factory>``, as dataclasses does)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Class decorator (applied *above* ``@dataclass(frozen=True, slots=True)``)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: fast_frozen_init needs a frozen dataclass with slots=True")
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__}: fast_frozen_init does not handle init=False fields")
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    args, body = [], []
    for f in fields:
        setter = f"_set_{f.name}"
        namespace[setter] = cls.__dict__[f.name].__set__
        if f.default is not _MISSING:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not _MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_FACTORY")
            body.append(f"    if {f.name} is _FACTORY: {f.name} = _factory_{f.name}()")
        else:
            args.append(f.name)
        body.append(f"    {setter}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body or ["    pass"]) + "\n"
    exec(source, namespace)  # noqa: S102 - generated from the class's own field names, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    cls.__init__ = init  # type: ignore[misc]
    return cls
