"""Schedules: cron plus zone plus policy, stored in etcd so they survive every restart;
and the operator's controls over them: pause (with a note and an end), trigger, backfill,
the next firings with their DST marks and jitter. Every rule lives here, so the CLI and
the HTTP API refuse the same input the same way."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import timespec, validation
from ..config import Settings
from ..errors import BadInput, NotFound
from ..frozen import frozen
from ..jitter import offset as jitter_offset
from ..keys import Keys
from ..models import FiringRequest, Member, Mode, Run, Schedule
from ..scheduling import CronClock, location_zone, paused_now, validate_cron
from ..store.base import Store
from . import backfill as backfills
from .records import load, load_all
from .registry import Registry

if TYPE_CHECKING:
    from ..ports import Clock  # a protocol: annotations only (ports imports the store's types)

PAUSES_KEPT = 100  # earlier pauses kept in a schedule's record (for coverage)
NEXT_MAX = 1000
MAX_PARALLEL = 100
NOTE_MAX = 500


@frozen
class ScheduleView:
    schedule: Schedule
    next_fire: float | None


@frozen
class NextFiring:
    """One upcoming firing for `schedule show --next`: its wall time in the schedule's
    zone, its instant (None: a DST change merged it away), the DST mark, and each
    member's start offset in seconds."""

    wall: str
    instant: float | None
    mark: str | None
    jitter: dict[str, float]


@frozen
class BackfillPlan:
    schedule: Schedule
    start: float
    end: float
    firings: list[backfills.Planned]
    dry_run: bool
    requested: int  # requests written (0 on a dry run)


class _SystemClock:
    def now(self) -> float:
        return time.time()


