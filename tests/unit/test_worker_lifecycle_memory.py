"""The worker's lifecycle in-process, on the memory store and a fake clock: registration
as one transaction, a shutdown that keeps the lease until every run is recorded, a second
signal that stops the runs, and the clock-offset gate."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
from test_worker_memory import (
    Execution,
    FakeRuns,
    Journal,
    inline_pool,
    put_schedule,
    settings,
)

from fakes.clock import START, FakeClock
from maomao_cli.errors import MaomaoError, Unavailable
from maomao_cli.keys import Keys
from maomao_cli.models import Member, Run, Tool
from maomao_cli.services.worker import Worker
from maomao_cli.services.worker.clockoffset import ClockOffsets
from maomao_cli.services.worker.keepalive import KeepAlive
from maomao_cli.services.worker.membership import Membership
from maomao_cli.store.base import Store
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/maomao")
DEAD_PID = 2**22 + 12345  # above the kernel's pid_max default: never a live process


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    backend = MemoryStore(clock=clock.monotonic)
    backend.put(KEYS.tool("t"), Tool(name="t", image="img").to_json())
    return backend


# Registration ---------------------------------------------------------------


def membership(name: str, clock: FakeClock) -> Membership:
    return Membership(KEYS, name, {}, lease_ttl=2, clock=clock, running=lambda: 0)


def test_of_twenty_simultaneous_registrations_under_one_name_exactly_one_wins(
    store: MemoryStore, clock: FakeClock
) -> None:
    twins = [membership("a", clock) for _ in range(20)]
    start = threading.Barrier(len(twins))
    errors: list[str] = []

    def register(twin: Membership) -> None:
        start.wait()
        try:
            twin.register(store)
        except MaomaoError as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=register, args=(t,)) for t in twins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    winners = [t for t in twins if t.lease_id is not None]
    assert len(winners) == 1
    assert len(errors) == 19
    assert all(e.startswith("member 'a' is already running") for e in errors)
    entry = store.get(KEYS.member("a"))
    assert entry is not None and entry.lease == winners[0].lease_id
    # The losers' leases were revoked: only the winner's is left.
    assert list(store._leases) == [winners[0].lease_id]


def existing(host: str, pid: int) -> bytes:
    return Member(name="a", host=host, version="0", started=START, pid=pid).to_json()


@pytest.mark.parametrize(
    ("held", "replaced"),
    [
        pytest.param(existing(socket.gethostname(), DEAD_PID), True, id="crashed-here"),
        pytest.param(existing("elsewhere", DEAD_PID), False, id="other-host"),
        pytest.param(existing(socket.gethostname(), os.getpid()), False, id="same-process"),
        pytest.param(b'{"v": 9, "name": 1}', False, id="unreadable"),
    ],
)
def test_an_existing_entry_is_replaced_only_if_its_process_died_here(
    store: MemoryStore, clock: FakeClock, held: bytes, replaced: bool
) -> None:
    store.put(KEYS.member("a"), held)
    joining = membership("a", clock)
    if replaced:
        joining.register(store)
        entry = store.get(KEYS.member("a"))
        assert entry is not None and entry.lease == joining.lease_id
        assert Member.from_json(entry.value).pid == os.getpid()
        return
    with pytest.raises(MaomaoError) as refused:
        joining.register(store)
    assert "member 'a'" in refused.value.message
    assert "\n" not in refused.value.message
    entry = store.get(KEYS.member("a"))
    assert entry is not None and entry.value == held, "the namesake's entry is untouched"
    assert joining.lease_id is None and not store._leases


class Client:
    """One client of the memory backend, whose endpoint can be lost on its own."""

    def __init__(self, backend: MemoryStore) -> None:
        self.backend = backend
        self.cut = False
        self.fail: MaomaoError | None = None  # raised by the next lease refresh

    def __getattr__(self, attr: str) -> Any:
        if self.cut:
            raise Unavailable("cannot reach etcd at 127.0.0.1:2379: connection refused")
        return getattr(self.backend, attr)

    def grant_lease(self, ttl: int) -> ClientLease:
        return ClientLease(self, self.backend.grant_lease(ttl).id, ttl)

    def lease_of(self, lease_id: int, ttl: int) -> ClientLease:
        return ClientLease(self, lease_id, ttl)

    def close(self) -> None:
        pass


@dataclass
class ClientLease:
    client: Client
    id: int
    ttl: int

    def refresh(self) -> bool:
        if self.client.fail is not None:
            raise self.client.fail
        if self.client.cut:
            raise Unavailable("cannot reach etcd at 127.0.0.1:2379: connection refused")
        return self.client.backend.lease_of(self.id, self.ttl).refresh()

    def revoke(self) -> None:
        self.client.backend.lease_of(self.id, self.ttl).revoke()


def registered_keepalive(
    store: MemoryStore,
    clock: FakeClock,
    on_unreachable: Callable[[MaomaoError], None],
    never_displaced: str,
) -> tuple[Membership, KeepAlive, list[Client]]:
    """Member "a" registered by a keep-alive whose every client is a new `Client` of
    `store` (listed, oldest first), idle on the clock."""
    clients: list[Client] = []

    def new_client() -> Store:
        clients.append(Client(store))
        return cast(Store, clients[-1])

    member = membership("a", clock)
    keepalive = KeepAlive(
        member,
        store_factory=new_client,
        clock=clock,
        on_unreachable=on_unreachable,
        on_displaced=lambda: pytest.fail(never_displaced),
    )
    keepalive.register()
    clock.wait_for_waiters(1)
    return member, keepalive, clients


def test_the_keepalive_carries_its_lease_to_a_new_client_when_its_endpoint_goes(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A client keeps the endpoints it was made with: when they are gone, the member must
    stay through a client made anew (from the cluster's current endpoints)."""
    lost: list[bool] = []
    member, keepalive, clients = registered_keepalive(
        store, clock, lambda _: lost.append(True), "the member was not displaced"
    )
    lease = member.lease_id
    clients[0].cut = True
    clock.advance(member.keepalive_interval)  # a beat through the lost endpoint
    assert lost == [True]
    clock.advance(3.0)  # past the 2 s lease: alive only if later beats refreshed it
    entry = store.get(KEYS.member("a"))
    assert len(clients) == 2 and lost == [True]
    assert entry is not None and entry.lease == lease == member.lease_id
    keepalive.leave()
    assert store.get(KEYS.member("a")) is None


