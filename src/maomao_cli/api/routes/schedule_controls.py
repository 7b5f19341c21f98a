"""/v1/schedules/{name}/trigger, /backfill, /pause, /resume, /next and /v1/coverage: the
operator controls of `maomao schedule ...` and `maomao coverage`, on the same service
methods (so the same rules and messages)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ...services.coverage import Coverage
from ..deps import PathName, QueryName, ServicesDep
from ..schemas import (
    BackfillFiring,
    BackfillOut,
    CoverageFiring,
    CoverageGap,
    CoverageOut,
    FiringRequestOut,
    NextFiringOut,
    ScheduleBackfill,
    ScheduleOut,
    SchedulePause,
    ScheduleTrigger,
)
from .schedules import schedule_out

router = APIRouter(tags=["schedules"])
BY = "api"  # who paused or requested, in the records


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.post("/schedules/{name}/trigger", response_model=FiringRequestOut, status_code=202)
def trigger(name: PathName, body: ScheduleTrigger, services: ServicesDep) -> FiringRequestOut:
    """One firing now, through the workers' claim path (trigger `manual`)."""
    request = services.schedules.trigger(name, force=body.force, by=BY)
    return FiringRequestOut(
        schedule=request.schedule,
        fire_time=_utc(request.fire_time),
        trigger=request.trigger,
        attempt=request.attempt,
        force=request.force,
    )


@router.post("/schedules/{name}/backfill", response_model=BackfillOut, status_code=202)
def backfill(name: PathName, body: ScheduleBackfill, services: ServicesDep) -> BackfillOut:
    """The schedule's past firings in a range, each claimed once (trigger `backfill`)."""
    plan = services.schedules.backfill(
        name,
        start=body.start,
        end=body.to,
        missing_only=body.missing_only,
        dry_run=body.dry_run,
        max_parallel=body.max_parallel,
        by=BY,
    )
    return BackfillOut(
        schedule=plan.schedule.name,
        dry_run=plan.dry_run,
        requested=plan.requested,
        firings=[
            BackfillFiring(fire_time=_utc(f.fire_time), attempt=f.attempt, skip=f.skip)
            for f in plan.firings
        ],
    )


@router.post("/schedules/{name}/pause", response_model=ScheduleOut)
def pause(name: PathName, body: SchedulePause, services: ServicesDep) -> ScheduleOut:
    paused = services.schedules.pause(name, note=body.note, until=body.until, by=BY)
    return schedule_out(services, paused, 3)


@router.post("/schedules/{name}/resume", response_model=ScheduleOut)
def resume(name: PathName, services: ServicesDep) -> ScheduleOut:
    return schedule_out(services, services.schedules.resume(name), 3)


@router.get("/schedules/{name}/next", response_model=list[NextFiringOut])
def next_firings(
    name: PathName,
    services: ServicesDep,
    count: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> list[NextFiringOut]:
    """The next nominal firings, their DST marks and each live member's jitter."""
    schedule = services.schedules.get(name)
    members = services.members.live() if schedule.jitter > 0 else []
    return [
        NextFiringOut(
            wall=f.wall,
            utc=_utc(f.instant) if f.instant is not None else None,
            mark=f.mark,  # type: ignore[arg-type]
            jitter=f.jitter,
        )
        for f in services.schedules.next_firings(schedule, count, members)
    ]


@router.get("/coverage", response_model=list[CoverageOut])
def coverage(
    services: ServicesDep,
    tool: QueryName = None,
    member: QueryName = None,
    since: str | None = None,
) -> list[CoverageOut]:
    """Expected firings per schedule against what happened, like `maomao coverage`."""
    return [
        _coverage_out(c) for c in services.coverage.report(tool=tool, member=member, since=since)
    ]


def _coverage_out(item: Coverage) -> CoverageOut:
    return CoverageOut(
        **{"from": _utc(item.start)},
        schedule=item.schedule.name,
        tool=item.schedule.tool,
        mode=item.schedule.mode,
        to=_utc(item.end),
        expected=len(item.slots),
        counts=item.counts,
        skipped=item.skipped,
        members=sorted({s.member for s in item.slots if s.member}),
        gaps=[
            CoverageGap(
                start=_utc(g.start),
                end=_utc(g.end),
                count=g.count,
                outcome=g.outcome,
                reason=g.reason,
                member=g.member,
            )
            for g in item.gaps()
        ],
        firings=[
            CoverageFiring(
                fire_time=_utc(s.fire_time),
                member=s.member,
                outcome=s.outcome,
                reason=s.reason,
                run_id=s.run_id,
            )
            for s in item.slots
        ],
        days=dict(item.days()),
    )
