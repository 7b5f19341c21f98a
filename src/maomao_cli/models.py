"""The records maomao keeps in etcd: frozen, validated, JSON with a schema version.

Decoding is tolerant in one direction only: unknown fields (from a newer member) are
ignored, while a missing required field or a value of the wrong type raises
RecordError, which callers report and skip.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any, ClassVar, Literal, Self, TypeVar, get_args, get_origin

from .errors import RecordError
from .frozen import frozen

SCHEMA_VERSION = 1

RunStatus = Literal["running", "succeeded", "failed", "timed-out", "lost", "skipped"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed-out", "lost", "skipped"})
Mode = Literal["once", "everywhere"]
Direction = Literal["up", "down"]


Check = Callable[[Any], bool]


def _any(value: Any) -> bool:
    return True


def _is_float(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@functools.cache
def _checker(hint: Any) -> Check:
    """A runtime type check for JSON-decoded values against a field annotation, built
    once per annotation: a worker decodes every schedule at start and a run record per
    firing, and walking the typing objects per value took longer than decoding."""
    origin = get_origin(hint)
    if hint is Any:
        return _any
    if origin is Literal:
        allowed = get_args(hint)
        return lambda value: value in allowed
    if origin in (types.UnionType, typing.Union):
        options = tuple(_checker(arg) for arg in get_args(hint))
        return lambda value: any(check(value) for check in options)
    if hint is type(None):
        return lambda value: value is None
    if hint is float:
        return _is_float
    if hint is int:
        return _is_int
    if origin is dict:
        key_check, value_check = (_checker(arg) for arg in get_args(hint))
        return lambda value: (
            isinstance(value, dict)
            and all(key_check(k) and value_check(v) for k, v in value.items())
        )
    if origin in (list, tuple):
        args = get_args(hint)
        item_check = _checker(args[0]) if args else _any
        return lambda value: isinstance(value, list | tuple) and all(map(item_check, value))
    if isinstance(hint, type):
        return lambda value: isinstance(value, hint)
    return _any


FieldRule = tuple[str, Check, bool, bool]
_FIELDS: dict[type, tuple[FieldRule, ...]] = {}


def _fields(cls: type) -> tuple[FieldRule, ...]:
    """Each field of a record class: name, its check, required, a tuple. Resolving the
    type hints takes longer than decoding a record, so it is done once per class."""
    known = _FIELDS.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls)
    rules = tuple(
        (
            f.name,
            _checker(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            get_origin(hints[f.name]) is tuple,
        )
        for f in dataclasses.fields(cls)
    )
    _FIELDS[cls] = rules
    return rules


def _plain(value: Any) -> Any:
    """A field's value with its containers copied (as `dataclasses.asdict` does; records
    hold JSON values only, so no record is nested in one)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


