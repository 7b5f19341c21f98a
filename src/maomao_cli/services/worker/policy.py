"""A schedule's own grace window and retry count, or the [worker] defaults."""

from __future__ import annotations

from ...config import WorkerSettings
from ...models import Schedule


def misfire_grace(schedule: Schedule, settings: WorkerSettings) -> float:
    return schedule.grace if schedule.grace is not None else settings.misfire_grace


def retry_limit(schedule: Schedule, settings: WorkerSettings) -> int:
    return schedule.retries if schedule.retries is not None else settings.retries
