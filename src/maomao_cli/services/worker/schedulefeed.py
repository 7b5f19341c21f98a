"""The schedules as etcd holds them, onto the timetable: read whole on each (re)connect,
then followed one watch event at a time. A record another member wrote is untrusted: one
that does not decode is skipped with a warning, never followed."""

from __future__ import annotations

import logging

from ...config import WorkerSettings
from ...errors import RecordError
from ...keys import Keys
from ...models import Schedule
from ...ports import Clock
from ...store.base import Entry, Event
from ..records import decode
from .execution import Shared
from .policy import misfire_grace

log = logging.getLogger("maomao.worker")


class ScheduleFeed:
    def __init__(self, keys: Keys, shared: Shared, settings: WorkerSettings, clock: Clock) -> None:
        self._keys = keys
        self._shared = shared
        self._settings = settings
        self._clock = clock

    def load(self, entries: list[Entry], *, first: bool) -> None:
        """Follow exactly these schedules. Only on the first load are firings missed
        before it caught up (within each schedule's grace): after a reconnect, a schedule
        that did not change keeps its pending firings instead."""
        now = self._clock.now()
        seen: set[str] = set()
        with self._shared.lock:
            for entry in entries:
                schedule = decode(Schedule, entry)
                if schedule is None:
                    continue
                seen.add(schedule.name)
                if self._shared.timetable.follows(schedule):
                    # Unchanged across a reconnect: keep its pending firings.
                    self._shared.timetable.saw(schedule.name, entry.mod_revision)
                    continue
                self._track(schedule, now, catch_up=first, revision=entry.mod_revision)
            self._shared.timetable.keep_only(seen)
        self._shared.wake.set()

    def on_event(self, event: Event) -> None:
        key, value = event.key, event.value
        name = self._keys.leaf(key)
        with self._shared.lock:
            if value is None:
                if self._shared.timetable.untrack(name):
                    log.info("schedule %s removed", name)
            else:
                try:
                    schedule = Schedule.from_json(value)
                except RecordError as exc:
                    log.warning("skipping %s: %s", key, exc)
                    return
                if self._shared.timetable.follows(schedule):
                    self._shared.timetable.saw(name, event.revision)
                else:
                    self._track(
                        schedule, self._clock.now(), catch_up=False, revision=event.revision
                    )
                    log.info(
                        "schedule %s: %s (%s)%s",
                        name,
                        schedule.cron,
                        schedule.timezone,
                        " paused" if schedule.paused else "",
                    )
        self._shared.wake.set()

    def _track(self, schedule: Schedule, now: float, *, catch_up: bool, revision: int) -> None:
        """Start following a schedule (caller holds the lock)."""
        grace = misfire_grace(schedule, self._settings) if catch_up else None
        self._shared.timetable.track(schedule, now, catch_up_grace=grace, revision=revision)
