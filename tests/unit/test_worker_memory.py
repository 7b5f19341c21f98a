"""The worker against the in-memory store, a fake run executor and a fake clock: claims,
exactly-once across workers, everywhere mode, overlap, retries, catch-up, lost runs, an
etcd outage. Time moves only through the fake clock, so nothing here waits in real time,
and runs execute inline (on the scheduler thread) unless a test needs them concurrent."""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import ParamSpec, TypeVar

import pytest

from fakes.clock import START, FakeClock
from maomao_cli.config import Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Schedule, Tool
from maomao_cli.services.worker import Worker
from maomao_cli.services.worker.claims import GuardValue
from maomao_cli.store.base import Store
from maomao_cli.store.memory import MemoryStore

PREFIX = "/maomao"
KEYS = Keys(PREFIX)
P = ParamSpec("P")
T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each submitted call at once, on the submitting thread."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def inline_pool(workers: int, name: str) -> Executor:
    return InlineExecutor()


@dataclass(frozen=True)
class Execution:
    schedule: str
    fire_time: float
    member: str
    attempt: int
    trigger: str


class Journal:
    """What every fake run executor did, shared by the workers of a test."""

    def __init__(self) -> None:
        self.executions: list[Execution] = []
        self.saved: list[Run] = []
        self._cond = threading.Condition()

    def add(self, item: Execution | Run) -> None:
        with self._cond:
            if isinstance(item, Run):
                self.saved.append(item)
            else:
                self.executions.append(item)
            self._cond.notify_all()

    def wait_for(self, done: Callable[[Journal], bool]) -> None:
        """Block (real time, bounded) until `done` holds: for runs on pool threads."""
        with self._cond:
            assert self._cond.wait_for(lambda: done(self), timeout=10), "it never happened"

    def final(self) -> dict[tuple[float, int], Run]:
        """The last record of each (fire time, attempt)."""
        return {(r.fire_time or 0.0, r.attempt): r for r in self.saved}


class FakeRuns:
    """Writes run records like the real service does; fails the first `failing` attempts
    of each firing; holds each run until `gate` is set, if given."""

    def __init__(
        self,
        store: Store,
        member: str,
        journal: Journal,
        clock: FakeClock,
        *,
        failing: int = 0,
        gate: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.member = member
        self.journal = journal
        self.clock = clock
        self.failing = failing
        self.gate = gate

    def new_run_id(self) -> str:
        return f"{self.clock.now():.6f}-{uuid.uuid4().hex[:6]}"

    def save(self, run: Run) -> None:
        self.store.put(KEYS.run(run.id), run.to_json())
        self.journal.add(run)

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
    ) -> Run:
        run = Run(
            id=run_id or self.new_run_id(),
            tool=tool.name,
            member=self.member,
            status="running",
            trigger=trigger,  # type: ignore[arg-type]
            schedule=schedule,
            fire_time=fire_time,
            attempt=attempt,
            started=self.clock.now() if started is None else started,
        )
        self.save(run)
        self.journal.add(Execution(schedule or "", fire_time or 0.0, self.member, attempt, trigger))
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        failed = attempt <= self.failing
        final = replace(
            run,
            status="failed" if failed else "succeeded",
            exit_code=1 if failed else 0,
            finished=self.clock.now(),
        )
        self.save(final)
        return final


def settings(**worker: object) -> Settings:
    base = WorkerSettings(lease_ttl=2, backoff=0.2, backoff_max=1.0, shutdown_grace=5.0)
    return Settings(worker=replace(base, **worker))  # type: ignore[arg-type]


@dataclass
class Started:
    worker: Worker
    stop: threading.Event
    thread: threading.Thread


