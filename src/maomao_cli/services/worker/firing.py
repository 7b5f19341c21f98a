"""Firing: claim a batch of due firings at once, run the ones won on the run pool, record
the skipped ones, and queue retries of failed runs."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

from ...config import WorkerSettings
from ...errors import MaomaoError, NotFound, Unavailable
from ...keys import Keys
from ...models import Run, Schedule, Tool
from ...ports import Clock
from ...scheduling import retry_delay
from ...store.base import Claim, ClaimOutcome, Lease, Store
from ..datalimit import retryable
from ..records import load
from .claims import ClaimPlan, guard_key, plan_claim
from .lagstats import LagStats
from .observer import NoObserver, WorkerObserver
from .policy import claim_life, misfire_grace, retry_limit
from .timetable import Due, Timetable

log = logging.getLogger("maomao.worker")

# Firing claims live on leases never refreshed, one per claim life (policy.claim_life):
# a lease of 1.5 x life is granted afresh every life / 2 seconds, so every claim expires
# between life and 1.5 x life seconds after it was made (at most [firings_ttl] x 1.5).


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
        observer: WorkerObserver | None = None,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._member = member
        self._labels = labels
        # The lease this member's overlap guards live on (its member lease).
        self._guard_lease = guard_lease
        self._shared = shared
        self._clock = clock
        self._store = store
        self._runs = runs
        # The run threads, and one thread for bookkeeping (skipped-run records) off the loop.
        self._pool, self._books = pools
        self._running: dict[str, tuple[threading.Event, str]] = {}
        self._running_lock = threading.Lock()
        self._claim_leases: dict[int, tuple[Lease, float]] = {}  # by life: lease, granted at
        self._lease_lock = threading.Lock()
        self.stats = WorkerStats()
        self._observer: WorkerObserver = observer or NoObserver()

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

    def close(self) -> None:
        """After the runs are over: let the bookkeeping finish, drop queued runs."""
        self._books.shutdown(wait=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

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

    def _prepare(self, due: Due) -> _Planned | None:
        """Plan one due entry: queue the schedule's next firing, and build the claim if
        this member takes part."""
        with self._shared.lock:
            schedule = self._shared.timetable.schedule(due.schedule)
            if schedule is None:
                return None  # removed since it was taken off the timetable
            if due.trigger == "schedule":
                self._shared.timetable.next_regular(due)
        plan = plan_claim(
            schedule,
            due,
            member=self._member,
            labels=self._labels,
            now=self._clock.now(),
            grace=misfire_grace(schedule, self._settings),
            keys=self._keys,
        )
        if plan is None:
            return None
        life = claim_life(schedule, due.fire_time, self._settings)
        claim = plan.claim(lease=self._claim_lease_id(life), guard_lease=self._guard_lease())
        return due, schedule, plan, claim

    def fire(self, dues: list[Due]) -> bool:
        """Claim every due firing at once (one transaction each, sent together), then act
        on each outcome. False if an outcome is unknown: that firing is back on the
        timetable, and the connection is lost. Unavailable if nothing could be claimed."""
        planned = [p for p in (self._prepare(due) for due in dues) if p is not None]
        if not planned:
            return True
        outcomes = self._store().claim([claim for _, _, _, claim in planned])
        known = True
        for (due, schedule, plan, _), outcome in zip(planned, outcomes, strict=True):
            known &= self._act_on(due, schedule, plan, outcome)
        return known

    def _act_on(
        self, due: Due, schedule: Schedule, plan: ClaimPlan, outcome: ClaimOutcome | MaomaoError
    ) -> bool:
        """Act on one claim's outcome; False if it is unknown."""
        if isinstance(outcome, MaomaoError):
            # Unknown outcome: keep the firing and claim it again after reconnecting.
            with self._shared.lock:
                self._shared.timetable.put_back(due)
            return False
        lag = self._clock.now() - due.due
        self._observer.claimed(schedule.name, won=outcome != "taken", lag=lag)
        if outcome == "taken":
            self.stats.claims_lost += 1
            return True
        self.stats.claims_won += 1
        if outcome == "busy":
            reason = "previous run still running (overlap forbidden)"
            self._observer.skipped(schedule.name, "overlap")
            self._books.submit(self._record_skipped, schedule, due, reason)
        elif plan.late:
            late_by = self._clock.now() - due.fire_time
            reason = f"missed: ran {late_by:.0f}s late, beyond the grace window"
            self._observer.missed(schedule.name, "beyond_grace")
            self._books.submit(self._record_skipped, schedule, due, reason)
        else:
            self._start_run(schedule, due)
        return True

    def _record_skipped(self, schedule: Schedule, due: Due, reason: str) -> None:
        runs = self._runs()
        assert runs is not None
        self.stats.skipped += 1
        now = self._clock.now()
        run = Run(
            id=runs.new_run_id(),
            tool=schedule.tool,
            member=self._member,
            status="skipped",
            trigger=due.trigger,  # type: ignore[arg-type]
            schedule=schedule.name,
            fire_time=due.fire_time,
            attempt=due.attempt,
            started=now,
            finished=now,
            error=reason,
        )
        runs.save(run)
        log.info(
            "skipped %s @ %s: %s",
            schedule.name,
            hms(due.fire_time),
            reason,
            extra=_fields("skipped", schedule, due, run_id=run.id, status="skipped", reason=reason),
        )

    # Running -----------------------------------------------------------------

    def _start_run(self, schedule: Schedule, due: Due) -> None:
        cancel = threading.Event()
        token = f"{schedule.name}@{due.fire_time}#{due.attempt}"
        lag = self._clock.now() - due.due
        self.stats.lags.record(lag)
        self.stats.runs_started += 1
        with self._running_lock:  # registered before submitting: a quick run must find itself
            self._running[token] = (cancel, schedule.name)
        runs = self._runs()
        run_id = runs.new_run_id() if runs is not None else None  # chosen here: logs join on it
        log.info(
            "claimed %s @ %s%s",
            schedule.name,
            hms(due.fire_time),
            f" ({due.trigger}, attempt {due.attempt})" if due.trigger != "schedule" else "",
            extra=_fields("claimed", schedule, due, run_id=run_id),
        )
        self._pool.submit(self._execute, schedule, due, cancel, token, run_id)

    def _execute(
        self,
        schedule: Schedule,
        due: Due,
        cancel: threading.Event,
        token: str,
        run_id: str | None = None,
    ) -> None:
        runs = self._runs()
        assert runs is not None
        try:
            tool = self._tool(schedule.tool)
            if tool is None:
                return
            run = runs.execute(
                tool,
                trigger=due.trigger,
                schedule=schedule.name,
                fire_time=due.fire_time,
                attempt=due.attempt,
                cancel=cancel,
                run_id=run_id,
            )
            self._observer.finished(run)
            log.info(
                "finished %s @ %s: %s%s in %s",
                schedule.name,
                hms(due.fire_time),
                run.status,
                f" (exit {run.exit_code})" if run.exit_code not in (None, 0) else "",
                f"{run.duration:.1f}s" if run.duration is not None else "-",
                extra=_fields(
                    "finished",
                    schedule,
                    due,
                    run_id=run.id,
                    status=run.status,
                    duration_s=run.duration,
                    reason=run.error,
                ),
            )
            failed = run.status in ("failed", "timed-out") and not cancel.is_set()
            if failed and run.retryable and retryable(run.error):  # not: data limit, owner
                self._plan_retry(schedule, due)
        except Exception:  # a run thread must never take the worker down
            log.exception("run of %s @ %s crashed", schedule.name, hms(due.fire_time))
        finally:
            # The overlap guard goes before the run counts as over: shutdown waits for
            # running runs and then closes the store, which this delete must not outlive.
            if not schedule.overlap:
                # On failure it still lives on our lease: it goes when we reconnect.
                with contextlib.suppress(Unavailable):
                    self._store().delete(guard_key(self._keys, schedule, self._member))
            with self._running_lock:
                self._running.pop(token, None)
            self._shared.wake.set()

    def _tool(self, name: str) -> Tool | None:
        try:
            return load(self._store(), self._keys.tool(name), Tool) or _missing_tool(name)
        except NotFound as exc:
            log.warning("%s", exc)
            return None

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
        log.info(
            "retrying %s @ %s in %.0fs (attempt %d of %d)",
            schedule.name,
            hms(due.fire_time),
            delay,
            due.attempt + 1,
            retries + 1,
        )


def _missing_tool(name: str) -> Tool:
    raise NotFound(f"schedule refers to tool {name!r}, which is not registered; skipping")


def _fields(event: str, schedule: Schedule, due: Due, **more: object) -> dict[str, object]:
    """The fields of a log line about a firing (shown by --log-format json)."""
    return {
        "event": event,
        "schedule": schedule.name,
        "tool": schedule.tool,
        "nominal": due.fire_time,
        "attempt": due.attempt,
        **{key: value for key, value in more.items() if value is not None},
    }


def hms(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))
