"""Pure scheduling logic: cron parsing, next-fire times in a zone, catch-up and retries.

No I/O and no clock of its own: every function takes the time it reasons about, so
the tests drive it with tables and a fake clock.

Cron expressions have 5 fields, or 6 with seconds FIRST (`*/5 * * * * *` = every
5 seconds), as in Quartz and dkron. Times are evaluated on the schedule's local wall
clock, then mapped to instants:
- a wall time that does not exist (spring forward) fires at the same instant as the
  first time after the gap, and instants that coincide are merged, so nothing doubles;
- a wall time that happens twice (fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BadInput
from .frozen import frozen
from .models import Schedule

SHORTHANDS = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
}


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInput(
            f"invalid time zone {name!r}: expected an IANA name such as UTC, Europe/Zurich or America/New_York"
        ) from None


# Names in the zone database that are no location: `localtime` and `posixrules` are this
# machine's own zone (each member would compute other fire times), `Factory` is no zone
# at all, and the posix/ and right/ trees are copies (right/ counts leap seconds).
NOT_LOCATIONS = frozenset({"localtime", "posixrules", "Factory"})
NOT_LOCATION_TREES = ("posix/", "right/")


def location_zone(name: str, field: str = "--tz / timezone") -> ZoneInfo:
    """The one rule for a schedule's time zone: an IANA name that every member resolves
    alike. BadInput names the field."""
    if name in NOT_LOCATIONS or name.startswith(NOT_LOCATION_TREES):
        raise BadInput(
            f"invalid {field} {name!r}: not a location zone (it would differ between members)",
            hint="use an IANA name such as UTC, Europe/Zurich or America/New_York",
        )
    try:
        return zone(name)
    except BadInput:
        raise BadInput(
            f"invalid {field} {name!r}: expected an IANA name such as UTC, Europe/Zurich "
            "or America/New_York"
        ) from None


def _croniter() -> Any:
    from croniter import croniter  # imported when scheduling, not at CLI start-up

    return croniter


@lru_cache(maxsize=4096)  # pure; a listing or a worker's start sees each often
def validate_cron(expr: str) -> str:
    """Normalise whitespace and check the expression; BadInput naming the rule if wrong."""
    normalized = " ".join(expr.split())
    fields = normalized.split(" ") if normalized else []
    rule = (
        f"invalid cron expression {expr!r}: expected 5 fields (minute hour day month weekday) "
        "or 6 with seconds first, e.g. '0 6 * * *' or '*/10 * * * * *'"
    )
    if len(fields) not in (5, 6) or any(c in normalized for c in "\x00\n\r\t"):
        raise BadInput(rule)
    croniter = _croniter()
    try:
        it = croniter(normalized, datetime(2026, 1, 1), second_at_beginning=len(fields) == 6)
        it.get_next(datetime)
    except Exception:  # croniter raises several unrelated types for bad input
        raise BadInput(rule) from None
    return normalized


# How many answers of next_after a clock keeps (see CronClock.__post_init__).
KNOWN_ANSWERS = 4


def _to_epoch(naive: datetime, tz: ZoneInfo) -> float:
    return naive.replace(tzinfo=tz, fold=0).timestamp()


# Pure, and shared by every clock: schedules often share an expression, and a worker asks
# about all of them at the same instant (loading them all at `now`; firing those due
# together), so one croniter answers many. The expression was validated by the clock.
@lru_cache(maxsize=8192)
def _next_fire(cron: str, timezone: str, after: float) -> float:
    tz = location_zone(timezone, "time zone")
    local = datetime.fromtimestamp(after, tz).replace(tzinfo=None)
    it = _croniter()(cron, local, second_at_beginning=len(cron.split(" ")) == 6)
    # In a repeated (fall-back) hour local time runs backwards: skip instants not after.
    for _ in range(10_000):
        candidate = _to_epoch(it.get_next(datetime), tz)
        if candidate > after:
            return candidate
    raise BadInput(f"cron expression {cron!r} never fires after {after}")


@lru_cache(maxsize=8192)
def _prev_fire(cron: str, timezone: str, at: float) -> float | None:
    tz = location_zone(timezone, "time zone")
    local = datetime.fromtimestamp(math.floor(at) + 1, tz).replace(tzinfo=None)
    it = _croniter()(cron, local, second_at_beginning=len(cron.split(" ")) == 6)
    for _ in range(10_000):
        try:
            candidate = _to_epoch(it.get_prev(datetime), tz)
        except Exception:  # croniter gives up far in the past
            return None
        if candidate <= at:
            return candidate
    return None


@dataclass
class CronClock:
    """Next-fire computation for one schedule; cheap to keep one per schedule."""

    cron: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        self.cron = validate_cron(self.cron)
        self._zone = location_zone(self.timezone, "time zone")
        self._seconds = len(self.cron.split(" ")) == 6
        # The last answers of next_after, newest first: croniter takes ~0.2 ms, and the
        # worker asks for a firing's next one ahead of time, while it waits (the
        # timetable's look-ahead), then again to queue it and for the claim's life.
        self._known: tuple[tuple[float, float], ...] = ()

    def _to_epoch(self, naive: datetime) -> float:
        return _to_epoch(naive, self._zone)

    def next_after(self, after: float) -> float:
        """The first fire instant strictly after `after` (epoch seconds)."""
        known = self._known  # one read: another thread may replace it meanwhile
        for asked, answer in known:
            if asked == after:
                return answer
        answer = _next_fire(self.cron, self.timezone, after)
        self._known = ((after, answer), *known[: KNOWN_ANSWERS - 1])
        return answer

    def prev_at_or_before(self, at: float) -> float | None:
        """The newest fire instant at or before `at`, or None if there is none."""
        return _prev_fire(self.cron, self.timezone, at)

    def upcoming(self, after: float, count: int) -> list[float]:
        times: list[float] = []
        current = after
        for _ in range(count):
            current = self.next_after(current)
            times.append(current)
        return times

    def between(self, after: float, end: float, limit: int) -> list[float]:
        """The fire instants in (after, end], at most `limit`: what `upcoming` gives, on
        one pass of the cron iterator (a long period costs one croniter, not one each)."""
        local = datetime.fromtimestamp(after, self._zone).replace(tzinfo=None)
        it = _croniter()(self.cron, local, second_at_beginning=self._seconds)
        times: list[float] = []
        last = after
        while len(times) < limit:
            instant = self._to_epoch(it.get_next(datetime))
            if instant > end:
                break
            if instant > last:  # not merged into an earlier firing by a DST change
                times.append(instant)
                last = instant
        return times

    def marked(self, after: float, count: int) -> list[Planned]:
        """The next `count` firings after `after` as `upcoming` gives them, each with the
        wall time the expression named and what a DST change does to it; wall times a
        change swallows come as extra entries with no instant (mark `skipped`)."""
        local = datetime.fromtimestamp(after, self._zone).replace(tzinfo=None)
        it = _croniter()(self.cron, local, second_at_beginning=self._seconds)
        planned: list[Planned] = []
        last = after
        fired = 0
        for _ in range(10_000):
            if fired == count:
                break
            wall = it.get_next(datetime)
            instant = self._to_epoch(wall)
            if instant <= last:
                if fired:  # merged into an earlier firing by a change, not before `after`
                    planned.append(Planned(wall, None, "skipped"))
                continue
            planned.append(Planned(wall, instant, self._mark(wall, instant)))
            last = instant
            fired += 1
        return planned

    def _mark(self, wall: datetime, instant: float) -> str | None:
        shown = datetime.fromtimestamp(instant, self._zone).replace(tzinfo=None)
        if shown != wall:
            return "moved"  # the wall time does not exist (clocks went forward)
        first = wall.replace(tzinfo=self._zone, fold=0).utcoffset()
        if first != wall.replace(tzinfo=self._zone, fold=1).utcoffset():
            return "repeated"  # the wall time happens twice (clocks went back): fires once
        return None


@frozen
class Planned:
    """One upcoming firing: the wall time the cron expression named, the instant it fires
    (None: a DST change merged it into an earlier firing) and the DST mark, if any."""

    wall: datetime
    instant: float | None
    mark: str | None  # None, "moved", "repeated" or "skipped"


def paused_now(schedule: Schedule, now: float) -> bool:
    """Is the schedule paused at `now`? A pause with an end is over once it passes, with
    no one resuming it."""
    return schedule.paused and (schedule.paused_until is None or now < schedule.paused_until)


def paused_during(schedule: Schedule, at: float) -> bool:
    """Did a deliberate pause cover the nominal time `at` (the current one or an earlier)?
    Such a firing was not missed, and is never caught up."""
    if schedule.paused:
        start = schedule.paused_at if schedule.paused_at is not None else -math.inf
        end = schedule.paused_until if schedule.paused_until is not None else math.inf
        if start <= at < end:
            return True
    return any(start <= at < end for start, end in schedule.pauses)


def catch_up_time(clock: CronClock, now: float, grace: float) -> float | None:
    """The one missed fire time to run on start, if the newest missed firing is within
    the grace window. Older missed firings coalesce into it."""
    newest = clock.prev_at_or_before(now)
    if newest is None or now - newest > grace:
        return None
    return newest


def retry_delay(attempt: int, retries: int, backoff: float, backoff_max: float) -> float | None:
    """Seconds to wait before the next attempt after `attempt` failed; None when exhausted.
    Exponential: backoff, 2*backoff, 4*backoff... capped at backoff_max."""
    if attempt > retries:
        return None
    return float(min(backoff * (2 ** (attempt - 1)), backoff_max))


def resolve_cron(
    *, cron: str | None, hourly: bool = False, daily: bool = False, weekly: bool = False
) -> str:
    chosen = [
        name for name, flag in (("hourly", hourly), ("daily", daily), ("weekly", weekly)) if flag
    ]
    if len(chosen) + (cron is not None) > 1:
        raise BadInput("choose one of --hourly, --daily, --weekly or --cron")
    if chosen:
        return SHORTHANDS[chosen[0]]
    if cron is None:
        raise BadInput("no schedule given: use --hourly, --daily, --weekly or --cron EXPR")
    return validate_cron(cron)