class Members:
    """A few workers on one store and one fake clock."""

    def __init__(self, store: MemoryStore, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.journal = Journal()
        self.started: list[Started] = []

    def start(
        self,
        names: list[str],
        *,
        concurrent: bool = False,
        failing: int = 0,
        gate: threading.Event | None = None,
    ) -> list[Worker]:
        def make_runs(store: Store, *, name: str) -> FakeRuns:
            return FakeRuns(store, name, self.journal, self.clock, failing=failing, gate=gate)

        fresh = []
        for name in names:
            worker = Worker(
                settings(),
                store_factory=lambda: self.store,
                make_runs=functools.partial(make_runs, name=name),
                member=name,
                clock=self.clock,
                make_pool=None if concurrent else inline_pool,
            )
            stop = threading.Event()
            thread = threading.Thread(target=worker.run, args=(stop,), name=f"worker-{name}")
            thread.start()
            fresh.append(Started(worker, stop, thread))
        for item in fresh:
            assert item.worker.ready.wait(10)
        self.started += fresh
        # Each worker's loop, keep-alive and outbox flush wait on the clock: it is idle.
        self.clock.wait_for_waiters(3 * len(self.started))
        return [item.worker for item in fresh]

    def stop(self) -> None:
        for item in self.started:
            item.stop.set()
        # The loops notice at their next wake-up; shutdown waits on the clock too.
        for _ in range(40):
            if not any(item.thread.is_alive() for item in self.started):
                break
            self.clock.advance(0.5)
        for item in self.started:
            item.thread.join(10)
            assert not item.thread.is_alive(), f"{item.thread.name} did not stop"

    def tick(self, seconds: int) -> None:
        """Let `seconds` of fake time pass, one second at a time."""
        for _ in range(seconds):
            self.clock.advance(1.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    backend = MemoryStore(clock=clock.monotonic)
    backend.put(KEYS.tool("t"), Tool(name="t", image="img").to_json())
    return backend


@pytest.fixture
def members(store: MemoryStore, clock: FakeClock) -> Iterator[Members]:
    group = Members(store, clock)
    yield group
    group.stop()  # also when a test failed: no worker thread outlives its test


def put_schedule(store: MemoryStore, **fields: object) -> Schedule:
    fields.setdefault("cron", "* * * * * *")
    fields.setdefault("created", START)  # so no firing before START was missed
    schedule = Schedule(name="s", tool="t", **fields)  # type: ignore[arg-type]
    store.put(KEYS.schedule("s"), schedule.to_json())
    return schedule


def stored_runs(store: Store) -> dict[tuple[float, int], Run]:
    """The record of each (fire time, attempt) in the store. The claim of a firing writes
    its first record, and a skip, itself: those never pass through a run executor."""
    runs = (Run.from_json(entry.value) for entry in store.scan(KEYS.runs()))
    return {(run.fire_time or 0.0, run.attempt): run for run in runs}


def wait_for_stored(store: Store, done: Callable[[dict[tuple[float, int], Run]], bool]) -> None:
    """Block until the stored records satisfy `done`, looking again at each write of a
    record (a watch): for claims made on the loop's thread after a watch event."""
    written = threading.Event()
    watch = store.watch(KEYS.runs())

    def follow() -> None:
        for _ in watch:
            written.set()

    threading.Thread(target=follow, daemon=True).start()
    try:
        while not done(stored_runs(store)):
            assert written.wait(10), "it was never stored"
            written.clear()
    finally:
        watch.cancel()


def seconds_after_start(fire_times: list[float]) -> list[int]:
    return sorted(int(f - START) for f in fire_times)


def test_three_workers_run_each_firing_exactly_once(store: MemoryStore, members: Members) -> None:
    put_schedule(store)
    workers = members.start(["a", "b", "c"])
    members.tick(5)
    members.stop()
    executions = members.journal.executions
    assert seconds_after_start([e.fire_time for e in executions]) == [1, 2, 3, 4, 5]
    assert sum(w.stats.claims_won for w in workers) == 5
    assert sum(w.stats.claims_lost for w in workers) == 10, "every member tried every firing"
    assert all(r.status == "succeeded" for r in members.journal.final().values())


def test_everywhere_runs_each_firing_on_every_member(store: MemoryStore, members: Members) -> None:
    put_schedule(store, mode="everywhere")
    members.start(["a", "b"])
    members.tick(4)
    members.stop()
    by_fire: dict[int, list[str]] = {}
    for e in members.journal.executions:
        by_fire.setdefault(int(e.fire_time - START), []).append(e.member)
    assert {k: sorted(v) for k, v in by_fire.items()} == {k: ["a", "b"] for k in (1, 2, 3, 4)}


def test_failed_run_is_retried_with_backoff(store: MemoryStore, members: Members) -> None:
    put_schedule(store, cron="41 * * * * *", retries=1)  # START is at :40
    members.start(["a"], failing=1)
    members.tick(2)
    members.stop()
    fire = START + 1
    assert [(e.fire_time, e.attempt, e.trigger) for e in members.journal.executions] == [
        (fire, 1, "schedule"),
        (fire, 2, "retry"),
    ]
    final = members.journal.final()
    assert final[fire, 1].status == "failed" and final[fire, 2].status == "succeeded"
    assert final[fire, 2].started == pytest.approx(fire + 0.2)  # [worker] backoff


def test_retries_back_off_exponentially_then_give_up(store: MemoryStore, members: Members) -> None:
    put_schedule(store, cron="41 * * * * *", retries=2)
    members.start(["a"], failing=99)
    members.tick(4)
    members.stop()
    final = members.journal.final()
    assert sorted(final) == [(START + 1, 1), (START + 1, 2), (START + 1, 3)]
    starts = [final[START + 1, attempt].started or 0.0 for attempt in (1, 2, 3)]
    assert starts == pytest.approx([START + 1, START + 1.2, START + 1.6])  # 0.2, then 0.4
    assert all(r.status == "failed" for r in final.values())


def test_overlap_forbidden_records_skipped(store: MemoryStore, members: Members) -> None:
    put_schedule(store)
    gate = threading.Event()
    members.start(["a"], concurrent=True, gate=gate)
    members.tick(1)
    members.journal.wait_for(lambda j: len(j.executions) == 1)  # started, held at the gate
    members.tick(1)
    gate.set()
    members.journal.wait_for(lambda j: j.final()[START + 1, 1].status == "succeeded")
    members.stop()
    final = stored_runs(store)
    assert final[START + 1, 1].status == "succeeded"
    skipped = final[START + 2, 1]
    assert skipped.status == "skipped" and "overlap" in (skipped.error or "")
    busy = store.get(KEYS.firing("s", int(START + 2)))
    assert busy is not None and json.loads(busy.value)["skipped"] == "overlap"


def test_a_missed_firing_within_the_grace_window_is_caught_up(
    store: MemoryStore, members: Members
) -> None:
    put_schedule(
        store, cron="39 * * * * *", grace=5.0, created=START - 60
    )  # last fired 1 s before START
    members.start(["a"])
    members.stop()
    [caught_up] = members.journal.executions
    assert (caught_up.fire_time, caught_up.trigger) == (START - 1, "catch-up")


def test_a_missed_firing_beyond_the_grace_window_is_not_run(
    store: MemoryStore, members: Members
) -> None:
    put_schedule(
        store, cron="30 * * * * *", grace=5.0, created=START - 60
    )  # last fired 10 s before START
    members.start(["a"])
    members.stop()
    assert members.journal.executions == []


def test_runs_of_a_dead_member_are_marked_lost_and_retried(
    store: MemoryStore, members: Members
) -> None:
    put_schedule(store, cron="0 0 1 1 *", retries=2)  # does not fire during the test
    orphan = Run(
        id="orphan",
        tool="t",
        member="ghost",
        status="running",
        trigger="schedule",
        schedule="s",
        fire_time=1_700_000_000.0,
        started=START - 5,
    )
    store.put(KEYS.run("orphan"), orphan.to_json())
    # The ghost's overlap guard, still there (its lease has not expired yet).
    store.put(KEYS.active("s"), GuardValue("ghost", 1_700_000_000.0).encode())
    members.start(["a", "b"])  # the retry is queued on connect and runs at once
    members.stop()
    lost = store.get(KEYS.run("orphan"))
    assert lost is not None and Run.from_json(lost.value).status == "lost"
    retries = [(e.fire_time, e.attempt, e.trigger) for e in members.journal.executions]
    assert retries == [(1_700_000_000.0, 2, "retry")], "exactly one live worker retries it"
    assert store.get(KEYS.active("s")) is None, "the lost run's guard was released"


def test_paused_schedule_does_not_fire(store: MemoryStore, members: Members) -> None:
    put_schedule(store, paused=True)
    [worker] = members.start(["a"])
    members.tick(3)
    members.stop()
    assert members.journal.executions == []
    assert (worker.stats.claims_won, worker.stats.claims_lost) == (0, 0)


class Seen(logging.Handler):
    """Sets `seen` when a record containing `text` is logged (from any thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_a_schedule_added_while_running_fires(
    store: MemoryStore, members: Members, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maomao.worker")
    members.start(["a"])
    followed = Seen("schedule s: * * * * * * (UTC)")
    logging.getLogger("maomao.worker").addHandler(followed)
    try:
        put_schedule(store)  # reaches the worker through its watch
        assert followed.seen.wait(10)
    finally:
        logging.getLogger("maomao.worker").removeHandler(followed)
    members.tick(2)
    members.stop()
    assert seconds_after_start([e.fire_time for e in members.journal.executions]) == [1, 2]


def test_member_entry_lives_on_a_lease_and_leaves_on_stop(
    store: MemoryStore, members: Members
) -> None:
    members.start(["a"])
    members.tick(5)  # beyond the lease TTL: the keep-alive renews it
    entry = store.get(KEYS.member("a"))
    assert entry is not None and entry.lease != 0
    members.stop()
    assert store.get(KEYS.member("a")) is None


def test_an_etcd_outage_loses_no_firing_and_runs_none_twice(
    store: MemoryStore, members: Members, caplog: pytest.LogCaptureFixture
) -> None:
    put_schedule(store)
    members.start(["a"])
    caplog.set_level(logging.INFO, logger="maomao.worker")
    members.tick(1)
    store.down = True
    members.tick(3)
    assert seconds_after_start([e.fire_time for e in members.journal.executions]) == [1]
    store.down = False
    members.tick(6)  # back, it claims nothing for RESUME_SETTLE (3 s)
    members.stop()
    ran = [(int(e.fire_time - START), e.trigger) for e in members.journal.executions]
    # The firings missed meanwhile coalesce into one catch-up of the newest of them.
    [(first_after, _)] = [r for r in ran if r[1] == "catch-up"]
    assert ran[0] == (1, "schedule") and first_after >= 4, ran
    after = [second for second, _ in ran[1:]]
    assert after == list(range(first_after, after[-1] + 1)) and after[-1] >= 6, ran
    note = members.journal.final()[START + first_after, 1].warning or ""
    assert note.startswith(f"coalesced {first_after - 1} missed firings"), note
    assert not [r for r in stored_runs(store).values() if r.status == "skipped"]
    assert "etcd unreachable" in caplog.text and "etcd reachable again" in caplog.text
