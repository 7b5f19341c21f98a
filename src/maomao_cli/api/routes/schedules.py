"""/v1/schedules: like `maomao run TOOL --daily` (or `--cron`) and `maomao schedule`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from fastapi import APIRouter

from ...composition import Services
from ...models import Schedule
from ...scheduling import resolve_cron, zone
from ..deps import PathName, ServicesDep
from ..schemas import ScheduleCreate, ScheduleOut, ScheduleResult
from ..views import view, view_of

router = APIRouter(tags=["schedules"])


def schedule_out(services: Services, schedule: Schedule, count: int) -> ScheduleOut:
    """The schedule with its next `count` firings (none while paused without an end; after
    the end for a pause with one), in its own zone."""
    now = services.schedules.now()
    paused = services.schedules.is_paused(schedule)
    after = max(now, schedule.paused_until or now) if paused else now
    forever = paused and schedule.paused_until is None
    fires = [] if forever else services.schedules.upcoming(schedule, after, count)
    next_fires = tuple(_iso(t, schedule.timezone) for t in fires)
    return cast(ScheduleOut, view(schedule, ScheduleOut, next_fires=next_fires))


def _iso(epoch: float, zone_name: str) -> str:
    return datetime.fromtimestamp(epoch, zone(zone_name)).isoformat()


@router.get("/schedules", response_model=list[ScheduleOut])
def schedules(services: ServicesDep) -> list[ScheduleOut]:
    found = sorted(services.schedules.all(), key=lambda s: s.name)
    return [schedule_out(services, s, 1) for s in found]


@router.get("/schedules/{name}", response_model=ScheduleOut)
def schedule(name: PathName, services: ServicesDep) -> ScheduleOut:
    return schedule_out(services, services.schedules.get(name), 5)


@router.post("/schedules", response_model=ScheduleResult, status_code=201)
def create_schedule(body: ScheduleCreate, services: ServicesDep) -> ScheduleResult:
    """Create or replace a schedule, like `maomao run TOOL --daily` or `--cron`."""
    expression = resolve_cron(
        cron=body.cron,
        hourly=body.every == "hourly",
        daily=body.every == "daily",
        weekly=body.every == "weekly",
    )
    created, new = services.schedules.create(
        body.tool,
        expression,
        timezone=body.timezone,
        mode=body.mode,
        on=body.on or None,
        name=body.name,
        overlap=body.overlap,
        retries=body.retries,
        grace=body.grace,
        jitter=body.jitter,
    )
    return ScheduleResult(
        status="scheduled" if new else "rescheduled",
        schedule=schedule_out(services, created, 3),
    )


@router.delete("/schedules/{name}", response_model=view_of(Schedule))
def delete_schedule(name: PathName, services: ServicesDep) -> Any:
    return view(services.schedules.remove(name))
