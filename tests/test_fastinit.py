"""The descriptor-based ``__init__`` behaves exactly like the dataclass's own."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

from llmlab._fastinit import fast_frozen_init
from llmlab.effects import Attempt, Outcome
from llmlab.request import Request


def _pair():
    calls = []

    def make(fast: bool):
        @dataclasses.dataclass(frozen=True, slots=True)
        class Point:
            x: int
            y: int = 2
            tags: list = dataclasses.field(default_factory=list)

            def __post_init__(self) -> None:
                calls.append(self.x)
                if self.x < 0:
                    raise ValueError("x must be ≥ 0")

        return fast_frozen_init(Point) if fast else Point

    return make(False), make(True), calls


def test_same_values_defaults_factories_and_post_init():
    plain, fast, calls = _pair()
    for args, kwargs in [((1,), {}), ((1, 5), {}), ((1,), {"tags": ["a"]}), ((), {"x": 3, "y": 4})]:
        a, b = plain(*args, **kwargs), fast(*args, **kwargs)
        assert dataclasses.astuple(a) == dataclasses.astuple(b)
    assert fast(1).tags is not fast(1).tags  # a fresh list per instance, as default_factory promises
    assert calls == [1, 1, 1, 1, 1, 1, 3, 3, 1, 1]
    with pytest.raises(ValueError, match="x must be"):
        fast(-1)
    with pytest.raises(TypeError):
        fast()  # a required field stays required
    with pytest.raises(TypeError):
        fast(1, z=3)
    assert str(inspect.signature(fast)) == str(inspect.signature(plain))


def test_instances_stay_frozen_and_comparable():
    _, fast, _ = _pair()
    p = fast(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2
    assert p == fast(1) and p != fast(2)
    assert dataclasses.replace(p, y=9).y == 9


def test_rejects_classes_it_cannot_speed_up():
    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        x: int

    for cls in (Mutable, NoSlots):
        with pytest.raises(TypeError, match="frozen dataclass with slots"):
            fast_frozen_init(cls)


def test_hot_records_use_it():
    """The per-request records keep their defaults through the faster __init__."""
    a = Attempt("d", "m", "answer", True, None, 0.1)
    assert (a.prompt_tokens, a.cost_usd, a.retry_after_s) == (0, 0.0, None)
    r1, r2 = Request(({"role": "user", "content": "x"},)), Request(({"role": "user", "content": "x"},))
    assert r1.request_id != r2.request_id and r1.params == {} and r1.params is not r2.params
    assert Outcome.__init__.__qualname__ == "Outcome.__init__"


def test_instances_come_back_as_their_class_after_the_open_twin():
    """Regression guard for the open-twin ``__init__``: the instance is its class again (frozen)
    when ``__init__`` returns and when ``__post_init__`` runs, a subclass with another layout (a
    ``__dict__``) takes the descriptor path, and pickling and ``replace`` see the class itself."""
    import pickle

    seen = []

    @fast_frozen_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Rec:
        a: int
        b: str = "b"

        def __post_init__(self) -> None:
            seen.append(type(self))
            with pytest.raises(dataclasses.FrozenInstanceError):
                self.a = 0  # type: ignore[misc]

    class Loose(Rec):  # no __slots__: a __dict__, so not the twin's layout
        pass

    r = Rec(1)
    assert type(r) is Rec and seen == [Rec] and (r.a, r.b) == (1, "b")
    loose = Loose(2, "c")
    assert type(loose) is Loose and (loose.a, loose.b) == (2, "c") and seen == [Rec, Loose]
    assert type(dataclasses.replace(r, b="x")) is Rec
    o = Outcome("r", "t", "p", *[None] * 20)
    assert type(o) is Outcome and pickle.loads(pickle.dumps(o)) == o
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.text = "x"  # type: ignore[misc]


def test_a_class_whose_base_has_slots_keeps_the_descriptor_path():
    """The open twin has the class's own ``__slots__`` only: a base with slots of its own (a mixin
    with a cached attribute) makes the class's layout larger, and every instance failed to build
    ("__class__ assignment: … object layout differs").  Such a class stores through the slot
    descriptors, as before the twin; the result is the dataclass's own."""

    class Cached:
        __slots__ = ("_memo",)

    def make(fast: bool):
        @dataclasses.dataclass(frozen=True, slots=True)
        class Rec(Cached):
            a: int
            tags: list = dataclasses.field(default_factory=list)

        return fast_frozen_init(Rec) if fast else Rec

    plain, fast = make(False), make(True)
    r = fast(1)
    assert type(r) is fast and (r.a, r.tags) == (1, []) and dataclasses.astuple(r) == dataclasses.astuple(plain(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.a = 2  # type: ignore[misc]
