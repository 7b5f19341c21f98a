"""`@frozen`: `@dataclass(frozen=True)` compiling one method per class, not six.

Python 3.11's dataclass compiles six methods from source for each frozen class, about
0.08 ms each: the 61 frozen classes `maomao run` imports cost it 28 ms, a read command
about 15 ms (docs/speed.md). Five of them need nothing of the class but its fields, so
they are one function each here (__eq__, __hash__ and __repr__ read a tuple of field
names made once per class; __setattr__ and __delattr__ always refuse, as a frozen
dataclass's do for its fields). Only __init__ is compiled per class, as dataclass's:
every field assigned with object.__setattr__, defaults and default factories as given,
then __post_init__ if the class has one. dataclass itself still records the fields, so
`fields`, `replace` and `asdict` work as on any dataclass. Everything answers as
dataclass's own (tests/unit/test_frozen.py compares them on the same class bodies).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, dataclass, fields
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    documented = cls.__dict__.get("__doc__") is not None
    if not documented:
        # Else dataclass writes the signature there, through inspect: 0.1 ms a class, and
        # 6 ms once for the tokenizer inspect then needs.
        cls.__doc__ = "-"
    made = dataclass(init=False, repr=False, eq=False)(cls)  # the fields, no method
    specs = fields(made)  # type: ignore[arg-type]
    setattr(made, "__init__", _init_for(made, specs))  # noqa: B010
    setattr(made, "__setattr__", _refuse_set)  # noqa: B010
    setattr(made, "__delattr__", _refuse_delete)  # noqa: B010
    if not documented:
        made.__doc__ = None
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


def _init_for(cls: type, specs: tuple[Field[Any], ...]) -> Callable[..., None]:
    """The class's __init__, compiled once: what dataclass(frozen=True) would write."""
    scope: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    params, body, defaulted = ["self"], [], None
    for spec in specs:
        if spec.kw_only:
            raise TypeError(f"{cls.__name__}.{spec.name}: @frozen takes no kw_only field")
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if spec.default is not MISSING:
            scope[f"_default_{spec.name}"] = spec.default
            value = f"_default_{spec.name}"
        elif spec.default_factory is not MISSING:
            scope[f"_factory_{spec.name}"] = spec.default_factory
            value = f"_factory_{spec.name}()"
        else:
            value = None
        if not spec.init:
            if value is not None:
                body.append(f"_set(self, {spec.name!r}, {value})")
            continue
        if not has_default and defaulted is not None:
            raise TypeError(f"non-default argument {spec.name!r} follows default argument")
        if spec.default_factory is not MISSING:
            params.append(f"{spec.name}=_FACTORY")
            body.append(
                f"_set(self, {spec.name!r}, {value} if {spec.name} is _FACTORY else {spec.name})"
            )
        else:
            params.append(spec.name if value is None else f"{spec.name}={value}")
            body.append(f"_set(self, {spec.name!r}, {spec.name})")
        defaulted = spec.name if has_default else defaulted
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__({', '.join(params)}):\n    " + "\n    ".join(body or ["pass"])
    exec(source, scope)
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {spec.name: spec.type for spec in specs if spec.init} | {"return": None}
    return init


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # as dataclass shows it in a signature


_FACTORY = _Factory()


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_delete(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


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
