"""A schedule's own grace window and retry count, or the [worker] defaults; how long its
firing claims must live."""

from __future__ import annotations

from ...config import WorkerSettings
from ...models import Schedule
from ...scheduling import CronClock

# A claim never lives less than this: clocks of members differ by a few seconds, and a
# reconnecting worker re-reads its timetable within a lease TTL.
MIN_CLAIM_LIFE = 64


def misfire_grace(schedule: Schedule, settings: WorkerSettings) -> float:
    return schedule.grace if schedule.grace is not None else settings.misfire_grace


def retry_limit(schedule: Schedule, settings: WorkerSettings) -> int:
    return schedule.retries if schedule.retries is not None else settings.retries


def claim_life(
    schedule: Schedule,
    fire_time: float,
    settings: WorkerSettings,
    cron: CronClock | None = None,
) -> int:
    """Seconds a claim of this firing must live: while any member may still take the
    firing (the schedule's period, its grace window for a catch-up, and its retries'
    backoff), rounded up to a power of two so a few leases serve every schedule; at most
    [worker] firings_ttl. `cron`: the schedule's clock, if the caller keeps one."""
    clock = cron or CronClock(schedule.cron, schedule.timezone)
    period = clock.next_after(fire_time) - fire_time
    retries = retry_limit(schedule, settings) * settings.backoff_max
    needed = period + misfire_grace(schedule, settings) + retries
    life = MIN_CLAIM_LIFE
    while life < needed and life < settings.firings_ttl:
        life *= 2
    return min(life, settings.firings_ttl)
