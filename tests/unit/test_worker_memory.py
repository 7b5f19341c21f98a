"""The worker against the in-memory store and a fake run executor: claims, exactly-once
across workers, everywhere mode, overlap, retries, lost runs. Real threads, real time,
second-granularity schedules; assertions are on counts, never on durations."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from maomao_cli.config import Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Schedule, Tool
from maomao_cli.services.worker import Worker
from maomao_cli.store.base import Store
from maomao_cli.store.memory import MemoryStore

PREFIX = "/maomao"


class FakeRuns:
    """Records every execution; writes run records like the real service does."""

    def __init__(
        self,
        store: Store,
        member: str,
        log: list[tuple[str, float, str, int]],
        lock: threading.Lock,
        fail_first: bool = False,
        hold: float = 0.0,
    ) -> None:
        self.store = store
        self.member = member
        self.log = log
        self.lock = lock
        self.fail_first = fail_first
        self.hold = hold
        self.keys = Keys(PREFIX)

    def new_run_id(self) -> str:
        return f"{time.time():.6f}-{uuid.uuid4().hex[:6]}"

    def save(self, run: Run) -> None:
        self.store.put(self.keys.run(run.id), run.to_json())

    def execute(
        self,
        tool: Tool,
        *,
        trigger: str = "manual",
        schedule: str | None = None,
        fire_time: float | None = None,
        attempt: int = 1,
        cancel: threading.Event | None = None,
    ) -> Run:
        run = Run(
            id=self.new_run_id(),
            tool=tool.name,
            member=self.member,
            status="running",
            trigger=trigger,
            schedule=schedule,
            fire_time=fire_time,
            attempt=attempt,  # type: ignore[arg-type]
            started=time.time(),
        )
        self.save(run)
        with self.lock:
            self.log.append((schedule or "", fire_time or 0.0, self.member, attempt))
        if self.hold:
            (cancel or threading.Event()).wait(self.hold)
        failed = self.fail_first and attempt == 1
        final = replace(
            run,
            status="failed" if failed else "succeeded",
            exit_code=1 if failed else 0,
            finished=time.time(),
        )
        self.save(final)
        return final


def settings(**worker: object) -> Settings:
    base = WorkerSettings(lease_ttl=2, backoff=0.2, backoff_max=1.0, shutdown_grace=5.0)
    return Settings(worker=replace(base, **worker))  # type: ignore[arg-type]


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    backend = MemoryStore()
    keys = Keys(PREFIX)
    backend.put(keys.tool("t"), Tool(name="t", image="img").to_json())
    yield backend


def start_workers(
    store: MemoryStore,
    names: list[str],
    log: list[tuple[str, float, str, int]],
    cfg: Settings | None = None,
    **fake: object,
) -> list[tuple[Worker, threading.Event, threading.Thread]]:
    lock = threading.Lock()
    started = []
    for name in names:
        worker = Worker(
            cfg or settings(),
            store_factory=lambda: store,
            make_runs=lambda s, n=name: FakeRuns(s, n, log, lock, **fake),  # type: ignore[arg-type]
            member=name,
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        started.append((worker, stop, thread))
    return started


def stop_all(workers: list[tuple[Worker, threading.Event, threading.Thread]]) -> None:
    for _, stop, _ in workers:
        stop.set()
    for _, _, thread in workers:
        thread.join(30)


def put_schedule(store: MemoryStore, **fields: object) -> Schedule:
    fields.setdefault("cron", "* * * * * *")
    schedule = Schedule(name="s", tool="t", **fields)  # type: ignore[arg-type]
    store.put(Keys(PREFIX).schedule("s"), schedule.to_json())
    return schedule


def test_three_workers_run_each_firing_exactly_once(store: MemoryStore) -> None:
    log: list[tuple[str, float, str, int]] = []
    put_schedule(store)
    workers = start_workers(store, ["a", "b", "c"], log)
    time.sleep(5)
    stop_all(workers)
    fire_times = [f for _, f, _, _ in log]
    assert len(fire_times) >= 3
    assert len(fire_times) == len(set(fire_times)), "a firing ran twice"
    span = int(max(fire_times) - min(fire_times)) + 1
    assert len(fire_times) == span, "a firing is missing between the first and the last"


def test_everywhere_runs_each_firing_on_every_member(store: MemoryStore) -> None:
    log: list[tuple[str, float, str, int]] = []
    put_schedule(store, mode="everywhere")
    workers = start_workers(store, ["a", "b"], log)
    time.sleep(4)
    stop_all(workers)
    by_fire: dict[float, list[str]] = {}
    for _, fire, member, _ in log:
        by_fire.setdefault(fire, []).append(member)
    complete = [members for members in by_fire.values() if len(members) == 2]
    assert complete, "no firing ran on both members"
    assert all(sorted(m) == ["a", "b"] for m in by_fire.values() if len(m) == 2)
    assert all(len(m) <= 2 for m in by_fire.values())


def test_failed_run_is_retried_with_backoff(store: MemoryStore) -> None:
    log: list[tuple[str, float, str, int]] = []
    put_schedule(store, cron="0 0 1 1 *", retries=1)  # never fires by itself this year
    workers = start_workers(store, ["a"], log, fail_first=True)
    worker = workers[0][0]
    # Fire once by hand through the heap, as the loop would.
    time.sleep(0.5)
    from maomao_cli.services.worker import _Due

    with worker._cond:
        tracked = worker._schedules["s"]
        # A fire time of now: within the misfire grace, so it runs rather than being skipped.
        fire = float(int(time.time()))
        worker._push(_Due(time.time(), 0, "s", fire, tracked.generation))
        worker._cond.notify_all()
    time.sleep(2.5)
    stop_all(workers)
    attempts = sorted(a for _, f, _, a in log if f == fire)
    assert attempts == [1, 2]


def test_overlap_forbidden_records_skipped(store: MemoryStore) -> None:
    log: list[tuple[str, float, str, int]] = []
    put_schedule(store)
    workers = start_workers(store, ["a"], log, hold=2.5)
    time.sleep(4)
    stop_all(workers)
    runs = [Run.from_json(e.value) for e in store.scan(Keys(PREFIX).runs())]
    skipped = [r for r in runs if r.status == "skipped"]
    assert skipped and all("overlap" in (r.error or "") for r in skipped)


def test_runs_of_a_dead_member_are_marked_lost_and_retried(store: MemoryStore) -> None:
    keys = Keys(PREFIX)
    put_schedule(store, cron="0 0 1 1 *", retries=2)
    orphan = Run(
        id="orphan",
        tool="t",
        member="ghost",
        status="running",
        trigger="schedule",
        schedule="s",
        fire_time=1_700_000_000.0,
        started=time.time() - 5,
    )
    store.put(keys.run("orphan"), orphan.to_json())
    log: list[tuple[str, float, str, int]] = []
    workers = start_workers(store, ["a", "b"], log)
    time.sleep(2)
    stop_all(workers)
    lost = Run.from_json(store.get(keys.run("orphan")).value)  # type: ignore[union-attr]
    assert lost.status == "lost"
    retries = [(f, a) for _, f, _, a in log if f == 1_700_000_000.0]
    assert retries == [(1_700_000_000.0, 2)], "exactly one live worker retries the lost run"


def test_paused_schedule_does_not_fire(store: MemoryStore) -> None:
    log: list[tuple[str, float, str, int]] = []
    put_schedule(store, paused=True)
    workers = start_workers(store, ["a"], log)
    time.sleep(2.5)
    stop_all(workers)
    assert log == []


def test_member_entry_lives_on_a_lease_and_leaves_on_stop(store: MemoryStore) -> None:
    log: list[tuple[str, float, str, int]] = []
    workers = start_workers(store, ["a"], log)
    time.sleep(0.5)
    assert store.get(Keys(PREFIX).member("a")) is not None
    stop_all(workers)
    assert store.get(Keys(PREFIX).member("a")) is None
