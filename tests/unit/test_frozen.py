"""`@frozen` answers as `@dataclass(frozen=True)` does: the same class body under both,
compared on equality, hashing, repr, immutability and dataclasses' own helpers."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import pytest

from maomao_cli.frozen import frozen
from maomao_cli.models import Run, Tool


def pair(decorate: Any) -> tuple[type[Any], type[Any]]:
    """A base and a subclass with every field option that changes the methods."""

    class Base:
        name: str
        secret: str = field(default="s", repr=False)
        noted: int = field(default=0, compare=False)
        unhashed: tuple[int, ...] = field(default=(), hash=False)

    made = decorate(Base)

    class Child(made):  # type: ignore[misc,valid-type]
        extra: float = 1.5

    return made, decorate(Child)


OURS = pair(frozen)
THEIRS = pair(dataclass(frozen=True))

VALUES: list[dict[str, Any]] = [
    {"name": "a"},
    {"name": "a", "secret": "other"},
    {"name": "a", "noted": 7},
    {"name": "a", "unhashed": (1, 2)},
    {"name": "b", "secret": "x", "noted": 1, "unhashed": (3,)},
]


@pytest.mark.parametrize("which", [0, 1], ids=["class", "subclass"])
def test_equality_hash_and_repr_are_dataclass_s(which: int) -> None:
    ours, theirs = OURS[which], THEIRS[which]
    for left in VALUES:
        for right in VALUES:
            assert (ours(**left) == ours(**right)) == (theirs(**left) == theirs(**right))
            assert (ours(**left) != ours(**right)) == (theirs(**left) != theirs(**right))
        assert hash(ours(**left)) == hash(theirs(**left))
        assert repr(ours(**left)).split("(", 1)[1] == repr(theirs(**left)).split("(", 1)[1]
    assert "secret" not in repr(ours(name="a", secret="hunter2"))
    assert ours(name="a") != theirs(name="a") and ours(name="a") != ("a",)


def test_it_stays_frozen_and_a_dataclass() -> None:
    ours: Any = OURS[1](name="a")
    with pytest.raises(FrozenInstanceError):
        ours.name = "b"
    with pytest.raises(FrozenInstanceError):
        del ours.name
    assert dataclasses.is_dataclass(ours) and not isinstance(ours, type)
    assert [f.name for f in dataclasses.fields(ours)] == [
        "name", "secret", "noted", "unhashed", "extra",
    ]  # fmt: skip
    changed: Any = dataclasses.replace(ours, extra=2.0)
    assert changed.extra == 2.0 and changed.name == "a"
    assert dataclasses.asdict(ours)["extra"] == 1.5
    assert len({ours, OURS[1](name="a"), OURS[1](name="b")}) == 2


def test_a_method_the_class_writes_itself_is_kept() -> None:
    @frozen
    class Own:
        value: int

        def __repr__(self) -> str:
            return "mine"

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 42

    assert (repr(Own(1)), Own(1) == Own(2), hash(Own(1))) == ("mine", True, 42)


def test_records_compare_and_print_as_before() -> None:
    tool = Tool(name="t", image="img")
    assert tool == Tool(name="t", image="img") and tool != Tool(name="t", image="other")
    assert repr(tool).startswith("Tool(name='t', image='img'")
    run = Run(id="20240101T000000Z-abc", tool="t", member="m", status="running")
    assert run == dataclasses.replace(run) and run != dataclasses.replace(run, status="failed")


def both(body: Callable[[], type[Any]]) -> tuple[type[Any], type[Any]]:
    return frozen(body()), dataclass(frozen=True)(body())


def with_defaults() -> type[Any]:
    class Made:
        name: str
        count: int = 3
        tags: list[str] = field(default_factory=list)
        seen: list[str] = field(default_factory=list, init=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "seen", [self.name])

    return Made


def test_the_init_takes_and_fills_what_dataclass_s_does() -> None:
    ours, theirs = both(with_defaults)
    assert str(inspect.signature(ours)) == str(inspect.signature(theirs))
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (("a",), {}),
        (("a", 5), {"tags": ["x"]}),
        ((), {"name": "b"}),
    ]
    for args, kwargs in calls:
        mine, its = ours(*args, **kwargs), theirs(*args, **kwargs)
        assert dataclasses.asdict(mine) == dataclasses.asdict(its)
    assert ours("a").tags is not ours("a").tags  # a fresh list each time
    refused: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        (("a",), {"nope": 1}),
        (("a", 1, [], 2), {}),
    ]
    for bad_args, bad_kwargs in refused:
        with pytest.raises(TypeError):
            theirs(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            ours(*bad_args, **bad_kwargs)


def test_a_field_without_default_after_one_with_is_refused_as_dataclass_does() -> None:
    def body() -> type[Any]:
        class Bad:
            first: int = 1
            second: int

        return Bad

    with pytest.raises(TypeError, match="non-default argument 'second' follows default"):
        dataclass(frozen=True)(body())
    with pytest.raises(TypeError, match="non-default argument 'second' follows default"):
        frozen(body())
