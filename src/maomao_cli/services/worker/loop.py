"""The loop that wires the worker's parts: it connects, follows the schedules through a
watch into the timetable, hands what is due to firing, keeps the membership alive and
has recovery sweep up lost runs. Every wait goes through the injected clock.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from ...clock import SystemClock
from ...config import Settings
from ...errors import MaomaoError, Unavailable
from ...jitter import offset as jitter_offset
from ...keys import Keys
from ...models import Schedule
from ...ports import Clock
from ...store.base import Store, Watch
from ..outbox import Outbox
from ..outboxjournal import OutboxJournal
from .clockoffset import ClockOffsets, observe_heartbeat
from .firing import RECONNECT_MAX, Firing, RunExecutor, Shared
from .keepalive import KeepAlive
from .loganswers import LogAnswers
from .membership import Membership, remove_leftover_containers
from .observer import NoObserver, WorkerObserver
from .policy import misfire_grace
from .recovery import LostRuns
from .requests import Requests
from .schedulefeed import ScheduleFeed
from .skew import SkewGate
from .timetable import Due, Timetable
from .watches import follow, keyed

log = logging.getLogger("maomao.worker")

# The cluster's endpoints, asked on every (re)connect and this often: a later member is known.
ENDPOINTS_REFRESH = 60.0


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
        clock: Clock | None = None,
        remove_leftovers: Callable[[str], int] | None = None,
        refresh_endpoints: Callable[[], bool] | None = None,
        endpoints_every: float = ENDPOINTS_REFRESH,
        make_pool: Callable[[int, str], Executor] | None = None,
        observer: WorkerObserver | None = None,
        outbox_dir: Path | None = None,
        log_answers: LogAnswers | None = None,
        freeze_after_load: bool = False,
    ) -> None:
        self.settings = settings
        # In a daemon's own process: what loading made is left out of the collector's full
        # passes (tens of ms at 10,000 schedules, mid-burst, the GIL held).
        self._freeze_after_load = freeze_after_load
        self._log_answers = log_answers  # answers others' `logs RUN --full` (own client)
        self._refresh_endpoints = refresh_endpoints  # the cluster's for the next store
        self._endpoints_every = endpoints_every
        self._remove_leftovers = remove_leftovers  # a killed process's containers, by label
        self.keys = Keys(settings.etcd.prefix)
        self.member = member or settings.member
        # The outbox's journal, in the state directory (None: kept in memory only).
        journal = outbox_dir / f"outbox-{self.member}.jsonl" if outbox_dir else None
        self._journal = OutboxJournal(journal) if journal else None
        self.labels = labels if labels is not None else dict(settings.worker.labels)
        self.max_parallel = max_parallel or settings.worker.max_parallel
        self.clock: Clock = clock or SystemClock()
        self._store_factory = store_factory
        self._store: Store | None = None
        self._outbox: Outbox | None = None
        self._make_runs = make_runs
        self.runs: RunExecutor | None = None
        self.ready = threading.Event()
        member_name = self.member
        self._shared = Shared(
            Timetable(
                start_offset=lambda s, nominal, nxt: jitter_offset(s, member_name, nominal, nxt)
            )
        )
        self._schedules = ScheduleFeed(self.keys, self._shared, settings.worker, self.clock)
        self._requests = Requests(
            self.keys,
            self.member,
            self.labels,
            grace=lambda schedule: max(misfire_grace(schedule, settings.worker), 1.0),
        )
        # Metrics and the service manager hear of claims, runs and each loop turn.
        self._observer: WorkerObserver = observer or NoObserver()
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._disconnected = threading.Event()
        self._cut_at = 0.0  # monotonic, when the connection was last lost
        self._schedules_loaded = False  # until the first load of the schedules completes
        self._cause: str | None = None  # why, when the call that failed said
        self._membership = Membership(
            self.keys,
            self.member,
            self.labels,
            lease_ttl=settings.worker.lease_ttl,
            clock=self.clock,
            running=lambda: self._firing.running(),
            clock_offset=lambda: self._skew.offset(),
        )
        self._offsets = ClockOffsets()
        self._skew = SkewGate(
            self._offsets, settings.worker.max_clock_offset, clock=self.clock, member=self.member
        )
        self._displaced = threading.Event()
        # The member lease on its own thread and client: nothing else can delay it.
        self._keepalive = KeepAlive(
            self._membership,
            store_factory=store_factory,
            clock=self.clock,
            on_unreachable=self._lost_connection,
            on_displaced=self._displaced.set,
        )
        self._lost_runs = LostRuns(
            self.keys,
            self.member,
            started=self._membership.started,
            settings=settings.worker,
            clock=self.clock,
        )
        # make_pool(workers, thread name prefix): tests run runs inline.
        pool = make_pool or (lambda workers, name: ThreadPoolExecutor(workers, name))
        self._firing = Firing(
            settings.worker,
            self.keys,
            member=self.member,
            labels=self.labels,
            guard_lease=lambda: self._membership.lease_id,
            shared=self._shared,
            clock=self.clock,
            store=lambda: self.store,
            runs=lambda: self.runs,
            pools=(pool(self.max_parallel, "maomao-run"), pool(1, "maomao-books")),
            observer=self._observer,
            slots=self.max_parallel,
            process=self._membership.started,
            requests=self._requests,
        )
        self.stats = self._firing.stats
        self._watches: list[Watch] = []
        self._observer.attach(self)

    # What observers may ask ------------------------------------------------

    def followed(self) -> list[Schedule]:
        with self._shared.lock:
            return self._shared.timetable.followed()

    def running(self) -> int:
        return self._firing.running()

    def etcd_reachable(self) -> bool:
        return self._store is not None and not self._disconnected.is_set()

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
            self._outbox = Outbox(store, runs_prefix=self.keys.runs(), journal=self._journal)
            self.runs = self._make_runs(self._outbox)
        else:
            self._outbox.target = store
        # First: outcomes kept through an outage reach etcd before anyone takes them for lost.
        flushed = self._outbox.flush()
        if flushed:
            log.info("wrote %d run record(s) kept while etcd was unreachable", flushed)
        if first:
            # Once, on the keep-alive's client (it re-registers if its lease expires).
            self._keepalive.register()
            remove_leftover_containers(self._remove_leftovers, self.member)
        try:
            self._firing.forget_claim_lease()
            self._load_schedules(first=not self._schedules_loaded)  # the first catches up
            self._schedules_loaded = True
            outage = 0.0 if first else self.clock.monotonic() - self._cut_at
            self._firing.resume(store, outage=outage)
            self._sweep_lost_runs()
            self._refresh_endpoints_quietly()
        except Unavailable as exc:
            if not first:
                raise
            self._lost_connection(exc)  # a member already: an outage like any later one

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
        while not self.clock.wait(self._stopping, self._endpoints_every):
            if not self._disconnected.is_set():
                self._refresh_endpoints_quietly()

    def _flush_loop(self) -> None:
        while not self.clock.wait(self._stopping, self._membership.keepalive_interval):
            if self._disconnected.is_set():
                continue
            try:  # a record kept through a brief error that cost no reconnect goes now
                if self._outbox is not None and self._outbox.pending:
                    self._outbox.flush()
            except Unavailable as exc:
                self._lost_connection(exc)

    def _lost_connection(self, cause: MaomaoError | None = None) -> None:
        if not self._disconnected.is_set():
            self._cut_at = self.clock.monotonic()
            # Said by the reconnect: only the failed write knows why (a NOSPACE alarm).
            self._cause = cause.message if cause is not None else None
            self._disconnected.set()
            self._shared.wake.set()

    # Schedules -------------------------------------------------------------

    def _load_schedules(self, *, first: bool) -> None:
        entries, revision = self.store.scan_with_revision(self.keys.schedules())
        self._schedules.load(entries, first=first)
        for watch in self._watches:
            watch.cancel()
        requested, requests_revision = self.store.scan_with_revision(self.keys.requests())
        self._requests.load(requested)
        tools = self._firing.execution.tools
        watch_from = partial(follow, self.store, lost=self._watch_lost)
        self._watches = [
            watch_from(self.keys.tools(), tools.read(self.store) + 1, keyed(tools.on_event)),
            # Schedules take the whole event: their claims compare its revision.
            watch_from(self.keys.schedules(), revision + 1, self._schedules.on_event),
            watch_from(self.keys.members(), revision + 1, keyed(self._on_member_event)),
            watch_from(self.keys.held_runs(), revision + 1, keyed(self._on_held_run_event)),
            watch_from(self.keys.requests(), requests_revision + 1, keyed(self._on_request_event)),
        ]

    def _watch_lost(self, exc: MaomaoError) -> None:
        if not self._stopping.is_set():
            self._lost_connection(exc)

    def _on_request_event(self, key: str, value: bytes | None) -> None:
        self._requests.on_event(key, value)
        self._shared.wake.set()

    def _offer_requests(self) -> None:
        """Queue the requested firings this member can claim now (the loop's thread)."""
        if not self._requests.waiting():
            return
        try:
            dues = self._requests.take(
                self.store,
                now=self.clock.now(),
                free=self._firing.free_slots(),
                schedule_of=self._followed,
                lease=self._membership.lease_id,
            )
        except Unavailable:
            self._lost_connection()
            return
        with self._shared.lock:
            for due in dues:
                self._shared.timetable.push_requested(due)

    def _on_member_event(self, key: str, value: bytes | None) -> None:
        name = self.keys.leaf(key)
        self._observe_clock(name, value)
        if value is None and name != self.member:
            log.info("member %s left or lost its lease", name)
            threading.Thread(target=self._sweep_lost_runs_safely, daemon=True).start()

    def _on_held_run_event(self, key: str, value: bytes | None) -> None:
        if value is None:  # a manual run ended, or its process died: is it left running?
            threading.Thread(target=self._sweep_lost_runs_safely, daemon=True).start()

    def _observe_clock(self, name: str, value: bytes | None) -> None:
        """Another member's heartbeat, as it arrives: a sample of our clock offset."""
        if name != self.member:
            trip = self._keepalive.round_trip
            observe_heartbeat(
                self._offsets,
                name,
                value,
                received=self.clock.now(),
                delay=trip if trip is not None else 0.0,
                at=self.clock.monotonic(),
            )

    # Lost runs -------------------------------------------------------------

    def _sweep_lost_runs_safely(self) -> None:
        try:
            self._sweep_lost_runs()
        except Unavailable as exc:
            self._lost_connection(exc)

    def _sweep_lost_runs(self) -> None:
        self._lost_runs.sweep(
            self.store,
            schedule_of=self._followed,
            retry=lambda name, fire_time, attempt: self._firing.queue_retry(
                name, fire_time, attempt, 0.0
            ),
            adopt_retries=self._firing.queue_retry,  # and by our earlier process
        )

    def _followed(self, name: str) -> Schedule | None:
        with self._shared.lock:
            return self._shared.timetable.schedule(name)

    # Main loop -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set; then drain gracefully. Raises only on a bad start."""
        self.connect(first=True)
        if self._freeze_after_load:  # and after each reconnect
            gc.freeze()
        if self._log_answers is not None:
            self._log_answers.start()
        threading.Thread(target=self._flush_loop, name="flush", daemon=True).start()
        if self._refresh_endpoints is not None:
            threading.Thread(target=self._endpoints_loop, name="endpoints", daemon=True).start()
        log.info(
            "worker %s up: %d schedule(s), max %d parallel run(s)",
            self.member,
            len(self._shared.timetable),
            self.max_parallel,
        )
        self.ready.set()
        self._observer.ready()
        while not stop.is_set() and not self._displaced.is_set():
            self._observer.turn()
            # Cleared before looking, so a change made while we look cuts the wait short.
            self._shared.wake.clear()
            if self._disconnected.is_set():
                self._reconnect(stop)
                continue
            self._offer_requests()
            dues, wait = self._firing.take_due()
            if dues and self._skew.holds_back():
                # Our clock is off the collaboration's: these firings are the others'.
                with self._shared.lock:
                    self._shared.timetable.pass_up(dues, later=self.clock.now() + 1.0)
            elif dues or self._firing.startable():  # due now, or a slot freed for a waiting one
                self._fire_safely(dues)
            elif not self._firing.look_ahead(wait):
                self.clock.wait(self._shared.wake, wait)
        self.shutdown()

    def _fire_safely(self, dues: list[Due]) -> None:
        try:
            unknown = self._firing.fire(dues)
            if unknown is not None:
                self._lost_connection(unknown)
        except Unavailable as exc:
            # Nothing was claimed (the claim lease could not be granted): firing kept them.
            self._lost_connection(exc)
        except Exception:  # the scheduler loop must never die
            log.exception("firing %d due firing(s) crashed", len(dues))

    def _reconnect(self, stop: threading.Event) -> None:
        log.warning(
            "etcd unreachable at %s%s; running containers go on; retrying",
            self.settings.etcd.endpoints,
            f" ({self._cause})" if self._cause else "",
        )
        delay = 0.5
        said = self._cause or ""
        while not stop.is_set():
            self._observer.turn()  # alive while it retries: the service manager must not kill it
            try:
                if self._store is not None:
                    self._store.close()
                self.connect(first=False)
            except Unavailable as exc:
                if exc.message != said:  # the cause, once each time it changes (NOSPACE...)
                    said = exc.message
                    log.warning("etcd: %s; retrying", exc.message)
                self.clock.wait(stop, delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            self._disconnected.clear()
            if self._freeze_after_load:
                gc.freeze()
            log.info("etcd reachable again; resumed from its state")
            return

    def hurry(self) -> None:
        """Stop waiting for running runs: stop their containers now."""
        self._hurry.set()
        self._shared.wake.set()

    def shutdown(self) -> None:
        """Stop claiming, let running containers finish within the grace period, then stop
        them (recorded as interrupted), and leave the member list."""
        self._stopping.set()
        self._observer.stopping()
        grace = self.settings.worker.shutdown_grace
        running = self._firing.running()
        if running:
            log.info("waiting up to %.0fs for %d running run(s)", grace, running)
        self._firing.wait_for_runs(grace, unless=self._hurry)
        self._firing.stop_running()
        self._firing.wait_for_runs(30)  # stopped runs are recorded by their threads
        self._firing.close()
        for watch in self._watches:
            watch.cancel()
        if self._log_answers is not None:
            self._log_answers.stop()
        try:
            if self._outbox is not None:
                self._outbox.flush()
        except MaomaoError as exc:
            log.warning("could not write the run records kept while etcd was unreachable: %s", exc)
        try:
            # Only now, every run recorded: until here the lease kept the member alive.
            self._keepalive.leave()
        except MaomaoError:
            log.warning("could not leave the member list cleanly; the lease will expire")
        if self._store is not None:
            self._store.close()
        log.info("worker %s stopped", self.member)
