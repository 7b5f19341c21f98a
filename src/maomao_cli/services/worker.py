"""The worker: follows schedules through an etcd watch, claims due firings with one
create-only transaction, runs them, retries failures, and recovers the runs of dead
members.

Threads: the scheduler loop (this class's `run`), one thread per watch (schedules,
members), one keep-alive thread for the member lease, one that refreshes the etcd
endpoint list, and a pool of `max_parallel` run threads. Only the scheduler loop decides what fires; the watch threads only
update state and wake it up.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

from .. import __version__
from ..config import Settings
from ..errors import MaomaoError, NotFound, RecordError, Unavailable
from ..keys import Keys
from ..models import Member, Run, Schedule, Tool
from ..processes import pid_alive
from ..scheduling import CronClock, catch_up_time, retry_delay
from ..store.base import Claim, Lease, Store, Watch
from .datalimit import retryable
from .outbox import Outbox
from .records import decode, load

log = logging.getLogger("maomao.worker")

# Firing claims live on a lease granted afresh every CLAIM_LEASE_ROTATION seconds and
# never refreshed, so every claim expires [firings_ttl] seconds after it was made.
CLAIM_LEASE_ROTATION = 3600.0
# The endpoint list is asked of the cluster on every (re)connect and this often, so a
# member that joined later is known before the local one fails.
ENDPOINTS_REFRESH = 60.0


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
    ) -> Run: ...

    def save(self, run: Run) -> None: ...

    def new_run_id(self) -> str: ...


@dataclass(order=True)
class _Due:
    due: float
    seq: int
    schedule: str = field(compare=False)
    fire_time: float = field(compare=False)
    generation: int = field(compare=False)  # stale entries are dropped when a schedule changes
    attempt: int = field(compare=False, default=1)
    trigger: str = field(compare=False, default="schedule")
    nonce: str = field(compare=False, default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class _Tracked:
    schedule: Schedule
    clock: CronClock
    generation: int


@dataclass
class WorkerStats:
    claims_won: int = 0
    claims_lost: int = 0
    runs_started: int = 0
    skipped: int = 0
    lags: list[float] = field(default_factory=list)


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        store_factory: Callable[[], Store],
        make_runs: Callable[[Store], RunExecutor],
        member: str | None = None,
        labels: dict[str, str] | None = None,
        max_parallel: int | None = None,
        clock: Callable[[], float] = time.time,
        remove_leftovers: Callable[[str], int] | None = None,
        refresh_endpoints: Callable[[], bool] | None = None,
        endpoints_every: float = ENDPOINTS_REFRESH,
    ) -> None:
        self.settings = settings
        # Replaces the endpoints the next store_factory() uses with the cluster's members.
        self._refresh_endpoints = refresh_endpoints
        self._endpoints_every = endpoints_every
        # Removes the containers labelled with a member (those of a killed process).
        self._remove_leftovers = remove_leftovers
        self.keys = Keys(settings.etcd.prefix)
        self.member = member or settings.member
        self.labels = labels if labels is not None else dict(settings.worker.labels)
        self.max_parallel = max_parallel or settings.worker.max_parallel
        self.clock = clock
        self._store_factory = store_factory
        self._store: Store | None = None
        self._outbox: Outbox | None = None
        self._make_runs = make_runs
        self.runs: RunExecutor | None = None
        self._pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="maomao-run")
        # Bookkeeping off the scheduler loop: skipped-run records.
        self._books = ThreadPoolExecutor(1, thread_name_prefix="maomao-books")
        self.ready = threading.Event()
        self._cond = threading.Condition()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._schedules: dict[str, _Tracked] = {}
        self._generation = itertools.count(1)
        self._running: dict[str, tuple[threading.Event, str]] = {}
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._disconnected = threading.Event()
        self._member_lease: Lease | None = None
        self._claim_lease: Lease | None = None
        self._claim_lease_at = 0.0
        self._lease_lock = threading.Lock()
        self._watches: list[Watch] = []
        self._started = clock()
        self._live_members: set[str] = set()
        self.stats = WorkerStats()

    # Connection ------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            raise Unavailable("not connected to etcd")
        return self._store

    def connect(self, *, first: bool) -> None:
        """(Re)connect: register the member, load schedules, watch, recover lost runs."""
        store = self._store_factory()
        self._store = store
        if self._outbox is None:
            self._outbox = Outbox(store, runs_prefix=self.keys.runs())
            self.runs = self._make_runs(self._outbox)
        else:
            self._outbox.target = store
        self._register_member()
        if first:
            self._remove_leftover_containers()
        self._claim_lease = None
        self._load_schedules(first=first)
        flushed = self._outbox.flush()
        if flushed:
            log.info("wrote %d run record(s) kept while etcd was unreachable", flushed)
        self._sweep_lost_runs()
        self._refresh_endpoints_quietly()

    def _refresh_endpoints_quietly(self) -> None:
        if self._refresh_endpoints is None:
            return
        try:
            self._refresh_endpoints()
        except MaomaoError as exc:
            log.warning("could not refresh the etcd endpoint list: %s", exc)
        except Exception:  # a failed refresh must never stop the worker
            log.exception("refreshing the etcd endpoint list crashed")

    def _endpoints_loop(self) -> None:
        while not self._stopping.wait(self._endpoints_every):
            if not self._disconnected.is_set():
                self._refresh_endpoints_quietly()

    def _register_member(self) -> None:
        existing = load(self.store, self.keys.member(self.member), Member)
        host = socket.gethostname()
        if existing is not None and existing.pid != os.getpid():
            same_host_dead = existing.host == host and not pid_alive(existing.pid, b"maomao")
            if not same_host_dead:
                raise MaomaoError(
                    f"member {self.member!r} is already running (host {existing.host}, pid {existing.pid})",
                    hint="stop it, or give this worker another name with MAOMAO_MEMBER or [worker] member",
                )
            # A crashed worker of ours: its runs are lost; its key goes with its lease.
            self.store.delete(self.keys.member(self.member))
        lease = self.store.grant_lease(self.settings.worker.lease_ttl)
        self._member_lease = lease
        self._put_member()

    def _remove_leftover_containers(self) -> None:
        """Containers of this member left by a killed process of it: nobody waits for
        them (their runs are marked lost and retried), so they go before we run anything."""
        if self._remove_leftovers is None:
            return
        try:
            removed = self._remove_leftovers(self.member)
        except MaomaoError as exc:
            log.warning("could not remove containers left by a previous worker: %s", exc)
            return
        if removed:
            log.warning(
                "removed %d container(s) left by a previous worker %s", removed, self.member
            )

    def _member_record(self) -> Member:
        return Member(
            name=self.member,
            host=socket.gethostname(),
            version=__version__,
            started=self._started,
            labels=self.labels,
            running=len(self._running),
            pid=os.getpid(),
            heartbeat=self.clock(),
        )

    def _put_member(self) -> None:
        lease = self._member_lease
        if lease is None:
            return
        self.store.put(
            self.keys.member(self.member), self._member_record().to_json(), lease=lease.id
        )

    def _keepalive_loop(self) -> None:
        interval = max(self.settings.worker.lease_ttl / 3, 0.5)
        while not self._stopping.wait(interval):
            if self._disconnected.is_set() or self._member_lease is None:
                continue
            try:
                if not self._member_lease.refresh():
                    # The lease expired (a long pause or an etcd outage): come back as new.
                    log.warning("member lease expired; registering again")
                    self._member_lease = self.store.grant_lease(self.settings.worker.lease_ttl)
                self._put_member()
                # A record kept through a brief error that cost no reconnect goes now.
                if self._outbox is not None and self._outbox.pending:
                    self._outbox.flush()
            except Unavailable:
                self._lost_connection()

    def _lost_connection(self) -> None:
        if not self._disconnected.is_set():
            self._disconnected.set()
            with self._cond:
                self._cond.notify_all()

    # Schedules -------------------------------------------------------------

    def _load_schedules(self, *, first: bool) -> None:
        entries, revision = self.store.scan_with_revision(self.keys.schedules())
        now = self.clock()
        seen: set[str] = set()
        with self._cond:
            for entry in entries:
                schedule = decode(Schedule, entry)
                if schedule is None:
                    continue
                seen.add(schedule.name)
                current = self._schedules.get(schedule.name)
                if current is not None and current.schedule == schedule:
                    continue  # unchanged across a reconnect: keep its pending firings
                self._track(schedule, now, catch_up=first)
            for name in set(self._schedules) - seen:
                del self._schedules[name]
            self._cond.notify_all()
        for watch in self._watches:
            watch.cancel()
        self._watches = [
            self._start_watch(self.keys.schedules(), revision + 1, self._on_schedule_event),
            self._start_watch(self.keys.members(), revision + 1, self._on_member_event),
        ]

    def _track(self, schedule: Schedule, now: float, *, catch_up: bool) -> None:
        """Start following a schedule (caller holds the condition)."""
        try:
            clock = CronClock(schedule.cron, schedule.timezone)
        except MaomaoError as exc:
            log.warning("skipping schedule %s: %s", schedule.name, exc)
            self._schedules.pop(schedule.name, None)
            return
        generation = next(self._generation)
        self._schedules[schedule.name] = _Tracked(schedule, clock, generation)
        grace = self._grace(schedule)
        missed = catch_up_time(clock, now, grace) if catch_up else None
        # A firing from before the schedule existed was never missed.
        if missed is not None and missed < now and missed >= schedule.created:
            self._push(
                _Due(now, next(self._seq), schedule.name, missed, generation, trigger="catch-up")
            )
        fire = clock.next_after(now)
        self._push(_Due(fire, next(self._seq), schedule.name, fire, generation))

    def _push(self, due: _Due) -> None:
        heapq.heappush(self._heap, due)

    def _start_watch(
        self, prefix: str, revision: int, handler: Callable[[str, bytes | None], None]
    ) -> Watch:
        watch = self.store.watch(prefix, start_revision=revision)

        def follow() -> None:
            try:
                for event in watch:
                    handler(event.key, event.value)
            except MaomaoError:
                if not self._stopping.is_set():
                    self._lost_connection()

        threading.Thread(target=follow, name=f"watch{prefix}", daemon=True).start()
        return watch

    def _on_schedule_event(self, key: str, value: bytes | None) -> None:
        name = self.keys.leaf(key)
        with self._cond:
            if value is None:
                if self._schedules.pop(name, None) is not None:
                    log.info("schedule %s removed", name)
            else:
                try:
                    schedule = Schedule.from_json(value)
                except RecordError as exc:
                    log.warning("skipping %s: %s", key, exc)
                    return
                current = self._schedules.get(name)
                if current is None or current.schedule != schedule:
                    self._track(schedule, self.clock(), catch_up=False)
                    log.info(
                        "schedule %s: %s (%s)%s",
                        name,
                        schedule.cron,
                        schedule.timezone,
                        " paused" if schedule.paused else "",
                    )
            self._cond.notify_all()

    def _on_member_event(self, key: str, value: bytes | None) -> None:
        name = self.keys.leaf(key)
        if value is None and name != self.member:
            log.info("member %s left or lost its lease", name)
            threading.Thread(target=self._sweep_lost_runs_safely, daemon=True).start()

    # Firing ----------------------------------------------------------------

    def _claim_lease_id(self) -> int:
        with self._lease_lock:
            now = self.clock()
            if self._claim_lease is None or now - self._claim_lease_at > CLAIM_LEASE_ROTATION:
                self._claim_lease = self.store.grant_lease(self.settings.worker.firings_ttl)
                self._claim_lease_at = now
            return self._claim_lease.id

    def _next_due(self) -> _Due | None:
        """Pop the next entry that is due and still current (caller holds the condition)."""
        while self._heap:
            head = self._heap[0]
            tracked = self._schedules.get(head.schedule)
            if tracked is None or tracked.generation != head.generation:
                heapq.heappop(self._heap)
                continue
            if head.due > self.clock():
                return None
            return heapq.heappop(self._heap)
        return None

    def _wait_time(self) -> float:
        if not self._heap:
            return 1.0
        return max(0.0, min(self._heap[0].due - self.clock(), 1.0))

    def _prepare(self, due: _Due) -> tuple[_Due, Schedule, Claim, bool] | None:
        """Plan one due entry: queue the schedule's next firing, and build the claim if
        this member should take part (not paused, labels match)."""
        tracked = self._schedules[due.schedule]
        schedule = tracked.schedule
        if due.trigger == "schedule":
            with self._cond:  # the next regular firing, whatever happens to this one
                fire = tracked.clock.next_after(due.fire_time)
                self._push(_Due(fire, next(self._seq), schedule.name, fire, tracked.generation))
        if schedule.paused or not all(self.labels.get(k) == v for k, v in schedule.on.items()):
            return None
        epoch = int(due.fire_time)
        member = self.member if schedule.mode == "everywhere" else None
        key = (
            self.keys.firing(schedule.name, epoch, member)
            if due.attempt == 1
            else self.keys.retry_claim(schedule.name, epoch, due.attempt, member)
        )
        # The same value on a retried claim: a claim whose answer was lost is still ours.
        value = json.dumps({"member": self.member, "nonce": due.nonce, "trigger": due.trigger})
        grace = self._grace(schedule)
        late = self.clock() - due.fire_time > max(grace, 1.0) and due.trigger != "retry"
        guarded = not schedule.overlap and not late
        claim = Claim(
            key,
            value.encode(),
            lease=self._claim_lease_id(),
            # Overlap guard: created with the claim only if the previous run is over.
            guard=self.keys.active(schedule.name, member) if guarded else None,
            guard_value=json.dumps({"member": self.member, "fire_time": due.fire_time}).encode(),
            busy_value=json.dumps(
                {"member": self.member, "nonce": due.nonce, "skipped": "overlap"}
            ).encode(),
            guard_lease=self._member_lease.id if self._member_lease else None,
        )
        return due, schedule, claim, late

    def _fire_batch(self, dues: list[_Due]) -> None:
        """Claim every due firing at once (one transaction each, sent together), then act
        on each outcome."""
        planned = [p for p in (self._prepare(due) for due in dues) if p is not None]
        if not planned:
            return
        outcomes = self.store.claim([claim for _, _, claim, _ in planned])
        lost_connection = False
        for (due, schedule, _, late), outcome in zip(planned, outcomes, strict=True):
            if isinstance(outcome, MaomaoError):
                # Unknown outcome: keep the firing and claim it again after reconnecting.
                with self._cond:
                    self._push(due)
                lost_connection = True
            elif outcome == "taken":
                self.stats.claims_lost += 1
            elif outcome == "busy":
                self.stats.claims_won += 1
                reason = "previous run still running (overlap forbidden)"
                self._books.submit(self._record_skipped, schedule, due, reason)
            elif late:
                self.stats.claims_won += 1
                reason = (
                    f"missed: ran {self.clock() - due.fire_time:.0f}s late, beyond the grace window"
                )
                self._books.submit(self._record_skipped, schedule, due, reason)
            else:
                self.stats.claims_won += 1
                self._start_run(schedule, due)
        if lost_connection:
            self._lost_connection()

    def _record_skipped(self, schedule: Schedule, due: _Due, reason: str) -> None:
        assert self.runs is not None
        self.stats.skipped += 1
        now = self.clock()
        run = Run(
            id=self.runs.new_run_id(),
            tool=schedule.tool,
            member=self.member,
            status="skipped",
            trigger=due.trigger,  # type: ignore[arg-type]
            schedule=schedule.name,
            fire_time=due.fire_time,
            attempt=due.attempt,
            started=now,
            finished=now,
            error=reason,
        )
        self.runs.save(run)
        log.info("skipped %s @ %s: %s", schedule.name, _hms(due.fire_time), reason)

    def _start_run(self, schedule: Schedule, due: _Due) -> None:
        cancel = threading.Event()
        token = f"{schedule.name}@{due.fire_time}#{due.attempt}"
        lag = self.clock() - due.due
        self.stats.lags.append(lag)
        self.stats.runs_started += 1
        with self._cond:  # registered before submitting: a quick run must find itself
            self._running[token] = (cancel, schedule.name)
        self._pool.submit(self._execute, schedule, due, cancel, token)
        log.info(
            "claimed %s @ %s%s",
            schedule.name,
            _hms(due.fire_time),
            f" ({due.trigger}, attempt {due.attempt})" if due.trigger != "schedule" else "",
        )

    def _execute(self, schedule: Schedule, due: _Due, cancel: threading.Event, token: str) -> None:
        assert self.runs is not None
        try:
            tool = self._tool(schedule.tool)
            if tool is None:
                return
            run = self.runs.execute(
                tool,
                trigger=due.trigger,
                schedule=schedule.name,
                fire_time=due.fire_time,
                attempt=due.attempt,
                cancel=cancel,
            )
            log.info(
                "finished %s @ %s: %s%s in %s",
                schedule.name,
                _hms(due.fire_time),
                run.status,
                f" (exit {run.exit_code})" if run.exit_code not in (None, 0) else "",
                f"{run.duration:.1f}s" if run.duration is not None else "-",
            )
            failed = run.status in ("failed", "timed-out") and not cancel.is_set()
            if failed and retryable(run.error):  # not: a run refused by its data limit
                self._plan_retry(schedule, due)
        except Exception:  # a run thread must never take the worker down
            log.exception("run of %s @ %s crashed", schedule.name, _hms(due.fire_time))
        finally:
            # The overlap guard goes before the run counts as over: shutdown waits for
            # running runs and then closes the store, which this delete must not outlive.
            if not schedule.overlap:
                member = self.member if schedule.mode == "everywhere" else None
                # On failure it still lives on our lease: it goes when we reconnect.
                with contextlib.suppress(Unavailable):
                    self.store.delete(self.keys.active(schedule.name, member))
            with self._cond:
                self._running.pop(token, None)
                self._cond.notify_all()

    def _tool(self, name: str) -> Tool | None:
        try:
            return load(self.store, self.keys.tool(name), Tool) or _missing_tool(name)
        except NotFound as exc:
            log.warning("%s", exc)
            return None

    def _grace(self, schedule: Schedule) -> float:
        return schedule.grace if schedule.grace is not None else self.settings.worker.misfire_grace

    def _retries(self, schedule: Schedule) -> int:
        return schedule.retries if schedule.retries is not None else self.settings.worker.retries

    def _queue_retry(self, name: str, fire_time: float, attempt: int, delay: float) -> bool:
        """Queue attempt `attempt` of a firing; False if the schedule is gone."""
        with self._cond:
            tracked = self._schedules.get(name)
            if tracked is None:
                return False
            self._push(
                _Due(
                    self.clock() + delay,
                    next(self._seq),
                    name,
                    fire_time,
                    tracked.generation,
                    attempt=attempt,
                    trigger="retry",
                )
            )
            self._cond.notify_all()
            return True

    def _plan_retry(self, schedule: Schedule, due: _Due) -> None:
        retries = self._retries(schedule)
        delay = retry_delay(
            due.attempt, retries, self.settings.worker.backoff, self.settings.worker.backoff_max
        )
        if delay is None:
            log.info(
                "giving up on %s @ %s after %d attempt(s)",
                schedule.name,
                _hms(due.fire_time),
                due.attempt,
            )
            return
        if not self._queue_retry(schedule.name, due.fire_time, due.attempt + 1, delay):
            return
        log.info(
            "retrying %s @ %s in %.0fs (attempt %d of %d)",
            schedule.name,
            _hms(due.fire_time),
            delay,
            due.attempt + 1,
            retries + 1,
        )

    def _put_member_quietly(self) -> None:
        try:
            self._put_member()
        except Unavailable:
            self._lost_connection()

    # Lost runs -------------------------------------------------------------

    def _sweep_lost_runs_safely(self) -> None:
        try:
            self._sweep_lost_runs()
        except Unavailable:
            self._lost_connection()

    def _sweep_lost_runs(self) -> None:
        """Mark `lost` the running runs of members that are gone, and retry them once.
        A compare-and-swap on the run record makes exactly one live worker the retrier."""
        assert self.runs is not None
        live = {self.keys.leaf(e.key) for e in self.store.scan(self.keys.members())}
        for entry in self.store.scan(self.keys.runs()):
            run = decode(Run, entry)
            if run is None or run.status != "running":
                continue
            if run.member in live and run.member != self.member:
                continue
            if run.member == self.member and (run.started or 0) >= self._started:
                continue  # ours, from this process
            lost = replace(
                run,
                status="lost",
                finished=self.clock(),
                error=f"member {run.member} stopped before the run finished",
            )
            if not self.store.replace(entry.key, lost.to_json(), mod_revision=entry.mod_revision):
                continue  # another worker handled it
            log.warning("run %s of %s on %s marked lost", run.id, run.tool, run.member)
            if run.schedule is not None and run.fire_time is not None:
                tracked = self._schedules.get(run.schedule)
                if tracked is not None and not tracked.schedule.overlap:
                    self._release_lost_guard(tracked.schedule, run)
                if tracked is not None and run.attempt <= self._retries(tracked.schedule):
                    self._queue_retry(run.schedule, run.fire_time, run.attempt + 1, 0.0)

    def _release_lost_guard(self, schedule: Schedule, run: Run) -> None:
        """A lost run's overlap guard lives on its dead member's lease for up to a lease TTL
        more: release it now, or its retry and the next firings are skipped as overlapping."""
        member = run.member if schedule.mode == "everywhere" else None
        key = self.keys.active(schedule.name, member)
        entry = self.store.get(key)
        if entry is None:
            return
        try:
            held = json.loads(entry.value)
        except ValueError:
            return
        if held.get("member") == run.member and held.get("fire_time") == run.fire_time:
            # Only if unchanged: a live member may have taken the guard meanwhile.
            self.store.delete_if(key, mod_revision=entry.mod_revision)

    # Main loop -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set; then drain gracefully. Raises only on a bad start."""
        self.connect(first=True)
        keepalive = threading.Thread(target=self._keepalive_loop, name="keepalive", daemon=True)
        keepalive.start()
        if self._refresh_endpoints is not None:
            threading.Thread(target=self._endpoints_loop, name="endpoints", daemon=True).start()
        log.info(
            "worker %s up: %d schedule(s), max %d parallel run(s)",
            self.member,
            len(self._schedules),
            self.max_parallel,
        )
        self.ready.set()
        while not stop.is_set():
            if self._disconnected.is_set():
                self._reconnect(stop)
                continue
            with self._cond:
                dues = []
                while (due := self._next_due()) is not None:
                    dues.append(due)
                if not dues:
                    self._cond.wait(self._wait_time())
                    continue
            try:
                self._fire_batch(dues)
            except Unavailable:
                # Nothing was claimed (the claim lease could not be granted): keep them all.
                with self._cond:
                    for due in dues:
                        self._push(due)
                self._lost_connection()
            except Exception:  # the scheduler loop must never die
                log.exception("firing %d due firing(s) crashed", len(dues))
        self.shutdown()

    def _reconnect(self, stop: threading.Event) -> None:
        log.warning(
            "etcd unreachable at %s; running containers go on; retrying",
            self.settings.etcd.endpoints,
        )
        delay = 0.5
        while not stop.is_set():
            try:
                if self._store is not None:
                    self._store.close()
                self.connect(first=False)
            except Unavailable:
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._disconnected.clear()
            log.info("etcd reachable again; resumed from its state")
            return

    def hurry(self) -> None:
        """Stop waiting for running runs: stop their containers now."""
        self._hurry.set()
        with self._cond:
            self._cond.notify_all()

    def shutdown(self) -> None:
        """Stop claiming, let running containers finish within the grace period, then stop
        them (recorded as interrupted), and leave the member list."""
        self._stopping.set()
        grace = self.settings.worker.shutdown_grace
        with self._cond:
            running = list(self._running.values())
        if running:
            log.info("waiting up to %.0fs for %d running run(s)", grace, len(running))
        deadline = time.monotonic() + grace
        with self._cond:
            while self._running and time.monotonic() < deadline and not self._hurry.is_set():
                self._cond.wait(0.2)
            leftover = list(self._running.values())
        for cancel, name in leftover:
            log.warning("stopping the run of %s (shutdown grace over)", name)
            cancel.set()
        with self._cond:  # stopped containers are recorded by their run threads
            deadline = time.monotonic() + 30
            while self._running and time.monotonic() < deadline:
                self._cond.wait(0.2)
        self._books.shutdown(wait=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for watch in self._watches:
            watch.cancel()
        try:
            if self._outbox is not None:
                self._outbox.flush()
            if self._member_lease is not None:
                self._member_lease.revoke()
        except MaomaoError:
            log.warning("could not leave the member list cleanly; the lease will expire")
        if self._store is not None:
            self._store.close()
        log.info("worker %s stopped", self.member)


def _missing_tool(name: str) -> Tool:
    raise NotFound(f"schedule refers to tool {name!r}, which is not registered; skipping")


def _hms(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def check_health(
    store: Store, keys: Keys, member: str, lease_ttl: int, now: float
) -> tuple[bool, str]:
    """For `maomao worker --check`: is this host's worker registered and alive?"""
    record = load(store, keys.member(member), Member)
    if record is None:
        return False, f"no live worker named {member!r}"
    if record.host == socket.gethostname() and not pid_alive(record.pid, b"maomao"):
        return False, f"worker {member!r} (pid {record.pid}) is not running"
    if now - record.heartbeat > 3 * lease_ttl:
        return False, f"worker {member!r} has not reported for {now - record.heartbeat:.0f}s"
    return True, f"worker {member!r} alive (pid {record.pid}, {record.running} running)"
