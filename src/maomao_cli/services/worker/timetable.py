"""The timetable: which firing is due when.

A heap of due entries over the schedules it follows, driven by the `now` it is given: no
threads, no clock, no store. Changing or dropping a schedule makes its queued entries
stale (a new generation), and stale entries are dropped as they reach the top.

After the worker could not claim for a while (etcd unreachable, an alarm), the firings of
a schedule that came due meanwhile coalesce into one entry for the newest of them
(`coalesce_missed`): one catch-up run, never one run or skip record per missed firing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ...errors import MaomaoError
from ...models import Schedule
from ...scheduling import CronClock, catch_up_time

log = logging.getLogger("maomao.worker")

# The longest the loop waits before it looks again, even with nothing due sooner.
LONGEST_WAIT = 1.0
# Regular firings due this soon get their successor's time worked out while the loop
# waits (`look_ahead`), not when they come due: at 10,000 schedules, 167 firings fall due
# in one instant, and croniter's ~0.2 ms each would come before the first claim is sent.
LOOK_AHEAD = 2.0


@dataclass(order=True)
class Due:
    due: float
    seq: int
    schedule: str = field(compare=False)
    fire_time: float = field(compare=False)
    generation: int = field(compare=False)  # stale entries are dropped when a schedule changes
    attempt: int = field(compare=False, default=1)
    trigger: str = field(compare=False, default="schedule")
    # Identifies this attempt in its claim, so a claim retried after a lost answer is ours.
    nonce: str = field(compare=False, default_factory=lambda: uuid.uuid4().hex[:12])
    # Was the schedule's next regular firing queued after this one? (Once, when it is taken.)
    next_queued: bool = field(compare=False, default=False)
    # A catch-up standing for missed firings: how many (None: unknown, on start) and the
    # oldest of them.
    coalesced: int | None = field(compare=False, default=None)
    missed_from: float | None = field(compare=False, default=None)
    # Claimed by us before a connection broke (its answer lost): finished on its own.
    claimed: bool = field(compare=False, default=False)
    # Seconds the start was delayed after the nominal time (the schedule's jitter).
    jitter: float = field(compare=False, default=0.0)
    # An operator's request (services/worker/requests.py): its key, whether the overlap
    # guard is overridden (`trigger --force`), and the backfill slot this member holds.
    request: str | None = field(compare=False, default=None)
    force: bool = field(compare=False, default=False)
    slot: str | None = field(compare=False, default=None)
    # The attempt's run record as its claim first writes it: id and start, chosen at the
    # first try (a claim tried again after a lost answer writes the same record).
    run_id: str | None = field(compare=False, default=None)
    claimed_at: float | None = field(compare=False, default=None)


# The start offset of a regular firing: (schedule, nominal time, next nominal) -> seconds.
StartOffset = Callable[[Schedule, float, float], float]


@dataclass
class _Tracked:
    schedule: Schedule
    cron: CronClock
    generation: int
    revision: int = 0  # the store revision of the schedule's record as last seen (0: unknown)


class Timetable:
    def __init__(self, start_offset: StartOffset | None = None) -> None:
        self._start_offset = start_offset
        self._heap: list[Due] = []
        self._seq = itertools.count()
        self._tracked: dict[str, _Tracked] = {}
        self._generation = itertools.count(1)
        # Regular firings whose successor is not known yet: (due, seq, schedule,
        # generation, fire time), earliest first.
        self._ahead: list[tuple[float, int, str, int, float]] = []

    def __len__(self) -> int:
        """How many schedules are followed."""
        return len(self._tracked)

    def schedule(self, name: str) -> Schedule | None:
        tracked = self._tracked.get(name)
        return None if tracked is None else tracked.schedule

    def revision(self, name: str) -> int:
        """The store revision of the schedule's record as last seen; 0 when unknown."""
        tracked = self._tracked.get(name)
        return 0 if tracked is None else tracked.revision

    def saw(self, name: str, revision: int) -> None:
        """The schedule's record was seen at `revision`, unchanged (a put of the same
        value, or a re-read after a reconnect): its claims compare this revision now."""
        tracked = self._tracked.get(name)
        if tracked is not None:
            tracked.revision = revision

    def cron_of(self, schedule: Schedule) -> CronClock | None:
        """The clock followed for this version of the schedule (None if another is)."""
        tracked = self._tracked.get(schedule.name)
        if tracked is None:
            return None
        followed = (tracked.schedule.cron, tracked.schedule.timezone)
        return tracked.cron if followed == (schedule.cron, schedule.timezone) else None

    def followed(self) -> list[Schedule]:
        return [tracked.schedule for tracked in self._tracked.values()]

    def follows(self, schedule: Schedule) -> bool:
        """Is exactly this version of the schedule followed already?"""
        tracked = self._tracked.get(schedule.name)
        return tracked is not None and tracked.schedule == schedule

    def track(
        self, schedule: Schedule, now: float, *, catch_up_grace: float | None, revision: int = 0
    ) -> bool:
        """Follow a schedule (new or changed) from `now`: queue its next firing and, given
        a grace window, the newest missed firing within it. False if its cron or time zone
        is invalid (then it is not followed)."""
        try:
            cron = CronClock(schedule.cron, schedule.timezone)
        except MaomaoError as exc:
            log.warning("skipping schedule %s: %s", schedule.name, exc)
            self._tracked.pop(schedule.name, None)
            return False
        generation = next(self._generation)
        self._tracked[schedule.name] = _Tracked(schedule, cron, generation, revision)
        missed = catch_up_time(cron, now, catch_up_grace) if catch_up_grace is not None else None
        # A firing from before the schedule existed was never missed.
        if missed is not None and missed < now and missed >= schedule.created:
            self._push(now, schedule.name, missed, generation, trigger="catch-up", queued=True)
        self._push_regular(self._tracked[schedule.name], cron.next_after(now))
        return True

    def untrack(self, name: str) -> bool:
        """Stop following a schedule; False if it was not followed."""
        return self._tracked.pop(name, None) is not None

    def keep_only(self, names: set[str]) -> None:
        for name in set(self._tracked) - names:
            del self._tracked[name]

    def pop_due(self, now: float) -> list[Due]:
        """Take every current entry due at `now`, earliest first."""
        dues: list[Due] = []
        while self._heap:
            head = self._heap[0]
            tracked = self._tracked.get(head.schedule)
            # A requested firing outlives a change of its schedule (it was asked for).
            stale = tracked is not None and tracked.generation != head.generation
            if tracked is None or (stale and head.request is None):
                heapq.heappop(self._heap)
                continue
            if head.due > now:
                break
            dues.append(heapq.heappop(self._heap))
        return dues

    def wait_time(self, now: float) -> float:
        """How long to wait from `now` before the next entry is due (at most LONGEST_WAIT)."""
        if not self._heap:
            return LONGEST_WAIT
        return max(0.0, min(self._heap[0].due - now, LONGEST_WAIT))

    def next_regular(self, due: Due) -> None:
        """Queue the regular firing after `due`'s (once), whatever becomes of this one."""
        tracked = self._tracked.get(due.schedule)
        if tracked is None or due.next_queued:
            return
        due.next_queued = True
        self._push_regular(tracked, tracked.cron.next_after(due.fire_time))

    def _push_regular(self, tracked: _Tracked, fire: float) -> None:
        """Queue a regular firing, due at its nominal time plus its jitter offset."""
        delay = 0.0
        if tracked.schedule.jitter > 0 and self._start_offset is not None:
            delay = self._start_offset(tracked.schedule, fire, tracked.cron.next_after(fire))
        due = Due(fire + delay, next(self._seq), tracked.schedule.name, fire, tracked.generation)
        due.jitter = delay
        heapq.heappush(self._heap, due)
        # A loop with never a moment to spare never looks ahead: then this stays bounded.
        if len(self._ahead) <= 2 * len(self._tracked):
            heapq.heappush(self._ahead, (due.due, due.seq, due.schedule, due.generation, fire))

    def look_ahead(self, now: float, limit: int) -> int:
        """Work out the successor of up to `limit` regular firings due within LOOK_AHEAD
        of `now` (their schedules' clocks keep it): when they come due, queueing the next
        one and the claim's life cost nothing. Returns how many it worked out."""
        done = 0
        while self._ahead and done < limit and self._ahead[0][0] <= now + LOOK_AHEAD:
            _, _, name, generation, fire = heapq.heappop(self._ahead)
            tracked = self._tracked.get(name)
            if tracked is None or tracked.generation != generation:
                continue  # changed or dropped since: its new entry has its own
            try:
                tracked.cron.next_after(fire)
            except MaomaoError:
                continue  # never fires again: said when it comes due
            done += 1
        return done

    def push_requested(self, due: Due) -> bool:
        """Queue a firing an operator asked for; False if the schedule is not followed."""
        tracked = self._tracked.get(due.schedule)
        if tracked is None:
            return False
        due.generation = tracked.generation
        due.seq = next(self._seq)
        due.next_queued = True  # the schedule's own next firing is queued already
        heapq.heappush(self._heap, due)
        return True

    def coalesce_missed(self, now: float) -> list[Due]:
        """Merge each schedule's first attempts due at `now` into one catch-up entry for
        its newest fire time at or before `now`; returns the catch-ups made."""
        groups: dict[str, list[Due]] = {}
        kept: list[Due] = []
        for due in self._heap:
            tracked = self._tracked.get(due.schedule)
            if tracked is None or (tracked.generation != due.generation and due.request is None):
                continue  # stale
            # A requested firing was asked for by its nominal time: never merged away.
            if (
                due.attempt == 1
                and due.fire_time <= now
                and not due.claimed
                and due.request is None
            ):
                groups.setdefault(due.schedule, []).append(due)
            else:
                kept.append(due)
        made = []
        for name, group in groups.items():
            merged = self._merge(self._tracked[name], group, now)
            kept.append(merged)
            if merged.coalesced is not None:
                made.append(merged)
        heapq.heapify(kept)
        self._heap = kept
        return made

    def fire_times_before(self, name: str, fire_time: float, count: int) -> list[float]:
        """Up to `count` fire times of a schedule before `fire_time`, newest first."""
        tracked = self._tracked.get(name)
        found: list[float] = []
        while tracked is not None and len(found) < count:
            previous = tracked.cron.prev_at_or_before(fire_time - 1e-3)
            if previous is None:
                break
            found.append(previous)
            fire_time = previous
        return found

    def _merge(self, tracked: _Tracked, group: list[Due], now: float) -> Due:
        oldest = min(group, key=lambda d: d.missed_from or d.fire_time)
        latest = max(group, key=lambda d: d.fire_time)
        newest = max(tracked.cron.prev_at_or_before(now) or latest.fire_time, latest.fire_time)
        if len(group) == 1 and newest == latest.fire_time:
            return latest  # nothing missed beside it
        start = oldest.missed_from or oldest.fire_time
        due = Due(
            newest,
            next(self._seq),
            latest.schedule,
            newest,
            tracked.generation,
            trigger="catch-up",
            # Only the schedule's pending regular entry has no successor queued yet; if it
            # is in the group, the merged entry queues the one after `newest`.
            next_queued=all(d.next_queued for d in group),
            coalesced=count_fire_times(tracked.cron, start, newest),
            missed_from=start,
        )
        return due

    def queue_retry(self, name: str, fire_time: float, attempt: int, at: float) -> bool:
        """Queue attempt `attempt` of a firing, due at `at`; False if the schedule is gone."""
        tracked = self._tracked.get(name)
        if tracked is None:
            return False
        self._push(
            at, name, fire_time, tracked.generation, attempt=attempt, trigger="retry", queued=True
        )
        return True

    def pass_up(self, dues: list[Due], *, later: float) -> None:
        """Leave these firings to other members: the regular ones move on to their next
        firing; retries, catch-ups and requested ones wait until `later`."""
        for due in dues:
            if due.trigger == "schedule":
                self.next_regular(due)
            else:
                self.put_back(replace(due, due=later))

    def put_back(self, due: Due) -> None:
        """Queue an entry again as it was (its claim's outcome is unknown)."""
        heapq.heappush(self._heap, due)

    def _push(
        self,
        at: float,
        name: str,
        fire_time: float,
        generation: int,
        *,
        attempt: int = 1,
        trigger: str = "schedule",
        queued: bool = False,
    ) -> None:
        due = Due(at, next(self._seq), name, fire_time, generation, attempt, trigger)
        due.next_queued = queued
        heapq.heappush(self._heap, due)


# Counting a long outage of a per-second schedule stops here ("at least" this many).
COUNT_LIMIT = 100_000


def count_fire_times(cron: CronClock, first: float, last: float) -> int:
    """How many fire times lie in [first, last] (first and last being fire times)."""
    count, current = 1, first
    while count < COUNT_LIMIT:
        current = cron.next_after(current)
        if current > last:
            break
        count += 1
    return count
