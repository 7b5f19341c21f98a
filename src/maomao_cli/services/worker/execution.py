"""Execution: a won firing, run on the run pool, ends in exactly one final record.

Whatever fails in between (etcd unreachable when the tool is read, a missing tool, a
crash in the run service), the firing's attempt is recorded (succeeded, failed, skipped
with its reason) and a retryable failure is retried per policy. Records go through the
worker's outbox, so they survive etcd outages and restarts. Retries waiting for their
backoff are recorded in etcd (services/worker/retries.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Protocol

from ...config import WorkerSettings
from ...errors import MaomaoError, NotFound
from ...keys import Keys
from ...models import Run, Schedule, Tool
from ...ports import Clock
from ...scheduling import retry_delay
from ...store.base import Store
from ..datalimit import retryable
from ..runrecords import first_writes
from .claims import GuardValue, Writes, guard_key
from .lagstats import LagStats
from .observer import NoObserver, WorkerObserver
from .policy import claim_life, misfire_grace, retry_limit
from .requests import Requests
from .retries import PendingRetry, retry_key
from .timetable import Due, Timetable
from .toolbook import ToolBook
from .wording import coalesced_note, hms, log_fields, missed_reason

log = logging.getLogger("maomao.worker")

OVERLAP_SKIP = "previous run still running (overlap forbidden)"


class RunExecutor(Protocol):
    """What the worker needs from the run service."""

    store: Store

    def execute(
        self,
        tool: Tool,
        *,
        trigger: str = "manual",
        schedule: str | None = None,
        fire_time: float | None = None,
        attempt: int = 1,
        cancel: threading.Event | None = None,
        run_id: str | None = None,
        started: float | None = None,
    ) -> Run: ...

    def save(self, run: Run) -> None: ...

    def new_run_id(self) -> str: ...


@dataclass
class WorkerStats:
    claims_won: int = 0
    claims_lost: int = 0
    runs_started: int = 0
    skipped: int = 0
    lags: LagStats = field(default_factory=LagStats)  # fixed memory, however many runs


@dataclass
class Shared:
    """What the scheduler loop shares with the other threads: the timetable, under its
    lock, and the event that wakes the loop to look at it again."""

    timetable: Timetable = field(default_factory=Timetable)
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)


class Execution:
    def __init__(
        self,
        settings: WorkerSettings,
        keys: Keys,
        *,
        member: str,
        process: float,
        shared: Shared,
        clock: Clock,
        store: Callable[[], Store],
        runs: Callable[[], RunExecutor | None],
        claim_lease: Callable[[int], int],  # the claim lease of a claim life
        pool: Executor,
        observer: WorkerObserver | None = None,
        requests: Requests | None = None,
    ) -> None:
        self._observer: WorkerObserver = observer or NoObserver()
        self._settings = settings
        self._keys = keys
        self._member = member
        # Requested firings (trigger, backfill): a backfill run's slot goes when it is over.
        self._requests = requests
        self._process = process  # when this process of the member started
        self._shared = shared
        self._clock = clock
        self._store = store
        self._runs = runs
        self._claim_lease = claim_lease
        self._pool = pool
        self._running: dict[str, tuple[threading.Event, str]] = {}
        self._running_lock = threading.Lock()
        # Tools as the watch keeps them: a run reads none from etcd (worker/toolbook.py).
        self.tools = ToolBook(keys)
        # Overlap guards of finished runs that etcd could not be told about: our lease may
        # outlive an outage, so they are released on reconnecting, or they would turn the
        # catch-up into an overlap skip.
        self._stale_guards: dict[str, GuardValue] = {}
        self._stale_retry_at = 0.0  # monotonic
        self.stats = WorkerStats()

    # Running runs ------------------------------------------------------------

    def running(self) -> int:
        with self._running_lock:
            return len(self._running)

    def stop_running(self) -> None:
        """Stop every running run's container (each is recorded by its run thread)."""
        with self._running_lock:
            running = list(self._running.values())
        for cancel, name in running:
            log.warning("stopping the run of %s (shutdown grace over)", name)
            cancel.set()

    def start_all(self, won: list[tuple[Schedule, Due]]) -> None:
        """Start the runs of a burst of won claims: each is registered and said first,
        then all are handed to the pool (a run thread started early would compete with
        the loop for the interpreter while it registers the others)."""
        started = []
        for schedule, due in won:
            cancel = threading.Event()
            token = f"{schedule.name}@{due.fire_time}#{due.attempt}"
            self.stats.lags.record(self._clock.now() - due.due)
            self.stats.runs_started += 1
            with self._running_lock:  # registered before submitting: a quick run must find itself
                self._running[token] = (cancel, schedule.name)
            run_id = due.run_id  # chosen with the claim: logs join on it
            log.info(
                "claimed %s @ %s%s",
                schedule.name,
                hms(due.fire_time),
                f" ({due.trigger}, attempt {due.attempt})" if due.trigger != "schedule" else "",
                extra=log_fields("claimed", schedule, due, run_id=run_id),
            )
            started.append((schedule, due, cancel, token, run_id))
        for run in started:
            self._pool.submit(self._execute, *run)

    def _execute(
        self,
        schedule: Schedule,
        due: Due,
        cancel: threading.Event,
        token: str,
        run_id: str | None = None,
    ) -> None:
        try:
            self._run_to_record(schedule, due, cancel, run_id)
        finally:
            # The overlap guard goes before the run counts as over: shutdown waits for
            # running runs and then closes the store, which this delete must not outlive.
            # A forced firing (`trigger --force`, backfill) took no guard: the guard there
            # is a regular run's.
            if not schedule.overlap and not due.force:
                self._release_guard(schedule, due)
            if due.slot is not None and self._requests is not None:
                with contextlib.suppress(MaomaoError):
                    self._requests.finished(self._store(), due)
            with self._running_lock:
                self._running.pop(token, None)
            self._shared.wake.set()

    def _release_guard(self, schedule: Schedule, due: Due) -> None:
        key = guard_key(self._keys, schedule, self._member)
        try:
            self._store().delete(key)
        except MaomaoError as exc:
            log.warning(
                "could not release the overlap guard of %s (%s); trying again",
                schedule.name,
                exc.message,
            )
            with self._running_lock:
                self._stale_guards[key] = GuardValue(self._member, due.fire_time)

    def release_stale_guards(self, store: Store) -> None:
        """Delete the guards of runs that ended while etcd could not be told (if unchanged);
        those not reached (MaomaoError) are kept for the next try."""
        with self._running_lock:
            stale, self._stale_guards = self._stale_guards, {}
        pending = dict(stale)
        try:
            for key, ours in stale.items():
                entry = store.get(key)
                if entry is not None and GuardValue.decode(entry.value) == ours:
                    store.delete_if(key, mod_revision=entry.mod_revision)
                del pending[key]
        finally:
            if pending:
                with self._running_lock:
                    self._stale_guards = {**pending, **self._stale_guards}

    def retry_stale_guards(self, store: Store, now: float) -> None:
        """Before claiming, at most once a second: a release that failed while etcd was
        still reachable (a timeout under load) would otherwise hold the schedule busy,
        every firing skipped as overlapping, until this member reconnects."""
        if not self._stale_guards or now < self._stale_retry_at:
            return
        self._stale_retry_at = now + 1.0
        with contextlib.suppress(MaomaoError):
            self.release_stale_guards(store)

    def _run_to_record(
        self, schedule: Schedule, due: Due, cancel: threading.Event, run_id: str | None
    ) -> None:
        runs = self._runs()
        assert runs is not None
        try:
            tool = self.tools.get(self._store(), schedule.tool)
        except NotFound as exc:
            self.record(schedule, due, "skipped", exc.message)
            return
        except MaomaoError as exc:
            # Claimed but not startable: recorded, and retried per policy.
            self.record(schedule, due, "failed", f"could not start: {exc.message}")
            self._plan_retry(schedule, due)
            return
        try:
            run = runs.execute(
                tool,
                trigger=due.trigger,
                schedule=schedule.name,
                fire_time=due.fire_time,
                attempt=due.attempt,
                cancel=cancel,
                run_id=run_id,
                started=due.claimed_at,
            )
        except Exception as exc:  # a run thread must never take the worker down
            # The run service recorded the run failed before raising.
            log.exception("run of %s @ %s crashed: %s", schedule.name, hms(due.fire_time), exc)
            self._plan_retry(schedule, due)
            return
        self._observer.finished(run)
        log.info(
            "finished %s @ %s: %s%s in %s",
            schedule.name,
            hms(due.fire_time),
            run.status,
            f" (exit {run.exit_code})" if run.exit_code not in (None, 0) else "",
            f"{run.duration:.1f}s" if run.duration is not None else "-",
            extra=log_fields(
                "finished",
                schedule,
                due,
                run_id=run.id,
                status=run.status,
                duration_s=run.duration,
                reason=run.error,
            ),
        )
        if due.trigger == "catch-up":
            self._note_coalesced(runs, run, due)
        failed = run.status in ("failed", "timed-out") and not cancel.is_set()
        if failed and run.retryable and retryable(run.error):  # not: data limit, owner
            self._plan_retry(schedule, due)

    def _note_coalesced(self, runs: RunExecutor, run: Run, due: Due) -> None:
        note = coalesced_note(due)
        with contextlib.suppress(Exception):  # the run is recorded already; the note is extra
            runs.save(replace(run, warning=f"{run.warning}; {note}" if run.warning else note))

    def claim_writes(self, schedule: Schedule, due: Due, *, late: bool) -> tuple[Writes, Writes]:
        """What the claim of `due` puts with it, so no firing is ever claimed without a
        record: when won, the attempt's first record (running, or skipped if it is too
        late to run); when busy (the overlap guard held), its skip."""
        runs = self._runs()
        if runs is None:
            return (), ()
        if due.run_id is None:
            due.run_id, due.claimed_at = runs.new_run_id(), self._clock.now()
        if late:
            won = self._record_of(schedule, due, "skipped", self._missed(schedule, due))
        else:
            won = self._record_of(schedule, due, "running", None)
        busy = self._record_of(schedule, due, "skipped", OVERLAP_SKIP)
        return first_writes(self._keys, won), first_writes(self._keys, busy)

    def _missed(self, schedule: Schedule, due: Due) -> str:
        late_by = (due.claimed_at or self._clock.now()) - due.fire_time
        return missed_reason(due, late_by, misfire_grace(schedule, self._settings))

    def _record_of(
        self,
        schedule: Schedule,
        due: Due,
        status: str,
        reason: str | None,
        *,
        finished: float | None = None,
    ) -> Run:
        at = due.claimed_at if due.claimed_at is not None else self._clock.now()
        final = status != "running"
        tool = self.tools.known(schedule.tool)
        return Run(
            id=due.run_id or self._new_run_id(),
            tool=schedule.tool,
            member=self._member,
            status=status,  # type: ignore[arg-type]
            trigger=due.trigger,  # type: ignore[arg-type]
            schedule=schedule.name,
            fire_time=due.fire_time,
            attempt=due.attempt,
            image=tool.image if tool is not None else None,
            started=at,
            finished=(finished or at) if final else None,
            error=reason,
            # A skipped catch-up still stands for its stretch: the record says which.
            warning=coalesced_note(due) if final and due.trigger == "catch-up" else None,
        )

    def _new_run_id(self) -> str:
        runs = self._runs()
        assert runs is not None
        return runs.new_run_id()

    def skipped_at_claim(self, schedule: Schedule, due: Due, *, late: bool) -> None:
        """A claim that wrote the firing's skip (busy, or too late): counted and said."""
        reason = self._missed(schedule, due) if late else OVERLAP_SKIP
        self._said("skipped", schedule, due, reason, due.run_id)

    def record(self, schedule: Schedule, due: Due, status: str, reason: str) -> None:
        """The final record of a won attempt that did not run (its tool gone, or not
        startable): it replaces the `running` record its claim wrote."""
        runs = self._runs()
        assert runs is not None
        run = self._record_of(schedule, due, status, reason, finished=self._clock.now())
        runs.save(run)  # the outbox keeps it while etcd is down
        self._said(status, schedule, due, reason, run.id)

    def _said(
        self, status: str, schedule: Schedule, due: Due, reason: str, run_id: str | None
    ) -> None:
        if status == "skipped":
            self.stats.skipped += 1
        log.info(
            "%s %s @ %s: %s",
            status,
            schedule.name,
            hms(due.fire_time),
            reason,
            extra=log_fields(status, schedule, due, run_id=run_id, status=status, reason=reason),
        )

    # Retrying ----------------------------------------------------------------

    def queue_retry(self, name: str, fire_time: float, attempt: int, delay: float) -> bool:
        """Queue attempt `attempt` of a firing; False if the schedule is gone."""
        with self._shared.lock:
            at = self._clock.now() + delay
            queued = self._shared.timetable.queue_retry(name, fire_time, attempt, at)
        if queued:
            self._shared.wake.set()
        return queued

    def _plan_retry(self, schedule: Schedule, due: Due) -> None:
        retries = retry_limit(schedule, self._settings)
        delay = retry_delay(
            due.attempt, retries, self._settings.backoff, self._settings.backoff_max
        )
        if delay is None:
            log.info(
                "giving up on %s @ %s after %d attempt(s)",
                schedule.name,
                hms(due.fire_time),
                due.attempt,
            )
            return
        if not self.queue_retry(schedule.name, due.fire_time, due.attempt + 1, delay):
            return
        self._record_pending(schedule, due.fire_time, due.attempt + 1, self._clock.now() + delay)
        log.info(
            "retrying %s @ %s in %.0fs (attempt %d of %d)",
            schedule.name,
            hms(due.fire_time),
            delay,
            due.attempt + 1,
            retries + 1,
        )

    def _record_pending(
        self, schedule: Schedule, fire_time: float, attempt: int, at: float
    ) -> None:
        pending = PendingRetry(self._member, self._process, schedule.name, fire_time, attempt, at)
        key = retry_key(self._keys, schedule, fire_time, attempt, self._member)
        try:
            life = claim_life(schedule, fire_time, self._settings)
            self._store().put(key, pending.encode(), lease=self._claim_lease(life))
        except MaomaoError as exc:  # still queued here; only a crash of ours would lose it
            log.warning("could not record the retry of %s in etcd: %s", schedule.name, exc)

    def forget_pending(self, schedule: Schedule, due: Due) -> None:
        """The retry's claim is decided (by anyone): its record has done its work."""
        key = retry_key(self._keys, schedule, due.fire_time, due.attempt, self._member)
        with contextlib.suppress(MaomaoError):
            self._store().delete(key)
