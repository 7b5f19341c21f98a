"""Coverage: for each schedule, the nominal firings a period expected against what
happened to each (succeeded, failed, skipped with its reason, lost, missed, paused), per
member in mode `everywhere`, with the gaps as ranges and a per-day summary; and the
per-schedule counters `schedule list --json` and `schedule show` report.

`classify` is pure (schedule, nominal times, runs, members): the tests drive it with
tables. The service only loads the records and picks the period.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import timespec, validation
from ..config import Settings
from ..frozen import frozen
from ..keys import Keys
from ..models import Member, Run, Schedule
from ..scheduling import CronClock, paused_during, zone
from ..store.base import Store
from .records import load_all

if TYPE_CHECKING:
    from ..ports import Clock  # a protocol: annotations only (ports imports the store's types)

# A firing is judged only once this long after its nominal time plus its jitter: until
# then its run may just not have started.
SETTLE = 10.0
DEFAULT_SINCE = 7 * 86400.0
# The newest firings judged per schedule (croniter takes ~0.3 ms a firing): a report,
# and the counters of `schedule list` / `schedule show`. Older ones in the period are
# not judged, and the report says from when it judged (`from`).
MAX_FIRINGS = 20_000
COUNTER_FIRINGS = 2_000
# Better outcomes win when one nominal time has several records (a retry, a backfill).
_RANK = {"succeeded": 0, "running": 1, "failed": 2, "timed-out": 2, "lost": 3, "skipped": 4}


@frozen
class Slot:
    """One expected firing (of one member, in mode `everywhere`) and what became of it."""

    fire_time: float
    member: str | None
    outcome: str  # succeeded running failed lost skipped missed paused unknown
    reason: str | None = None
    run_id: str | None = None


@frozen
class Gap:
    """Consecutive expected firings that did not succeed, for one reason."""

    start: float
    end: float
    count: int
    outcome: str
    reason: str | None
    member: str | None


@dataclass
class Coverage:
    schedule: Schedule
    start: float
    end: float
    slots: list[Slot] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(s.outcome for s in self.slots))

    @property
    def skipped(self) -> dict[str, int]:
        return dict(Counter(s.reason or "-" for s in self.slots if s.outcome == "skipped"))

    def gaps(self) -> list[Gap]:
        gaps: list[Gap] = []
        for member in sorted({s.member or "" for s in self.slots}):
            run: list[Slot] = []
            for slot in (s for s in self.slots if (s.member or "") == member):
                if run and (slot.outcome, slot.reason) != (run[0].outcome, run[0].reason):
                    gaps.append(_gap(run))
                    run = []
                if slot.outcome not in ("succeeded", "running"):
                    run.append(slot)
                elif run:
                    gaps.append(_gap(run))
                    run = []
            if run:
                gaps.append(_gap(run))
        return gaps

    def days(self, member: str | None = None) -> list[tuple[str, str]]:
        """(local date, mark) per day of the period in the schedule's zone: `#` all
        succeeded, `+` some, `p` the rest paused, `x` none, `.` nothing expected."""
        tz = zone(self.schedule.timezone)
        by_day: dict[str, list[Slot]] = {}
        day = datetime.fromtimestamp(self.start, tz).date()
        last = datetime.fromtimestamp(self.end, tz).date()
        while day <= last:
            by_day[day.isoformat()] = []
            day = day.fromordinal(day.toordinal() + 1)
        for slot in self.slots:
            if member is None or slot.member == member:
                key = datetime.fromtimestamp(slot.fire_time, tz).date().isoformat()
                by_day.setdefault(key, []).append(slot)
        return [(d, _day_mark(slots)) for d, slots in by_day.items()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule.name,
            "tool": self.schedule.tool,
            "mode": self.schedule.mode,
            "from": self.start,
            "to": self.end,
            "expected": len(self.slots),
            "counts": self.counts,
            "skipped": self.skipped,
            "members": sorted({s.member for s in self.slots if s.member}),
            "gaps": [g.__dict__ for g in self.gaps()],
            "firings": [s.__dict__ for s in self.slots],
            "days": dict(self.days()),
        }


def _gap(slots: list[Slot]) -> Gap:
    first, last = slots[0], slots[-1]
    return Gap(
        first.fire_time, last.fire_time, len(slots), first.outcome, first.reason, first.member
    )


def _day_mark(slots: list[Slot]) -> str:
    if not slots:
        return "."
    ok = sum(s.outcome in ("succeeded", "running") for s in slots)
    paused = sum(s.outcome == "paused" for s in slots)
    if ok == len(slots):
        return "#"
    if paused and ok + paused == len(slots):
        return "p"
    return "+" if ok else "x"


def skip_reason(error: str | None) -> tuple[str, str]:
    """(outcome, reason) of a skipped record: a late firing is a miss."""
    text = error or ""
    if text.startswith("missed"):
        return "missed", "beyond the grace window"
    if "overlap" in text:
        return "skipped", "overlap"
    return "skipped", text[:60] or "-"


def classify(
    schedule: Schedule,
    times: Iterable[float],
    runs: Iterable[Run],
    members: list[str] | None,
    *,
    pruned_before: float | None = None,
) -> list[Slot]:
    """What happened to each expected firing (each member's, when `members` is given)."""
    best: dict[tuple[int, str | None], Run] = {}
    for run in runs:
        if run.schedule != schedule.name or run.fire_time is None:
            continue
        key = (int(run.fire_time), run.member if members is not None else None)
        held = best.get(key)
        if held is None or _RANK.get(run.status, 9) < _RANK.get(held.status, 9):
            best[key] = run
    slots = []
    for who in members if members is not None else [None]:
        for fire in times:
            found = best.get((int(fire), who))
            slots.append(_slot(schedule, fire, who, found, pruned_before))
    return slots


def _slot(
    schedule: Schedule, fire: float, who: str | None, run: Run | None, pruned_before: float | None
) -> Slot:
    if run is not None:
        if run.status == "skipped":
            outcome, reason = skip_reason(run.error)
            return Slot(fire, who, outcome, reason, run.id)
        outcome = "failed" if run.status == "timed-out" else run.status
        return Slot(fire, who, outcome, run.error if outcome != "succeeded" else None, run.id)
    if paused_during(schedule, fire):
        return Slot(fire, who, "paused", schedule.pause_note if schedule.paused else None)
    if pruned_before is not None and fire < pruned_before:
        return Slot(fire, who, "unknown", "run records pruned ([worker] runs_kept, runs_max_age)")
    return Slot(fire, who, "missed", "no member ran it")


def expected_times(
    schedule: Schedule, start: float, end: float, limit: int = MAX_FIRINGS
) -> list[float]:
    """The nominal times in [start, end] after the schedule was made; the newest `limit`
    of them when there are more."""
    clock = CronClock(schedule.cron, schedule.timezone)
    first = max(start - 1e-6, schedule.created)  # a schedule fires after it is made
    times = clock.between(first, end, limit)
    if len(times) < limit or limit < 2:
        return times
    # More than `limit`: start again as far back as `limit` firings reach at this pace.
    step = (times[-1] - times[0]) / (len(times) - 1)
    return clock.between(max(first, end - step * (limit - 1) - 1e-6), end, limit)


class CoverageService:
    def __init__(
        self, store: Store, keys: Keys, settings: Settings, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self._clock = clock

    def now(self) -> float:
        return self._clock.now() if self._clock is not None else time.time()

    def report(
        self,
        *,
        tool: str | None = None,
        member: str | None = None,
        since: str | float | None = None,
        schedules: list[Schedule] | None = None,
        limit: int = MAX_FIRINGS,
    ) -> list[Coverage]:
        now = self.now()
        start = self._since(since, now)
        if tool is not None:
            validation.name(tool, "tool")
        if member is not None:
            validation.name(member, "member")
        chosen = (
            schedules
            if schedules is not None
            else load_all(self.store, self.keys.schedules(), Schedule)
        )
        chosen = sorted((s for s in chosen if tool is None or s.tool == tool), key=lambda s: s.name)
        runs = load_all(self.store, self.keys.runs(), Run)
        live = load_all(self.store, self.keys.members(), Member)
        return [self._one(s, start, now, runs, live, member, limit) for s in chosen]

    def _since(self, since: str | float | None, now: float) -> float:
        if since is None:
            return now - DEFAULT_SINCE
        if isinstance(since, int | float):
            return float(since)
        return timespec.instant(since, "--since", now=now, zone_name="UTC", sign=-1)

    def _one(
        self,
        schedule: Schedule,
        start: float,
        now: float,
        runs: list[Run],
        live: list[Member],
        member: str | None,
        limit: int,
    ) -> Coverage:
        end = now - SETTLE - schedule.jitter
        mine = [r for r in runs if r.schedule == schedule.name]
        members: list[str] | None = None
        if schedule.mode == "everywhere":
            seen = {r.member for r in mine if r.fire_time is not None and r.fire_time >= start}
            picked = {
                m.name for m in live if all(m.labels.get(k) == v for k, v in schedule.on.items())
            }
            members = sorted((seen | picked) if member is None else {member})
        times = expected_times(schedule, start, end, limit)
        slots = classify(
            schedule, times, mine, members, pruned_before=self._pruned(schedule, runs, now)
        )
        judged_from = times[0] if len(times) == limit else start
        return Coverage(schedule, judged_from, end, slots)

    def _pruned(self, schedule: Schedule, runs: list[Run], now: float) -> float | None:
        """Before this, the tool's records may have been pruned ([worker] runs_kept, or
        runs_max_age)."""
        worker = self.settings.worker
        horizons = [now - worker.runs_max_age] if worker.runs_max_age > 0 else []
        of_tool = [r.started for r in runs if r.tool == schedule.tool and r.started]
        if len(of_tool) >= worker.runs_kept:
            horizons.append(min(of_tool))
        return max(horizons, default=None)

    def counters(self, schedules: list[Schedule]) -> dict[str, dict[str, Any]]:
        """Per schedule, in the last 24 h and 7 d: missed, failed (with lost and timed
        out), and skipped by reason."""
        now = self.now()
        found = self.report(since=now - 7 * 86400, schedules=schedules, limit=COUNTER_FIRINGS)
        return {c.schedule.name: _windows(c, now) for c in found}


def _windows(found: Coverage, now: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for label, seconds in (("24h", 86400.0), ("7d", 7 * 86400.0)):
        recent = [s for s in found.slots if s.fire_time >= now - seconds]
        result[label] = {
            "from": max(found.start, now - seconds),
            "missed": sum(s.outcome == "missed" for s in recent),
            "failed": sum(s.outcome in ("failed", "lost") for s in recent),
            "skipped": dict(Counter(s.reason or "-" for s in recent if s.outcome == "skipped")),
        }
    return result
