"""Request and response bodies. Records (Tool, Run...) are the models' own dataclasses,
so the OpenAPI document always matches what etcd holds; only bodies live here.

Request bodies are strict (no "1" for 1, no 1 for true): a wrong type is refused with
422 instead of being guessed. The 2019 bodies ignore unknown fields, as the 2019 servers
did; the v1 bodies refuse them. Bodies check types and what the schema can say (a
required string is not empty; a schedule has `cron` or `every`, 422): `spec()` translates
a tool or dataset body into the registry's input type, whose rules refuse a bad value
(400) with the message the CLI gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..models import Dataset, Schedule, Tool
from ..services.registry import DatasetSpec, ToolSpec
from ..validation import NAME_RULE
from .views import view_of

# The name rule is documented in the schema (so clients and fuzzers see it) but checked
# by the services, like every other rule, so HTTP and CLI refuse with the same message.
NAME_DOC: dict[str, Any] = {"pattern": f"^{NAME_RULE}$"}
Name = Annotated[str, Field(json_schema_extra=NAME_DOC)]
# An image or a URL is never empty; the services check the rest of its rule.
Required = Annotated[str, Field(min_length=1)]


class _Legacy(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


Frequency = Literal["hourly", "daily", "weekly"]


# 2019 -------------------------------------------------------------------------


class LegacyRegister(_Legacy):
    name: Name
    url: Required = Field(description="The Docker image of the tool (the 2019 name of the field).")

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, image=self.url)


class LegacyRun(_Legacy):
    name: Name
    dataset: str | None = Field(
        None, description="Checked against the tool's dataset when the tool has one."
    )
    cron: bool = False
    frequency: Frequency | None = None


class LegacyDataset(_Legacy):
    name: Name
    url: Required

    def spec(self) -> DatasetSpec:
        return DatasetSpec(name=self.name, url=self.url)


class LegacyRetrieve(_Legacy):
    name: Name


class LegacyToolOut(BaseModel):
    status: Literal["registered", "updated"]
    tool: Tool


class LegacyDatasetOut(BaseModel):
    status: Literal["registered", "updated"]
    dataset: Dataset


# v1 ---------------------------------------------------------------------------


class ToolCreate(_Strict):
    name: Name
    image: Required
    dataset: Name | None = None
    author: str | None = None
    description: str | None = None
    env: dict[str, str] | None = None
    network: str | None = None
    memory: str | None = None
    pids: int | None = None
    timeout: float | None = None
    user: str | None = None
    data_subdir: str | None = None
    spike_method: str | None = Field(
        default=None, description="robust or seed; unset: each member's [spikes] method."
    )
    sensitivity: float | None = None
    min_history: int | None = None
    max_data: str | int | None = Field(
        default=None, description="Most the data directory may hold: bytes, or a size like 500m."
    )
    member_folders: bool | None = Field(
        default=None,
        description="Dataset tools: write into <data-subdir>/<member>/; unset: when scheduled "
        "--everywhere.",
    )
    audit_tolerance: float | None = None

    def spec(self) -> ToolSpec:
        return ToolSpec(**self.model_dump())


class DatasetCreate(_Strict):
    name: Name
    url: Required
    branch: str | None = None
    push: bool = False
    depth: int | None = None

    def spec(self) -> DatasetSpec:
        return DatasetSpec(**self.model_dump())


# Exactly one of `cron` and `every`, as a string: said in the schema, checked by the body.
_ONE_SCHEDULE: dict[str, Any] = {
    "oneOf": [
        {"required": ["cron"], "properties": {"cron": {"type": "string"}}},
        {"required": ["every"], "properties": {"every": {"type": "string"}}},
    ]
}


class ScheduleCreate(_Strict):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_ONE_SCHEDULE)

    tool: Name
    cron: str | None = Field(None, description="5 or 6 cron fields; or give `every`.")
    every: Frequency | None = None
    timezone: str = "UTC"
    mode: Literal["once", "everywhere"] = "once"
    on: dict[str, str] | None = Field(None, description="Member label selector.")
    name: str | None = Field(None, description="Schedule name (default: the tool name).")
    overlap: bool = False
    retries: int | None = None
    grace: float | None = None
    jitter: str | None = Field(
        None, description="Spread starts by a stable offset below this: a duration, e.g. 10s."
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> ScheduleCreate:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron and every")
        return self


class RunCreate(_Strict):
    tool: Name


class RunAccepted(BaseModel):
    run_id: str
    tool: str
    status: Literal["running"] = "running"
    url: str


if TYPE_CHECKING:
    ScheduleOut = Schedule
else:
    # The schedule's view with its next firings: ISO 8601 in its zone, none when paused.
    ScheduleOut = view_of(Schedule, (("next_fires", tuple[str, ...], ()),))


class ScheduleResult(BaseModel):
    status: Literal["scheduled", "rescheduled"]
    schedule: ScheduleOut


# Operator controls: like `maomao schedule trigger/backfill/pause/show --next`; every rule
# is the schedule service's, so HTTP refuses as the CLI does (400, the same message).


class ScheduleTrigger(_Strict):
    force: bool = Field(False, description="Run even while the previous run still runs.")


class ScheduleBackfill(_Strict):
    start: str = Field(
        alias="from", description="ISO time (the schedule's zone if no offset) or a duration ago."
    )
    to: str = Field(description="ISO time or a duration ago; not in the future.")
    missing_only: bool = False
    dry_run: bool = False
    max_parallel: int = 1


class SchedulePause(_Strict):
    note: str | None = None
    until: str | None = Field(None, description="ISO time or a duration from now (2h).")


class FiringRequestOut(BaseModel):
    schedule: str
    fire_time: str
    trigger: Literal["manual", "backfill"]
    attempt: int
    force: bool


class BackfillFiring(BaseModel):
    fire_time: str
    attempt: int
    skip: str | None


class BackfillOut(BaseModel):
    schedule: str
    dry_run: bool
    requested: int
    firings: list[BackfillFiring]


class NextFiringOut(BaseModel):
    wall: str = Field(description="The wall time the cron expression names, in the zone.")
    utc: str | None = Field(description="When it fires; null: a DST change merged it away.")
    mark: Literal["moved", "repeated", "skipped"] | None
    jitter: dict[str, float] = Field(description="Each member's start offset, seconds.")


class CoverageGap(BaseModel):
    start: str
    end: str
    count: int
    outcome: str
    reason: str | None
    member: str | None


class CoverageFiring(BaseModel):
    fire_time: str
    member: str | None
    outcome: str
    reason: str | None
    run_id: str | None


class CoverageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schedule: str
    tool: str
    mode: str
    start: str = Field(alias="from")
    to: str
    expected: int
    counts: dict[str, int]
    skipped: dict[str, int]
    members: list[str]
    gaps: list[CoverageGap]
    firings: list[CoverageFiring]
    days: dict[str, str]
