"""The records maomao keeps in etcd: frozen, validated, JSON with a schema version.

Decoding is tolerant in one direction only: unknown fields (from a newer member) are
ignored, while a missing required field or a value of the wrong type raises
RecordError, which callers report and skip. The field annotations are the schema:
pydantic checks them (strictly: no "60" for 60, no true for 1), imported on the first
decode so that `maomao --help` never loads it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar

from .errors import RecordError

if TYPE_CHECKING:
    from pydantic import TypeAdapter
    from pydantic_core import ErrorDetails

SCHEMA_VERSION = 1

RunStatus = Literal["running", "succeeded", "failed", "timed-out", "lost", "skipped"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed-out", "lost", "skipped"})
Mode = Literal["once", "everywhere"]
Direction = Literal["up", "down"]


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(cls: type) -> TypeAdapter[Any]:
    """Built once per record type (two threads may both build it: harmless)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


class Record:
    """Mixin for frozen dataclasses stored as JSON."""

    kind: ClassVar[str] = "record"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    def to_json(self) -> bytes:
        return json.dumps({"v": SCHEMA_VERSION, **self.to_dict()}, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A decoded JSON object. It is checked as the JSON it came from: pydantic's strict
        mode takes a JSON object for a dataclass, but in Python only an instance."""
        return cls.from_json(json.dumps(data).encode())

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        from pydantic import ValidationError

        try:
            record: Self = _adapter(cls).validate_json(raw, strict=True)
        except ValidationError as exc:
            raise cls._refusal(exc.errors()[0], raw) from None
        return record

    @classmethod
    def _refusal(cls, error: ErrorDetails, raw: bytes) -> RecordError:
        """One line naming the first field at fault, as the hand-written checks said it."""
        if not error["loc"]:
            if error["type"] == "json_invalid":
                return RecordError(f"{cls.kind} record is not JSON")
            return RecordError(f"{cls.kind} record is not a JSON object")
        name = str(error["loc"][0])
        if error["type"] == "missing":
            return RecordError(f"{cls.kind} record lacks field {name!r}")
        value = json.loads(raw).get(name, error["input"])  # the whole field, not the part
        return RecordError(f"{cls.kind} record has a bad value for {name!r}: {value!r}")


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Tool(Record):
    kind: ClassVar[str] = "tool"
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
    sensitivity: float | None = None  # spike detector override
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class Dataset(Record):
    kind: ClassVar[str] = "dataset"
    name: str
    url: str
    branch: str | None = None
    push: bool = False
    depth: int | None = None
    created: float = 0.0


@dataclass(frozen=True)
class Schedule(Record):
    kind: ClassVar[str] = "schedule"
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


@dataclass(frozen=True)
class Run(Record):
    kind: ClassVar[str] = "run"
    id: str
    tool: str
    member: str
    status: RunStatus
    trigger: Literal["manual", "schedule", "retry", "catch-up"] = "manual"
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
    log_tail: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True)
class Member(Record):
    kind: ClassVar[str] = "member"
    name: str
    host: str
    version: str
    started: float
    labels: dict[str, str] = field(default_factory=dict)
    running: int = 0
    pid: int = 0
    heartbeat: float = 0.0


@dataclass(frozen=True)
class Spike(Record):
    kind: ClassVar[str] = "spike"
    tool: str
    sortable: str
    value: float
    baseline: float
    deviation: float
    deviation_pct: float | None
    score: float
    direction: Direction
    method: str = "robust"
    run_id: str | None = None
    member: str | None = None
    found: float = 0.0