def test_a_failed_beat_that_is_not_a_taken_name_never_stops_the_worker(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A stream reset as the endpoint's member stops is no reason to stop: only a namesake
    holding the name is (CI: a founder's worker stopped itself on an RST_STREAM)."""
    lost: list[str] = []
    member, keepalive, clients = registered_keepalive(
        store, clock, lambda exc: lost.append(exc.message), "a stream reset displaced the member"
    )
    clients[0].fail = MaomaoError("etcd at 10.0.0.1:2379: Stream removed (RST_STREAM)")
    clock.advance(3.0)  # past the 2 s lease: alive only if the next client refreshed it
    entry = store.get(KEYS.member("a"))
    assert lost == ["etcd at 10.0.0.1:2379: Stream removed (RST_STREAM)"]
    assert entry is not None and entry.lease == member.lease_id and len(clients) == 2
    keepalive.leave()


def test_a_worker_refused_its_name_removes_no_container(
    store: MemoryStore, clock: FakeClock
) -> None:
    store.put(KEYS.member("a"), existing("elsewhere", 1))
    removed: list[str] = []

    def remove(member: str) -> int:
        removed.append(member)
        return 0

    worker = Worker(
        settings(),
        store_factory=lambda: store,
        make_runs=lambda s: FakeRuns(s, "a", Journal(), clock),
        member="a",
        clock=clock,
        make_pool=inline_pool,
        remove_leftovers=remove,
    )
    with pytest.raises(MaomaoError, match="already running"):
        worker.run(threading.Event())
    assert removed == []


# Shutdown -------------------------------------------------------------------


class CancellableRuns(FakeRuns):
    """Holds each run until `gate` is set or the run is cancelled (then recorded failed,
    `interrupted`, as the run service records a stopped container)."""

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
        assert self.gate is not None and cancel is not None
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
        while not self.gate.wait(0.005):  # real time, bounded by the test's timeout
            if cancel.is_set():
                stopped = replace(run, status="failed", error="interrupted")
                self.save(stopped)
                return stopped
        final = replace(run, status="succeeded", exit_code=0, finished=self.clock.now())
        self.save(final)
        return final


class Pair:
    """Workers `a` and `b` on one store and clock, runs held at a gate."""

    def __init__(self, store: MemoryStore, clock: FakeClock, **worker: object) -> None:
        self.store = store
        self.clock = clock
        self.journal = Journal()
        self.gate = threading.Event()
        self.stops: dict[str, threading.Event] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.workers: dict[str, Worker] = {}
        for name in ("a", "b"):
            self.workers[name] = Worker(
                settings(**worker),
                store_factory=lambda: store,
                make_runs=functools.partial(self._runs, name=name),
                member=name,
                clock=clock,
            )
            self.stops[name] = threading.Event()
            self.threads[name] = threading.Thread(
                target=self.workers[name].run, args=(self.stops[name],), name=f"worker-{name}"
            )
            self.threads[name].start()
            assert self.workers[name].ready.wait(10)
        clock.wait_for_waiters(6)

    def _runs(self, store: Store, *, name: str) -> FakeRuns:
        return CancellableRuns(store, name, self.journal, self.clock, gate=self.gate)

    def runner(self) -> str:
        self.journal.wait_for(lambda j: len(j.executions) == 1)
        return self.journal.executions[0].member

    def until_stopped(self, name: str) -> None:
        for _ in range(200):
            if not self.threads[name].is_alive():
                return
            self.clock.advance(0.5)
        raise AssertionError(f"worker {name} did not stop")

    def close(self) -> None:
        self.gate.set()
        for name in self.stops:
            self.stops[name].set()
            self.until_stopped(name)


@pytest.fixture
def pair(store: MemoryStore, clock: FakeClock) -> Iterator[Pair]:
    put_schedule(store, cron="41 * * * * *", retries=1)  # fires once, at START + 1
    group = Pair(store, clock, shutdown_grace=60.0)
    yield group
    group.close()


def test_a_stopping_worker_keeps_its_lease_until_its_run_is_recorded(
    pair: Pair, store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maomao.worker")
    clock.advance(1)
    runner = pair.runner()
    pair.stops[runner].set()
    for _ in range(20):  # 20 s, ten times the lease TTL, within the shutdown grace
        clock.advance(1)
    assert store.get(KEYS.member(runner)) is not None, "the lease is still kept alive"
    [record] = list(pair.journal.final().values())
    assert record.status == "running", "no other member took it for lost"
    pair.gate.set()
    pair.until_stopped(runner)
    assert store.get(KEYS.member(runner)) is None, "it left: lease revoked"
    assert [r.status for r in pair.journal.final().values()] == ["succeeded"]
    assert len(pair.journal.executions) == 1, "one run of the firing"
    assert "could not leave" not in caplog.text


def test_a_second_signal_stops_the_runs_recorded_interrupted_before_leaving(
    pair: Pair, store: MemoryStore, clock: FakeClock
) -> None:
    clock.advance(1)
    runner = pair.runner()
    pair.stops[runner].set()
    clock.advance(3)
    pair.workers[runner].hurry()
    pair.until_stopped(runner)
    [record] = pair.journal.final().values()
    assert (record.status, record.error, record.attempt) == ("failed", "interrupted", 1)
    assert store.get(KEYS.member(runner)) is None
    stored = store.get(KEYS.run(record.id))
    assert stored is not None and Run.from_json(stored.value).status == "failed"


# Clock offset ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param({}, None, id="nobody-heard"),
        pytest.param({"b": [3.0]}, 1.5, id="two-members-split"),
        pytest.param({"b": [3.0], "c": [3.0]}, 3.0, id="outvoted-ahead"),
        pytest.param({"b": [-2.0], "c": [-2.0]}, -2.0, id="outvoted-behind"),
        pytest.param({"b": [3.0], "c": [0.0]}, 0.0, id="the-other-is-off"),
        pytest.param({"b": [3.5, 3.0, 4.2], "c": [3.1, 6.0]}, 3.0, id="least-delayed-sample"),
        pytest.param({"b": [float("nan")], "c": [0.1]}, 0.05, id="nan-ignored"),
    ],
)
def test_clock_offset_is_the_median_of_the_members_least_delayed_samples(
    samples: dict[str, list[float]], expected: float | None
) -> None:
    offsets = ClockOffsets()
    for member, values in samples.items():
        for value in values:
            offsets.observe(member, sent=100.0, received=100.0 + value + 0.01, delay=0.01, at=5.0)
    found = offsets.estimate(at=6.0)
    assert found == (None if expected is None else pytest.approx(expected))


def test_a_delay_measured_high_does_not_pull_the_estimate_below_the_offset() -> None:
    # Our clock is 3 s ahead. A heartbeat met no extra delay just as our round trip was
    # measured high (0.5 s); later ones met 0.6 s while round trips were back to 0.01 s.
    offsets = ClockOffsets()
    for member in ("b", "c"):
        offsets.observe(member, sent=100.0, received=103.01, delay=0.5, at=1.0)
        offsets.observe(member, sent=101.0, received=104.61, delay=0.01, at=2.0)
    assert offsets.estimate(at=3.0) == pytest.approx(3.0)


def test_a_fast_heartbeat_is_remembered_through_a_loaded_half_minute() -> None:
    offsets = ClockOffsets()
    for member in ("b", "c"):
        offsets.observe(member, sent=0.0, received=3.01, delay=0.01, at=0.0)
        for second in range(1, 30):  # one per second, each 0.7 s late
            offsets.observe(member, sent=second, received=second + 3.71, delay=0.01, at=second)
    assert offsets.estimate(at=30.0) == pytest.approx(3.0)


def test_clock_offset_samples_age_out_and_leave_with_their_member() -> None:
    offsets = ClockOffsets(window=60.0)
    offsets.observe("b", sent=0.0, received=3.0, delay=0.0, at=0.0)
    offsets.observe("c", sent=0.0, received=3.0, delay=0.0, at=0.0)
    assert offsets.estimate(at=60.0) == 3.0
    assert offsets.estimate(at=60.5) is None
    offsets.observe("b", sent=0.0, received=3.0, delay=0.0, at=61.0)
    offsets.forget("b")
    assert offsets.estimate(at=61.0) is None


def heartbeat(store: MemoryStore, name: str, sent: float) -> None:
    member = Member(name=name, host="h", version="0", started=START, heartbeat=sent)
    store.put(KEYS.member(name), member.to_json())


def until_offset(worker: Worker, clock: FakeClock, expected: float) -> None:
    """Block (real time, bounded) until the worker's watch thread has taken the heartbeats
    in: it reads the clock as they arrive, so the clock stands still until then."""
    idle = threading.Event()
    for _ in range(2000):
        if worker._skew.offset() == pytest.approx(expected):
            return
        idle.wait(0.005)
    raise AssertionError(f"offset {worker._skew.offset()}, not {expected}")


def test_a_worker_whose_clock_is_off_claims_nothing_until_back_in_bounds(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maomao.worker")
    put_schedule(store)
    journal = Journal()
    worker = Worker(
        settings(max_clock_offset=1.0),
        store_factory=lambda: store,
        make_runs=lambda s: FakeRuns(s, "a", journal, clock),
        member="a",
        clock=clock,
        make_pool=inline_pool,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="worker-a")
    thread.start()
    try:
        assert worker.ready.wait(10)
        clock.wait_for_waiters(3)
        # Two members whose heartbeats say our clock is 3 s ahead of theirs.
        for name in ("b", "c"):
            heartbeat(store, name, clock.now() - 3.0)
        until_offset(worker, clock, 3.0)
        clock.advance(5)
        assert journal.executions == []
        assert worker.stats.claims_won + worker.stats.claims_lost == 0, "it claimed nothing"
        entry = store.get(KEYS.member("a"))
        assert entry is not None
        assert Member.from_json(entry.value).clock_offset == pytest.approx(3.0)
        assert caplog.text.count("3.00 s ahead of the collaboration") == 1, "logged once"
        for name in ("b", "c"):  # their clocks agree with ours again
            heartbeat(store, name, clock.now())
        until_offset(worker, clock, 0.0)
        clock.advance(3)
        assert len(journal.executions) >= 2, "back within bounds, it claims again"
        assert "back within 1 s" in caplog.text
    finally:
        stop.set()
        for _ in range(100):
            if not thread.is_alive():
                break
            clock.advance(0.5)
        thread.join(10)