class ScheduleService:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        registry: Registry,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.registry = registry
        self.settings = settings or Settings()
        self._clock = clock

    def now(self) -> float:
        return self._clock.now() if self._clock is not None else time.time()

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
        jitter: float | str | None = None,
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
        spread = _jitter(jitter)
        selector = validation.labels(on, "on") if on else {}
        existing = load(self.store, self.keys.schedule(schedule_name), Schedule)
        if existing is not None and existing.tool != tool:
            raise BadInput(
                f"schedule {schedule_name!r} already runs tool {existing.tool!r}",
                hint="pick another name with --name",
            )
        fresh = Schedule(
            name=schedule_name,
            tool=tool,
            cron=cron,
            timezone=timezone,
            mode=mode,
            on=selector,
            overlap=overlap,
            retries=retries,
            grace=grace,
            created=self.now(),
            jitter=spread,
        )
        if existing is not None:  # its pause and its history stay
            fresh = replace(
                existing,
                **{
                    k: getattr(fresh, k)
                    for k in ("cron", "timezone", "mode", "on", "overlap", "retries", "grace")
                },
                jitter=spread,
            )
        self.store.put(self.keys.schedule(schedule_name), fresh.to_json())
        return fresh, existing is None

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

    # Pausing -------------------------------------------------------------------

    def pause(
        self,
        name: str,
        *,
        note: str | None = None,
        until: str | float | None = None,
        by: str | None = None,
    ) -> Schedule:
        """Pause a schedule: its firings until `until` (a time, a duration from now, or
        None: until resumed) are not run and never caught up; the workers resume it at
        the end by themselves. Pausing a paused schedule replaces its note and end."""
        schedule = self.get(name)
        now = self.now()
        end = self._until(until, schedule, now)
        clean_note = _note(note)
        who = validation.text(by, "paused by") if by else None
        current = _closed(schedule, now)
        since = current.paused_at if current.paused and current.paused_at is not None else now
        paused = replace(
            current,
            paused=True,
            pause_note=clean_note,
            paused_until=end,
            paused_by=who,
            paused_at=since,
        )
        self.store.put(self.keys.schedule(schedule.name), paused.to_json())
        return self._after_claimed(paused) if since == now else paused

    def _after_claimed(self, paused: Schedule) -> Schedule:
        """A pause stops every claim made after it landed (a claim compares the schedule's
        revision); a firing claimed between the pause's start and its landing has run. The
        record's start then moves to just after the latest of those, so that it says what
        happened: no firing with a nominal time in a pause ever runs."""
        assert paused.paused_at is not None
        start = paused.paused_at
        claimed = [
            epoch
            for entry in self.store.scan(self.keys.firings(paused.name))
            if (epoch := _firing_epoch(entry.key)) is not None and epoch >= start
        ]
        if not claimed:
            return paused
        after = max(claimed) + 0.001
        moved = replace(paused, paused_at=after)
        if paused.paused_until is not None and after >= paused.paused_until:
            return paused  # not enough pause left to move (a pause of a second or less)
        key = self.keys.schedule(paused.name)
        entry = self.store.get(key)
        if entry is None or entry.value != paused.to_json():
            return paused  # changed again since: that write stands
        if not self.store.replace(key, moved.to_json(), mod_revision=entry.mod_revision):
            return paused
        return moved

    def resume(self, name: str) -> Schedule:
        schedule = self.get(name)
        resumed = _closed(schedule, self.now(), resume=True)
        self.store.put(self.keys.schedule(schedule.name), resumed.to_json())
        return resumed

    def set_paused(self, name: str, paused: bool) -> Schedule:
        return self.pause(name) if paused else self.resume(name)

    def is_paused(self, schedule: Schedule) -> bool:
        """Paused now (a pause whose end has passed is over)."""
        return paused_now(schedule, self.now())

    def _until(self, until: str | float | None, schedule: Schedule, now: float) -> float | None:
        if until is None:
            return None
        if isinstance(until, int | float):
            end = float(until)
        else:
            end = timespec.instant(until, "--until", now=now, zone_name=schedule.timezone, sign=1)
        if not math.isfinite(end) or end <= now:
            raise BadInput(
                f"invalid --until {until!r}: the end of a pause must be in the future",
                hint="give a duration such as 2h or a later time",
            )
        return end

    def remove(self, name: str) -> Schedule:
        schedule = self.get(name)
        self.store.delete(self.keys.schedule(name))
        self.store.delete_prefix(self.keys.firings(name))
        self.store.delete_prefix(self.keys.requests(name))
        self.store.delete_prefix(self.keys.slots(name))
        return schedule

    # Upcoming firings ----------------------------------------------------------

    @staticmethod
    def upcoming(schedule: Schedule, now: float, count: int = 3) -> list[float]:
        return CronClock(schedule.cron, schedule.timezone).upcoming(now, count)

    def next_firings(
        self, schedule: Schedule, count: int, members: list[Member], *, after: float | None = None
    ) -> list[NextFiring]:
        """The next `count` nominal firings (DST-merged ones as extra entries), each with
        the start offset of each member the schedule's selector picks."""
        validation.whole_between(count, 1, NEXT_MAX, "--next")
        clock = CronClock(schedule.cron, schedule.timezone)
        start = self.now() if after is None else after
        planned = clock.marked(start, count)
        picked = [
            m.name for m in members if all(m.labels.get(k) == v for k, v in schedule.on.items())
        ]
        instants = [p.instant for p in planned if p.instant is not None]
        following = dict(zip(instants, [*instants[1:], None], strict=True))
        result = []
        for item in planned:
            offsets: dict[str, float] = {}
            if item.instant is not None and schedule.jitter > 0:
                nxt = following[item.instant] or clock.next_after(item.instant)
                offsets = {m: jitter_offset(schedule, m, item.instant, nxt) for m in picked}
            result.append(
                NextFiring(item.wall.isoformat(sep=" "), item.instant, item.mark, offsets)
            )
        return result

    # Requested firings -----------------------------------------------------------

    def trigger(self, name: str, *, force: bool = False, by: str | None = None) -> FiringRequest:
        """One firing now, through the normal claim path: trigger `manual`, its own
        nominal time (this second). The overlap policy applies unless `force`."""
        schedule = self.get(name)
        now = self.now()
        epoch = math.floor(now)
        claimed = self._claimed(schedule.name).get(epoch, 0)
        request = FiringRequest(
            schedule=schedule.name,
            fire_time=float(epoch),
            trigger="manual",
            attempt=claimed + 1,
            force=force,
            by=by,
            at=now,
        )
        lease = self.store.grant_lease(self.settings.worker.firings_ttl)
        for attempt in range(claimed + 1, claimed + 100):
            request = replace(request, attempt=attempt)
            key = self.keys.request(schedule.name, backfills.request_leaf(epoch, attempt))
            if self.store.create(key, request.to_json(), lease=lease.id):
                return request
        raise BadInput(f"schedule {name!r} was triggered too often this second; try again")

    def backfill(
        self,
        name: str,
        *,
        start: str | float,
        end: str | float,
        missing_only: bool = False,
        dry_run: bool = False,
        max_parallel: int = 1,
        by: str | None = None,
    ) -> BackfillPlan:
        """Request the schedule's nominal firings in [start, end] (times without an offset
        are in the schedule's zone): each claimed once as a firing of its nominal time,
        trigger `backfill`. A dry run decides the same and writes nothing."""
        schedule = self.get(name)
        now = self.now()
        first, last = (
            self._instant(value, option, schedule, now)
            for value, option in ((start, "--from"), (end, "--to"))
        )
        validation.whole_between(max_parallel, 1, MAX_PARALLEL, "--max-parallel")
        if last > now:
            raise BadInput(
                "invalid backfill range: --to is in the future; a backfill runs past firings only",
                hint="end the range now or earlier",
            )
        if first > last:
            raise BadInput("invalid backfill range: --from is after --to")
        limit = self.settings.worker.backfill_max
        clock = CronClock(schedule.cron, schedule.timezone)
        times = backfills.nominal_times(clock, first, last, limit)
        if len(times) > limit:
            raise BadInput(
                f"backfill range too large: more than {limit} firings",
                hint="narrow --from/--to, or raise [worker] backfill_max",
            )
        runs = [r for r in load_all(self.store, self.keys.runs(), Run) if r.schedule == name]
        firings = backfills.plan(
            times, claimed=self._claimed(schedule.name), runs=runs, missing_only=missing_only
        )
        requested = 0
        if not dry_run and any(f.skip is None for f in firings):
            requested = self._request_all(schedule, firings, max_parallel, by, now)
        return BackfillPlan(schedule, first, last, firings, dry_run, requested)

    def _request_all(
        self,
        schedule: Schedule,
        firings: list[backfills.Planned],
        max_parallel: int,
        by: str | None,
        now: float,
    ) -> int:
        lease = self.store.grant_lease(self.settings.worker.firings_ttl)
        written = 0
        for item in firings:
            if item.skip is not None:
                continue
            request = FiringRequest(
                schedule=schedule.name,
                fire_time=item.fire_time,
                trigger="backfill",
                attempt=item.attempt,
                max_parallel=max_parallel,
                by=by,
                at=now,
            )
            key = self.keys.request(
                schedule.name, backfills.request_leaf(item.fire_time, item.attempt)
            )
            written += self.store.create(key, request.to_json(), lease=lease.id)
        return written

    def _instant(self, value: str | float, option: str, schedule: Schedule, now: float) -> float:
        if isinstance(value, int | float):
            return float(value)
        return timespec.instant(value, option, now=now, zone_name=schedule.timezone, sign=-1)

    def _claimed(self, name: str) -> dict[int, int]:
        firings = [self.keys.leaf(e.key) for e in self.store.scan(self.keys.firings(name))]
        requests = [self.keys.leaf(e.key) for e in self.store.scan(self.keys.requests(name))]
        return backfills.claimed_attempts(firings, requests)


