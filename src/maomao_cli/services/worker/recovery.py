"""Lost-run recovery: runs left `running` by members that are gone.

Each such run is marked `lost`, its overlap guard released, and its firing retried. A
compare-and-swap on the run record makes exactly one live worker the one that handles it.
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
from .policy import retry_limit

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

    def sweep(
        self, store: Store, *, schedule_of: Callable[[str], Schedule | None], retry: Retry
    ) -> None:
        """Mark `lost` the running runs of members that are gone (and of earlier processes
        of this member), and retry those whose schedule allows another attempt."""
        live = {self._keys.leaf(e.key) for e in store.scan(self._keys.members())}
        for entry in store.scan(self._keys.runs()):
            run = decode(Run, entry)
            if run is None or not self._is_lost(run, live):
                continue
            lost = replace(
                run,
                status="lost",
                finished=self._clock.now(),
                error=f"member {run.member} stopped before the run finished",
            )
            if not store.replace(entry.key, lost.to_json(), mod_revision=entry.mod_revision):
                continue  # another worker handled it
            log.warning("run %s of %s on %s marked lost", run.id, run.tool, run.member)
            self._follow_up(store, run, schedule_of, retry)

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
