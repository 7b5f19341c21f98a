"""The records as the API shows them: each time an ISO 8601 string in UTC, to the second
(2026-12-01T09:01:45Z), as `--json` shows them, not the epoch seconds etcd keeps. A view
is a dataclass of the record's fields, its times typed as datetimes, so the OpenAPI
schema says `format: date-time` and pydantic writes them."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime
from typing import Any

from ..models import Record

_VIEWS: dict[tuple[str, tuple[tuple[str, Any, Any], ...]], Any] = {}


def view_of(cls: type[Record], extra: tuple[tuple[str, Any, Any], ...] = ()) -> Any:
    """The view class of a record class; `extra`: more fields (name, type, default)."""
    key = (cls.__qualname__, extra)
    if key not in _VIEWS:
        _VIEWS[key] = _make_view(cls, extra)
    return _VIEWS[key]


def _make_view(cls: type[Record], extra: tuple[tuple[str, Any, Any], ...]) -> Any:
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any, Any]] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = datetime | None if field.name in cls.times else hints[field.name]
        if field.default is not dataclasses.MISSING:
            fields.append((field.name, kind, dataclasses.field(default=field.default)))
        elif field.default_factory is not dataclasses.MISSING:
            factory = field.default_factory
            fields.append((field.name, kind, dataclasses.field(default_factory=factory)))
        else:
            fields.append((field.name, kind))  # type: ignore[arg-type]  # required
    fields += [(name, kind, dataclasses.field(default=default)) for name, kind, default in extra]
    # Named as the record (its schema in OpenAPI), or ...Out when it shows more.
    name = f"{cls.__name__}Out" if extra else cls.__name__
    return dataclasses.make_dataclass(name, fields, frozen=True)


def list_of(cls: type[Record]) -> Any:
    """The response model of a list of the records' views."""
    return list.__class_getitem__(view_of(cls))


def instant(epoch: float | None) -> datetime | None:
    """None for no time (0 stands for none in older records), like the CLI's JSON."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).replace(microsecond=0)


def view(record: Record, shape: Any = None, **extra: Any) -> Any:
    """The record as a view: of its own view class, or of `shape` (a view_of class
    with extra fields, given in `extra`)."""
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    for name in record.times:
        values[name] = instant(values[name])
    return (shape or view_of(type(record)))(**values, **extra)
