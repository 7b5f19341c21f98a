"""Lost-run recovery: runs left `running` by members that are gone.

Each such run is marked `lost`, its overlap guard released, and its firing retried. A
compare-and-swap on the run record makes exactly one live worker the one that handles it.
In mode `everywhere` a run belongs to its member: others mark it lost (saying so) but
never retry it; the member itself retries it when it comes back within the grace window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from ...config import WorkerSettings
from ...keys import Keys
from ...models import Run, Schedule
from ...ports import Clock
from ...store.base import Store
from ..records import decode
from .claims import GuardValue, guard_key
from .policy import misfire_grace, retry_limit
from .retries import Queue, adopt

log = logging.getLogger("maomao.worker")

# Queues attempt `attempt` of a schedule's firing at `fire_time` now.
Retry = Callable[[str, float, int], object]


class LostRuns:
    def __init__(
        self, keys: Keys, member: str, *, started: float, settings: WorkerSettings, clock: Clock
    ) -> None:
        self._keys = keys
        self._member = member
        self._started = started  # when this process of the member started
        self._settings = settings
        self._clock = clock
        self._reclaimed: set[str] = set()  # own lost runs of mode everywhere, retried already

    def sweep(
        self,
        store: Store,
        *,
        schedule_of: Callable[[str], Schedule | None],
        retry: Retry,
        adopt_retries: Queue | None = None,
    ) -> None:
        """Mark `lost` the running runs of members that are gone (and of earlier processes
        of this member), and retry those whose schedule allows another attempt; with
        `adopt_retries`, queue there the retries those members had queued."""
        live = {self._keys.leaf(e.key) for e in store.scan(self._keys.members())}
        entries = store.scan(self._keys.runs())
        # Read after the runs: a manual run's key is written before its first record.
        held = {self._keys.leaf(e.key) for e in store.scan(self._keys.held_runs())}
        for entry in entries:
            run = decode(Run, entry)
            if run is None or run.id in held:
                continue
            if self._earlier_own(run) and run.status == "lost":
                # Marked lost by another member while we were gone: ours to re-run.
                self._retry_own(run, schedule_of, retry)
                continue
            if not self._is_lost(run, live):
                continue
            schedule = schedule_of(run.schedule) if run.schedule is not None else None
            lost = replace(
                run, status="lost", finished=self._clock.now(), error=self._reason(run, schedule)
            )
            if not store.replace(entry.key, lost.to_json(), mod_revision=entry.mod_revision):
                if self._earlier_own(run):  # another member marked it first
                    self._retry_own(run, schedule_of, retry)
                continue  # another worker handled it
            log.warning("run %s of %s on %s marked lost", run.id, run.tool, run.member)
            self._follow_up(store, run, schedule_of, retry)
        if adopt_retries is not None:
            adopt(
                store,
                self._keys,
                member=self._member,
                process=self._started,
                live=live,
                schedule_of=schedule_of,
                queue=adopt_retries,
                now=self._clock.now(),
            )

    def _earlier_own(self, run: Run) -> bool:
        return run.member == self._member and (run.started or 0) < self._started

    def _reason(self, run: Run, schedule: Schedule | None) -> str:
        reason = f"member {run.member} stopped before the run finished"
        if schedule is not None and schedule.mode == "everywhere" and run.member != self._member:
            grace = misfire_grace(schedule, self._settings)
            reason += (
                f"; mode everywhere: only {run.member} re-runs it, if it is back within "
                f"{grace:.0f}s of the firing"
            )
        return reason

    def _retry_own(
        self, run: Run, schedule_of: Callable[[str], Schedule | None], retry: Retry
    ) -> None:
        """Our own lost run of a schedule in mode everywhere: retry it, within grace."""
        if run.schedule is None or run.fire_time is None or run.id in self._reclaimed:
            return
        schedule = schedule_of(run.schedule)
        if schedule is None or schedule.mode != "everywhere":
            return  # mode once: the member that marked it lost retried it
        self._reclaimed.add(run.id)
        late_by = self._clock.now() - run.fire_time
        if late_by > misfire_grace(schedule, self._settings):
            log.info("not re-running lost run %s: %.0fs after its firing", run.id, late_by)
            return
        if run.attempt <= retry_limit(schedule, self._settings):
            retry(run.schedule, run.fire_time, run.attempt + 1)

    def _is_lost(self, run: Run, live: set[str]) -> bool:
        if run.status != "running":
            return False
        if run.member in live and run.member != self._member:
            return False
        # Ours, from this process: still going.
        return not (run.member == self._member and (run.started or 0) >= self._started)

    def _follow_up(
        self,
        store: Store,
        run: Run,
        schedule_of: Callable[[str], Schedule | None],
        retry: Retry,
    ) -> None:
        if run.schedule is None or run.fire_time is None:
            return
        schedule = schedule_of(run.schedule)
        if schedule is None:
            return
        if not schedule.overlap:
            release_lost_guard(store, self._keys, schedule, run)
        if schedule.mode == "everywhere":
            if run.member == self._member:
                self._retry_own(run, schedule_of, retry)
            return  # another member's own firing: never ours to re-run
        if run.attempt <= retry_limit(schedule, self._settings):
            retry(run.schedule, run.fire_time, run.attempt + 1)


def release_lost_guard(store: Store, keys: Keys, schedule: Schedule, run: Run) -> None:
    """A lost run's overlap guard lives on its dead member's lease for up to a lease TTL
    more: release it now, or its retry and the next firings are skipped as overlapping."""
    key = guard_key(keys, schedule, run.member)
    entry = store.get(key)
    if entry is None:
        return
    held = GuardValue.decode(entry.value)
    if held is not None and held.member == run.member and held.fire_time == run.fire_time:
        # Only if unchanged: a live member may have taken the guard meanwhile.
        store.delete_if(key, mod_revision=entry.mod_revision)