class Record:
    """Mixin for frozen dataclasses stored as JSON."""

    kind: ClassVar[str] = "record"
    # The fields that are times (epoch seconds here and in etcd; ISO 8601 when shown).
    times: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name, *_ in _fields(type(self))}

    def to_json(self) -> bytes:
        # Serialised as they are: json.dumps copies nothing, so neither does this.
        values = {name: getattr(self, name) for name, *_ in _fields(type(self))}
        return json.dumps({"v": SCHEMA_VERSION, **values}, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        for name, check, required, is_tuple in _fields(cls):
            if name not in data:
                if required:
                    raise RecordError(f"{cls.kind} record lacks field {name!r}")
                continue
            value = data[name]
            if not check(value):
                raise RecordError(f"{cls.kind} record has a bad value for {name!r}: {value!r}")
            if is_tuple and isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{cls.kind} record does not validate: {exc}") from None

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RecordError(f"{cls.kind} record is not JSON") from None
        if not isinstance(data, dict):
            raise RecordError(f"{cls.kind} record is not a JSON object")
        return cls.from_dict(data)


R = TypeVar("R", bound=Record)


@frozen
class Tool(Record):
    kind: ClassVar[str] = "tool"
    times: ClassVar[tuple[str, ...]] = ("created", "updated")
    name: str
    image: str
    dataset: str | None = None
    author: str | None = None
    description: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    network: str | None = None  # None: the [docker] default
    memory: str | None = None
    pids: int | None = None
    timeout: float | None = None  # seconds
    user: str | None = None
    data_subdir: str | None = None  # inside the dataset work tree
    # Spike detection for this tool; None: the detecting member's [spikes] setting.
    spike_method: Literal["robust", "seed"] | None = None
    sensitivity: float | None = None
    min_history: int | None = None
    # Bytes its data directory may hold; each member keeps the lower of this and its own
    # [data] max_tool_bytes (a record from etcd cannot raise a member's limit).
    max_data: int | None = None
    # A dataset tool's files in <data-subdir>/<member>/ of the dataset, so members never
    # write the same file; None: when one of its schedules runs --everywhere.
    member_folders: bool | None = None
    # How far a member's control value may be from the majority's in `maomao audit`.
    audit_tolerance: float | None = None
    created: float = 0.0
    updated: float = 0.0


@frozen
class Dataset(Record):
    kind: ClassVar[str] = "dataset"
    times: ClassVar[tuple[str, ...]] = ("created",)
    name: str
    url: str
    branch: str | None = None
    push: bool = False
    depth: int | None = None
    created: float = 0.0


@frozen
class Schedule(Record):
    kind: ClassVar[str] = "schedule"
    times: ClassVar[tuple[str, ...]] = ("created", "paused_until", "paused_at")
    name: str
    tool: str
    cron: str
    timezone: str = "UTC"
    mode: Mode = "once"
    paused: bool = False
    on: dict[str, str] = field(default_factory=dict)  # member label selector
    overlap: bool = False
    retries: int | None = None  # None: the [worker] default
    grace: float | None = None  # misfire grace window, seconds
    created: float = 0.0
    # Each member's start is delayed by a stable offset below this many seconds (jitter.py).
    jitter: float = 0.0
    # The current pause (while `paused`): why, until when (None: until resumed), who, when.
    pause_note: str | None = None
    paused_until: float | None = None
    paused_by: str | None = None
    paused_at: float | None = None
    # Earlier pauses as [start, end] pairs, newest last: firings in them were not missed.
    pauses: list[list[float]] = field(default_factory=list)


@frozen
class FiringRequest(Record):
    """An operator's request for one firing of a schedule at a nominal time (`schedule
    trigger`, `schedule backfill`): the workers claim it like any firing of that time."""

    kind: ClassVar[str] = "request"
    times: ClassVar[tuple[str, ...]] = ("fire_time", "at")
    schedule: str
    fire_time: float
    trigger: Literal["manual", "backfill"]
    attempt: int = 1  # above 1: the nominal time was claimed before; this re-runs it
    force: bool = False  # run even while an earlier run of the schedule still runs
    max_parallel: int = 1  # backfill: runs of this schedule's backfills at once
    by: str | None = None
    at: float = 0.0


# Bytes of a run record's output tail (as JSON): with the rest of the record a run stays
# under about 20 KiB in etcd, so a page of PAGE_SIZE records stays under 1 MiB.
TAIL_BYTES = 16 * 1024


def cap_tail(lines: list[str], limit: int = TAIL_BYTES) -> list[str]:
    """The newest lines that fit in `limit` bytes of JSON, the oldest first; when lines
    are left out the first one says how many. A line longer than the whole budget keeps
    its beginning."""
    kept: list[str] = []
    used = 2 + 80  # the list's brackets, and room for the note
    for line in reversed(lines):
        cost = len(json.dumps(line)) + 2
        if used + cost > limit:
            if not kept:
                room = max(limit - used, 16)
                kept.append(line[: room // 6] + " …[line cut]")  # \uXXXX: 6 bytes a character
            break
        kept.append(line)
        used += cost
    kept.reverse()
    left_out = len(lines) - len(kept)
    if left_out > 0:
        note = f"…[{left_out} earlier lines left out; the record keeps {limit // 1024} KiB]"
        kept.insert(0, note)
    return kept


@frozen
class Run(Record):
    kind: ClassVar[str] = "run"
    times: ClassVar[tuple[str, ...]] = ("fire_time", "started", "finished")
    id: str
    tool: str
    member: str
    status: RunStatus
    trigger: Literal["manual", "schedule", "retry", "catch-up", "backfill"] = "manual"
    schedule: str | None = None
    fire_time: float | None = None
    attempt: int = 1
    image: str | None = None
    image_digest: str | None = None
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    warning: str | None = None
    # What the run's data says about the collector: "missing-control", "bad-control" or
    # "no-new-data" (docs/spikes.md); None when its data looks like a run's data.
    data_warning: str | None = None
    log_tail: list[str] = field(default_factory=list)
    # Provenance in the dataset: the commit this run produced and whether it is on the
    # remote (None: no dataset, or nothing committed; False until a push takes it).
    dataset_commit: str | None = None
    pushed: bool | None = None
    # The tool's insights.json (a JSON object, at most insights.MAX_BYTES).
    insights: dict[str, Any] | None = None
    # False when a retry cannot succeed (the data directory's owner, a missing image).
    retryable: bool = True
    # What the run produced (services/snapshots.py): files new or changed, by sha256,
    # and its control value; what `maomao audit` compares between members.
    outputs: dict[str, str] | None = None
    control: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@frozen
class Member(Record):
    kind: ClassVar[str] = "member"
    times: ClassVar[tuple[str, ...]] = ("started", "heartbeat")
    name: str
    host: str
    version: str
    started: float
    labels: dict[str, str] = field(default_factory=dict)
    running: int = 0
    pid: int = 0
    heartbeat: float = 0.0
    # Seconds this member's clock is ahead of the collaboration's (its own estimate;
    # None until it has heard from another member).
    clock_offset: float | None = None


@frozen
class Spike(Record):
    kind: ClassVar[str] = "spike"
    times: ClassVar[tuple[str, ...]] = ("found",)
    tool: str
    sortable: str
    value: float
    baseline: float
    deviation: float
    deviation_pct: float | None
    score: float
    direction: Direction
    method: str = "robust"
    rule: str | None = None  # which rule found it: seed, robust or seasonal
    run_id: str | None = None
    member: str | None = None
    found: float = 0.0


@frozen
class Divergence(Record):
    """A member whose control value at one --everywhere firing is off the majority's by
    more than the tool's audit tolerance (`maomao audit`)."""

    kind: ClassVar[str] = "divergence"
    times: ClassVar[tuple[str, ...]] = ("fire_time", "found")
    tool: str
    fire_time: float
    member: str
    value: float
    majority: float
    tolerance: float = 0.0
    run_id: str | None = None
    schedule: str | None = None
    found: float = 0.0
