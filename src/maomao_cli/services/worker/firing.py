"""Firing: claim due firings this member can start now, act on each claim's outcome.

A member claims a firing only when a run slot is free for it (`max_parallel`), so it
starts every run it wins at once and holds no queue of claimed runs: a firing it cannot
start stays unclaimed, for the other members, and for itself once a slot frees (it waits
here, in `waiting`, until then). Skips (overlap, beyond the grace window) need no slot.
A claim whose outcome is unknown (the connection broke) is settled after reconnecting:
if it is ours, the firing is ours to finish; if not, it joins the missed firings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor

from ...config import WorkerSettings
from ...errors import MaomaoError
from ...keys import Keys
from ...models import Schedule
from ...ports import Clock
from ...store.base import Claim, ClaimOutcome, Lease, Store
from .claims import ClaimPlan, ClaimValue, claim_owner, plan_claim
from .execution import (
    Execution,
    RunExecutor,
    Shared,
    WorkerStats,
)
from .observer import NoObserver, WorkerObserver
from .policy import claim_life, misfire_grace
from .requests import Requests
from .timetable import LONGEST_WAIT, Due

log = logging.getLogger("maomao.worker")

__all__ = ["Firing", "RunExecutor", "Shared", "WorkerStats"]

# Firing claims live on leases never refreshed, one per claim life (policy.claim_life):
# a lease of 1.5 x life is granted afresh every life / 2 seconds, so every claim expires
# between life and 1.5 x life seconds after it was made (at most [firings_ttl] x 1.5).

# After an outage a member claims nothing for this long (or as long as the outage lasted,
# if shorter) once it is back, so the other
# members back from the same outage (they retry every RECONNECT_MAX seconds at most) have
# written their outboxes and released the overlap guards of runs that ended meanwhile:
# otherwise the first one back would skip the catch-up as overlapping a run long over.
RESUME_SETTLE = 3.0
RECONNECT_MAX = 2.0

# A member back from an outage later than another finds that one running the schedule
# again: a claim on one of the firings just before its catch-up says so.
RESUMED_LOOKBACK = 3

# The timetable's look-ahead (Timetable.look_ahead): this many firings at a time (about
# 0.2 ms each), and only while the next firing is at least this far off.
LOOK_AHEAD_BATCH = 16
LOOK_AHEAD_MIN_WAIT = 0.02

# One due firing on its way: its schedule, what was planned, and the claim sent.
_Planned = tuple[Due, Schedule, ClaimPlan, Claim]


class Firing:
    def __init__(
        self,
        settings: WorkerSettings,
        keys: Keys,
        *,
        member: str,
        labels: dict[str, str],
        guard_lease: Callable[[], int | None],
        shared: Shared,
        clock: Clock,
        store: Callable[[], Store],
        runs: Callable[[], RunExecutor | None],
        pools: tuple[Executor, Executor],
        slots: int = 1,
        process: float = 0.0,
        observer: WorkerObserver | None = None,
        requests: Requests | None = None,
    ) -> None:
        self._observer: WorkerObserver = observer or NoObserver()
        self._settings = settings
        # Requested firings (trigger, backfill): told when their claims are settled.
        self._requests = requests
        self._keys = keys
        self._member = member
        self._labels = labels
        # The lease this member's overlap guards live on (its member lease).
        self._guard_lease = guard_lease
        self._shared = shared
        self._clock = clock
        self._store = store
        self._slots = slots
        # The run threads, and one thread for bookkeeping (skipped-run records) off the loop.
        pool, self._books = pools
        self._pool = pool
        self.execution = Execution(
            settings,
            keys,
            member=member,
            process=process,
            shared=shared,
            clock=clock,
            store=store,
            runs=runs,
            claim_lease=self._claim_lease_id,
            pool=pool,
            observer=self._observer,
            requests=requests,
        )
        self.stats = self.execution.stats
        # Due firings with no free slot here yet, oldest first (the scheduler loop's own).
        self._waiting: list[Due] = []
        # Claims refused as their schedule had changed, with the revision they compared.
        self._refused: list[tuple[Due, int]] = []
        # Claims whose outcome is unknown, settled after reconnecting.
        self._unknown: list[Due] = []
        self._claim_leases: dict[int, tuple[Lease, float]] = {}  # by life: lease, granted at
        self._hold_until = 0.0  # monotonic; no claims before (see RESUME_SETTLE)
        self._coalesce_pending = False
        self._lease_lock = threading.Lock()

    # Running runs ------------------------------------------------------------

    def running(self) -> int:
        return self.execution.running()

    def free_slots(self) -> int:
        return max(0, self._slots - self.running())

    def startable(self) -> bool:
        """Is a waiting firing startable now (a slot freed, or its schedule's change came
        in after its claim was refused for it)?"""
        self._take_back_refused()
        return bool(self._waiting) and self.free_slots() > 0 and not self._held()

    def _take_back_refused(self) -> None:
        """Firings refused because their schedule changed wait until this member has seen
        a newer revision of it (or its removal), then are planned again."""
        if not self._refused:
            return
        with self._shared.lock:
            seen = self._shared.timetable.revision
            moved = [due for due, refused in self._refused if seen(due.schedule) != refused]
            self._refused = [(d, r) for d, r in self._refused if seen(d.schedule) == r]
        if moved:
            self._waiting = sorted([*self._waiting, *moved])

    def _held(self) -> bool:
        return self._clock.monotonic() < self._hold_until

    def wait_for_runs(self, seconds: float, *, unless: threading.Event | None = None) -> None:
        """Until no run is running, `seconds` passed, or `unless` is set."""
        deadline = self._clock.monotonic() + seconds
        while True:
            self._shared.wake.clear()
            if not self.running() or self._clock.monotonic() >= deadline:
                return
            if unless is not None and unless.is_set():
                return
            self._clock.wait(self._shared.wake, 0.2)

    def stop_running(self) -> None:
        self.execution.stop_running()

    def close(self) -> None:
        """After the runs are over: let the bookkeeping finish."""
        self._books.shutdown(wait=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def queue_retry(self, name: str, fire_time: float, attempt: int, delay: float) -> bool:
        return self.execution.queue_retry(name, fire_time, attempt, delay)

    # Claiming ----------------------------------------------------------------

    def forget_claim_lease(self) -> None:
        """After a reconnect: the next claim gets a lease from the new connection."""
        with self._lease_lock:
            self._claim_leases.clear()

    def _claim_lease_id(self, life: int) -> int:
        with self._lease_lock:
            now = self._clock.now()
            held = self._claim_leases.get(life)
            if held is None or now - held[1] > life / 2:
                held = (self._store().grant_lease(life + life // 2), now)
                self._claim_leases[life] = held
            return held[0].id

    def _lease_for(self, schedule: Schedule, due: Due) -> int:
        with self._shared.lock:
            cron = self._shared.timetable.cron_of(schedule)  # its next firing known already
        return self._claim_lease_id(claim_life(schedule, due.fire_time, self._settings, cron))

    def _plan(self, due: Due, now: float) -> tuple[Schedule, ClaimPlan] | None:
        """Plan one due entry: queue the schedule's next firing (once), and plan the claim
        if this member takes part."""
        with self._shared.lock:
            schedule = self._shared.timetable.schedule(due.schedule)
            if schedule is None:
                return None  # removed since it was taken off the timetable
            revision = self._shared.timetable.revision(due.schedule)
            self._shared.timetable.next_regular(due)
        plan = plan_claim(
            schedule,
            due,
            member=self._member,
            labels=self._labels,
            now=decided_at(due, now),
            grace=misfire_grace(schedule, self._settings),
            keys=self._keys,
            revision=revision,
        )
        return None if plan is None else (schedule, plan)

    def _select(self, dues: list[Due]) -> list[tuple[Due, Schedule, ClaimPlan]]:
        """What to claim now: skips, and as many runs as there are free slots; the other
        runs wait here, unclaimed. Retries go first, and one run per overlap guard: two
        claims of one guard sent together would race for it, and a retry (a lost run's,
        say) would lose to a catch-up and be skipped; the second one waits for the next
        look, when the guard is settled."""
        now = self._clock.now()
        self._take_back_refused()
        candidates = sorted([*self._waiting, *dues], key=lambda d: (d.trigger != "retry", d))
        self._waiting = []
        held = self._held()
        free = self.free_slots()
        guards: set[str] = set()
        chosen = []
        for due in candidates:
            planned = self._plan(due, now)
            if planned is None:
                continue
            schedule, plan = planned
            if held or plan.guard in guards:
                self._waiting.append(due)
                continue
            if not plan.late:
                if free <= 0:
                    self._waiting.append(due)
                    continue
                free -= 1
            if plan.guard is not None:
                guards.add(plan.guard)
            chosen.append((due, schedule, plan))
        self._waiting.sort()
        return chosen

    def fire(self, dues: list[Due]) -> MaomaoError | None:
        """Claim what can be started of `dues` and of the waiting firings (one transaction
        each, sent together), then act on each outcome. The error of an outcome that is
        unknown (the connection is lost), else None. Unavailable if nothing could be
        claimed."""
        self.execution.retry_stale_guards(self._store(), self._clock.monotonic())
        chosen = self._select(dues)
        if not chosen:
            return None
        try:
            guard_lease = self._guard_lease()
            planned: list[_Planned] = [
                (
                    due,
                    schedule,
                    plan,
                    plan.claim(
                        lease=self._lease_for(schedule, due),
                        guard_lease=guard_lease,
                        writes=self.execution.claim_writes(schedule, due, late=plan.late),
                    ),
                )
                for due, schedule, plan in chosen
            ]
        except MaomaoError:
            for due, _, _ in chosen:  # nothing was sent: planned anew next time
                due.run_id = due.claimed_at = None
            self._waiting = sorted([*self._waiting, *(due for due, _, _ in chosen)])
            raise
        outcomes = self._store().claim([claim for _, _, _, claim in planned])
        unknown: MaomaoError | None = None
        won: list[tuple[Schedule, Due]] = []
        for (due, schedule, plan, _), outcome in zip(planned, outcomes, strict=True):
            known = self._act_on(due, schedule, plan, outcome, won)
            if not known and isinstance(outcome, MaomaoError):
                unknown = unknown or outcome
        self.execution.start_all(won)
        return unknown

    def _act_on(
        self,
        due: Due,
        schedule: Schedule,
        plan: ClaimPlan,
        outcome: ClaimOutcome | MaomaoError,
        won: list[tuple[Schedule, Due]],
    ) -> bool:
        """Act on one claim's outcome (a run to start goes on `won`); False if it is
        unknown."""
        if isinstance(outcome, MaomaoError):
            self._unknown.append(due)  # settled after reconnecting
            return False
        if outcome == "changed":
            # Nothing was written: planned anew once the schedule's watch event is in (a
            # pause then stops it), not before, or the claim would be refused again.
            log.info("schedule %s changed before its firing was claimed", schedule.name)
            due.run_id = due.claimed_at = None
            assert plan.unless_changed is not None, "only a compared claim is refused so"
            self._refused.append((due, plan.unless_changed[1]))
            return True
        if due.trigger == "retry":
            self.execution.forget_pending(schedule, due)
        lag = self._clock.now() - due.due
        self._observer.claimed(schedule.name, won=outcome != "taken", lag=lag)
        started = outcome == "won" and not plan.late
        if due.request is not None and self._requests is not None:
            store = self._store()
            self._books.submit(self._requests.claimed, store, due, schedule, started=started)
        if outcome == "taken":
            self.stats.claims_lost += 1
            return True
        self.stats.claims_won += 1
        # A skip was recorded by the claim itself (Execution.claim_writes).
        if outcome == "busy":
            self._observer.skipped(schedule.name, "overlap")
            self.execution.skipped_at_claim(schedule, due, late=False)
        elif plan.late:
            self._observer.missed(schedule.name, "beyond_grace")
            self.execution.skipped_at_claim(schedule, due, late=True)
        else:
            won.append((schedule, due))
        return True

    # After a reconnect ---------------------------------------------------------

    def resume(self, store: Store, *, outage: float) -> None:
        """After (re)connecting: release the guards of runs that ended meanwhile, settle
        the claims whose outcome was unknown (ours: finished on their own; not: missed),
        and put what waited back on the timetable. After an outage of `outage` seconds,
        claim nothing for as long, at most RESUME_SETTLE seconds; then the firings of each
        schedule missed meanwhile coalesce into one catch-up (`take_due`). Unavailable
        leaves everything as it was."""
        self.execution.release_stale_guards(store)
        ours = [due for due in self._unknown if self._holds(store, due)]
        with self._shared.lock:
            refused = [due for due, _ in self._refused]
            for due in [*self._waiting, *self._unknown, *refused]:
                due.claimed = due in ours  # claimed by us before the cut: never coalesced
                if not due.claimed:  # never applied: a new claim, decided anew
                    due.run_id = due.claimed_at = None
                self._shared.timetable.put_back(due)
            self._waiting, self._unknown, self._refused = [], [], []
        self._coalesce_pending = True
        # Members cut off by the same outage are back within about as long as it lasted.
        self._hold_until = self._clock.monotonic() + min(max(outage, 0.0), RESUME_SETTLE)

    def take_due(self) -> tuple[list[Due], float]:
        """For the scheduler loop: what is due now, and how long to wait if nothing is."""
        if self._held():
            return [], min(LONGEST_WAIT, self._hold_until - self._clock.monotonic())
        if self._coalesce_pending:
            self._coalesce_pending = False
            self._coalesce()
        with self._shared.lock:
            now = self._clock.now()
            return self._shared.timetable.pop_due(now), self._shared.timetable.wait_time(now)

    def look_ahead(self, wait: float) -> bool:
        """With nothing due for `wait` seconds: prepare a few of the firings due soon (the
        loop then looks again, one may have come due). False when there was nothing to do."""
        if wait < LOOK_AHEAD_MIN_WAIT or self._held():
            return False
        with self._shared.lock:
            now = self._clock.now()
            return self._shared.timetable.look_ahead(now, LOOK_AHEAD_BATCH) > 0

    def _coalesce(self) -> None:
        with self._shared.lock:
            merged = self._shared.timetable.coalesce_missed(self._clock.now())
        for due in merged:
            try:
                resumed = self._resumed_by_others(self._store(), due)
            except MaomaoError:
                resumed = False  # a catch-up then; its claim decides
            if resumed:
                due.trigger, due.coalesced, due.missed_from = "schedule", None, None
            else:
                log.info(
                    "%s: %d missed firing(s) coalesced into one catch-up",
                    due.schedule,
                    due.coalesced,
                )

    def _resumed_by_others(self, store: Store, due: Due) -> bool:
        """Did a member claim one of the firings just before this catch-up's? Then the
        schedule runs again, and this one is a regular firing."""
        with self._shared.lock:
            schedule = self._shared.timetable.schedule(due.schedule)
            before = self._shared.timetable.fire_times_before(
                due.schedule, due.fire_time, RESUMED_LOOKBACK
            )
        if schedule is None:
            return False
        # Only firings of the missed stretch: one claimed before it says nothing.
        before = [fire for fire in before if fire >= (due.missed_from or due.fire_time)]
        owner = claim_owner(schedule, self._member)
        keys = [self._keys.firing(schedule.name, int(fire), owner) for fire in before]
        return any(store.get(key) is not None for key in keys)

    def _holds(self, store: Store, due: Due) -> bool:
        with self._shared.lock:
            schedule = self._shared.timetable.schedule(due.schedule)
        if schedule is None:
            return False
        plan = plan_claim(
            schedule,
            due,
            member=self._member,
            labels=self._labels,
            now=decided_at(due, self._clock.now()),
            grace=misfire_grace(schedule, self._settings),
            keys=self._keys,
        )
        if plan is None:
            return False
        entry = store.get(plan.key)
        if entry is None:
            return False
        mine = ClaimValue(self._member, due.nonce, due.trigger).encode()
        return entry.value in (mine, plan.busy.encode())


def decided_at(due: Due, now: float) -> float:
    """When a claim of `due` is planned as of: its first try, once it was sent. A claim
    tried again (its answer lost) must be the same claim, with the same records: late or
    not as it was then, or a run it recorded `running` would be taken for a skip."""
    return due.claimed_at if due.claimed_at is not None else now
