"""Schedules: cron plus zone plus policy, stored in etcd so they survive every restart."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .. import validation
from ..errors import BadInput, NotFound
from ..keys import Keys
from ..models import Mode, Schedule
from ..scheduling import CronClock, location_zone, validate_cron
from ..store.base import Store
from .records import load, load_all
from .registry import Registry


@dataclass(frozen=True)
class ScheduleView:
    schedule: Schedule
    next_fire: float | None


class ScheduleService:
    def __init__(self, store: Store, keys: Keys, registry: Registry) -> None:
        self.store = store
        self.keys = keys
        self.registry = registry

    def create(
        self,
        tool: str,
        cron: str,
        *,
        timezone: str = "UTC",
        mode: Mode = "once",
        on: Mapping[str, str] | str | None = None,
        name: str | None = None,
        overlap: bool = False,
        retries: int | None = None,
        grace: float | None = None,
    ) -> tuple[Schedule, bool]:
        """Validate everything, then write; returns the schedule and whether it is new.
        `on` is a label selector: a mapping, or k=v,k2=v2 as `--on` takes it."""
        schedule_name = validation.name(name or tool, "schedule name")
        self.registry.get_tool(tool)
        cron = validate_cron(cron)
        location_zone(timezone)
        if mode not in ("once", "everywhere"):
            raise BadInput(f"invalid mode {mode!r}: expected once or everywhere")
        if retries is not None and retries < 0:
            raise BadInput(f"invalid retries {retries}: must be 0 or more")
        if grace is not None and grace < 0:
            raise BadInput(f"invalid grace {grace}: must be 0 or more seconds")
        selector = validation.labels(on, "on") if on else {}
        existing = load(self.store, self.keys.schedule(schedule_name), Schedule)
        if existing is not None and existing.tool != tool:
            raise BadInput(
                f"schedule {schedule_name!r} already runs tool {existing.tool!r}",
                hint="pick another name with --name",
            )
        schedule = Schedule(
            name=schedule_name,
            tool=tool,
            cron=cron,
            timezone=timezone,
            mode=mode,
            paused=existing.paused if existing else False,
            on=selector,
            overlap=overlap,
            retries=retries,
            grace=grace,
            created=existing.created if existing else time.time(),
        )
        self.store.put(self.keys.schedule(schedule_name), schedule.to_json())
        return schedule, existing is None

    def get(self, name: str) -> Schedule:
        validation.name(name, "schedule name")
        schedule = load(self.store, self.keys.schedule(name), Schedule)
        if schedule is None:
            raise NotFound(
                f"no schedule named {name!r}",
                hint="see `maomao schedule list`; create one with `maomao run TOOL --daily`",
            )
        return schedule

    def all(self) -> list[Schedule]:
        return load_all(self.store, self.keys.schedules(), Schedule)

    def set_paused(self, name: str, paused: bool) -> Schedule:
        schedule = replace(self.get(name), paused=paused)
        self.store.put(self.keys.schedule(name), schedule.to_json())
        return schedule

    def remove(self, name: str) -> Schedule:
        schedule = self.get(name)
        self.store.delete(self.keys.schedule(name))
        self.store.delete_prefix(self.keys.firings(name))
        return schedule

    @staticmethod
    def upcoming(schedule: Schedule, now: float, count: int = 3) -> list[float]:
        return CronClock(schedule.cron, schedule.timezone).upcoming(now, count)
