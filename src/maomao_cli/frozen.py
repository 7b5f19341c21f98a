"""`@frozen`: `@dataclass(frozen=True)` with __eq__, __hash__ and __repr__ shared, not
generated per class.

Python 3.11's dataclass compiles six methods from source for each frozen class, about
0.08 ms each: the 61 frozen classes `maomao run` imports cost it 28 ms, a read command
about 15 ms (docs/speed.md). Three of them need nothing of the class but its fields, so
they are one function each here, reading a tuple of field names made once per class;
dataclass itself still makes __init__ and the frozen __setattr__/__delattr__. They
answer as dataclass's own (tests/unit/test_frozen.py compares them on the same class).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    made = dataclass(frozen=True, eq=False, repr=False)(cls)
    specs = fields(made)  # type: ignore[arg-type]
    hashed = [spec for spec in specs if (spec.compare if spec.hash is None else spec.hash)]
    made.__maomao_compare__ = tuple(spec.name for spec in specs if spec.compare)  # type: ignore[attr-defined]
    made.__maomao_hash__ = tuple(spec.name for spec in hashed)  # type: ignore[attr-defined]
    made.__maomao_repr__ = tuple(spec.name for spec in specs if spec.repr)  # type: ignore[attr-defined]
    own = made.__dict__  # a method the class writes itself stays
    if "__eq__" not in own:
        setattr(made, "__eq__", _eq)  # noqa: B010 (mypy: a method assigned to a class)
        if own.get("__hash__") is None:
            setattr(made, "__hash__", _hash)  # noqa: B010
    if "__repr__" not in own:
        setattr(made, "__repr__", _repr)  # noqa: B010
    return made


def _values(record: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple([getattr(record, name) for name in names])


def _eq(self: Any, other: Any) -> Any:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = self.__maomao_compare__
    return _values(self, names) == _values(other, names)


def _hash(self: Any) -> int:
    return hash(_values(self, self.__maomao_hash__))


def _plain_repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__maomao_repr__)
    return f"{self.__class__.__qualname__}({shown})"


_repr: Callable[[Any], str] = reprlib.recursive_repr()(_plain_repr)