def _jitter(value: float | str | None) -> float:
    if value is None:
        return 0.0
    seconds = timespec.duration(value, "--jitter") if isinstance(value, str) else float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise BadInput(f"invalid --jitter {value!r}: must be 0 or more seconds")
    return seconds


def _note(note: str | None) -> str | None:
    if note is None:
        return None
    cleaned = validation.text(note, "--note")
    if len(cleaned) > NOTE_MAX:
        raise BadInput(f"invalid --note: at most {NOTE_MAX} characters")
    return cleaned


def _firing_epoch(key: str) -> int | None:
    """The nominal time of a firing's claim key (`<epoch>`, `<epoch>@<member>`, with a
    retry's `.r<attempt>`); None for a key of another shape."""
    tail = key.rsplit("/", 1)[-1].split("@", 1)[0].split(".", 1)[0]
    return int(tail) if tail.isdigit() else None


def _closed(schedule: Schedule, now: float, *, resume: bool = False) -> Schedule:
    """The schedule with its pause moved to the history if it has ended (or, resuming,
    ends now); a running pause is kept unless resuming."""
    if not schedule.paused:
        return schedule
    ended = schedule.paused_until is not None and schedule.paused_until <= now
    if not (ended or resume):
        return schedule
    start = schedule.paused_at if schedule.paused_at is not None else schedule.created
    stop = min(now, schedule.paused_until) if schedule.paused_until is not None else now
    history = [*schedule.pauses, [start, stop]][-PAUSES_KEPT:]
    return replace(
        schedule,
        paused=False,
        pause_note=None,
        paused_until=None,
        paused_by=None,
        paused_at=None,
        pauses=history,
    )
