"""The worker's firing path on the memory store, fake runs and a fake clock: every claimed
firing ends in one final record, claims only for free slots, catch-up after an outage is
one run, the outbox survives a restart on disk, mode everywhere's lost runs belong to their
member, and retries waiting for their backoff are recorded in etcd for any member."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import pytest
from test_worker_memory import (
    KEYS,
    FakeRuns,
    Journal,
    inline_pool,
    settings,
    wait_for_stored,
)

from fakes.clock import START, FakeClock
from maomao_cli.errors import MaomaoError, Unavailable
from maomao_cli.models import Run, Schedule, Tool
from maomao_cli.services.outbox import Outbox
from maomao_cli.services.outboxjournal import OutboxJournal
from maomao_cli.services.worker import Worker
from maomao_cli.services.worker.retries import PendingRetry
from maomao_cli.store.base import Claim, ClaimOutcome, Entry, Store
from maomao_cli.store.memory import MemoryStore, MemoryWatch


class ToolsDown(MemoryStore):
    """A memory store whose tool reads fail while `tools_down` is set (etcd went away
    between a claim and the start of its run)."""

    tools_down = False
    tool_events_late = False  # the tools watch delivers nothing: every event on the way
    schedule_events_late = False  # the same for the schedules watch
    guard_deletes_failing = 0  # the next n deletes of an overlap guard time out
    claims_sent = 0

    def delete(self, key: str) -> bool:
        if self.guard_deletes_failing and key.startswith(KEYS.prefix + "/active/"):
            self.guard_deletes_failing -= 1
            raise Unavailable("etcd at memory: request timed out")
        return super().delete(key)

    def get(self, key: str) -> Entry | None:
        if self.tools_down and key.startswith(KEYS.tools()):
            raise Unavailable("etcd unreachable")
        return super().get(key)

    def watch(self, prefix: str, *, start_revision: int | None = None) -> MemoryWatch:
        if self.tool_events_late and prefix == KEYS.tools():
            prefix = KEYS.tools() + "\x00late/"  # a prefix no key has
        if self.schedule_events_late and prefix == KEYS.schedules():
            prefix = KEYS.schedules() + "\x00late/"
        return super().watch(prefix, start_revision=start_revision)

    def claim(self, claims: Sequence[Claim]) -> list[ClaimOutcome | MaomaoError]:
        self.claims_sent += len(claims)
        return super().claim(claims)


@dataclass
class Running:
    worker: Worker
    stop: threading.Event
    thread: threading.Thread


class Harness:
    """Workers on one store and fake clock, each with its own settings."""

    def __init__(self, store: MemoryStore, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.journal = Journal()
        self.running: list[Running] = []

    def start(
        self,
        name: str,
        *,
        concurrent: bool = False,
        gate: threading.Event | None = None,
        failing: int = 0,
        outbox_dir: Path | None = None,
        runs_store: list[Store] | None = None,
        pool: Callable[[int, str], Executor] | None = None,
        **worker: object,
    ) -> Worker:
        def make_runs(store: Store) -> FakeRuns:
            if runs_store is not None:
                runs_store.append(store)
            return FakeRuns(store, name, self.journal, self.clock, failing=failing, gate=gate)

        made = Worker(
            settings(**worker),
            store_factory=lambda: self.store,
            make_runs=make_runs,
            member=name,
            clock=self.clock,
            make_pool=pool or (None if concurrent else inline_pool),
            outbox_dir=outbox_dir,
        )
        stop = threading.Event()
        thread = threading.Thread(target=made.run, args=(stop,), name=f"worker-{name}")
        thread.start()
        assert made.ready.wait(10)
        self.running.append(Running(made, stop, thread))
        # Its loop, keep-alive and outbox flush wait on the clock: it is idle.
        self.clock.wait_for_waiters(3 * len(self.running))
        return made

    def stop(self, worker: Worker | None = None) -> None:
        chosen = [r for r in self.running if worker is None or r.worker is worker]
        for item in chosen:
            item.stop.set()
        for _ in range(40):
            if not any(item.thread.is_alive() for item in chosen):
                break
            self.clock.advance(0.5)
        for item in chosen:
            item.thread.join(10)
            assert not item.thread.is_alive(), f"{item.thread.name} did not stop"
            self.running.remove(item)

    def tick(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.advance(1.0)

    def records(self) -> list[Run]:
        runs = [Run.from_json(e.value) for e in self.store.scan(KEYS.runs())]
        return sorted(runs, key=lambda r: (r.fire_time or 0.0, r.attempt, r.started or 0.0))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> ToolsDown:
    backend = ToolsDown(clock=clock.monotonic)
    backend.put(KEYS.tool("t"), Tool(name="t", image="img").to_json())
    return backend


@pytest.fixture
def harness(store: ToolsDown, clock: FakeClock) -> Iterator[Harness]:
    group = Harness(store, clock)
    yield group
    group.stop()


def put_schedule(store: MemoryStore, **fields: object) -> Schedule:
    fields.setdefault("cron", "* * * * * *")
    fields.setdefault("created", START)  # so no firing before START was missed
    fields.setdefault("tool", "t")
    schedule = Schedule(name="s", **fields)  # type: ignore[arg-type]
    store.put(KEYS.schedule("s"), schedule.to_json())
    return schedule


def firing_keys(store: MemoryStore) -> list[str]:
    return [KEYS.leaf(e.key) for e in store.scan(KEYS.firings("s"))]


# Every claimed firing ends in exactly one final record ---------------------------------


def test_a_run_whose_tool_cannot_be_read_still_starts_from_the_tool_read_at_connect(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41 * * * * *")
    harness.start("a")
    store.tools_down = True  # etcd answers the claim, then fails the tool read
    harness.tick(2)
    [record] = harness.records()
    assert (record.fire_time, record.status) == (START + 1, "succeeded")


def test_a_claimed_firing_that_cannot_start_is_recorded_and_retried(
    store: ToolsDown, harness: Harness
) -> None:
    store.tool_events_late = True
    worker = harness.start("a")
    # Registered after the worker connected, its event not yet there: it has never read it.
    store.put(KEYS.tool("u"), Tool(name="u", image="img").to_json())
    put_schedule(store, cron="42 * * * * *", tool="u", retries=1)
    pause = threading.Event()  # never set: a bounded real-time wait for the watch thread
    for _ in range(1000):
        if any(s.tool == "u" for s in worker.followed()):
            break
        pause.wait(0.01)
    assert any(s.tool == "u" for s in worker.followed()), "the schedule never arrived"
    harness.tick(1)
    store.tools_down = True
    harness.tick(1)  # 42: claimed, but the tool cannot be read
    harness.journal.wait_for(lambda j: len(j.saved) >= 1)
    store.tools_down = False
    harness.tick(1)  # the retry (backoff 0.2 s)
    harness.journal.wait_for(lambda j: len(j.saved) >= 2)
    records = [(r.attempt, r.status, r.error) for r in harness.records()]
    assert records == [
        (1, "failed", "could not start: etcd unreachable"),
        (2, "succeeded", None),
    ]


def test_a_guard_release_that_timed_out_is_tried_again_before_the_next_claim(
    store: ToolsDown, harness: Harness
) -> None:
    """The release of a run's overlap guard fails once while etcd stays reachable: tried
    again before the next firing's claim, it does not turn every later firing into an
    overlap skip for as long as the member lives."""
    put_schedule(store)  # every second, overlap forbidden
    harness.start("a")
    store.guard_deletes_failing = 1
    harness.tick(4)
    records = [(int((r.fire_time or 0) - START), r.status) for r in harness.records()]
    assert records == [(1, "succeeded"), (2, "succeeded"), (3, "succeeded"), (4, "succeeded")]


def test_a_firing_of_a_tool_that_is_gone_is_recorded_skipped(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41 * * * * *", tool="ghost")
    harness.start("a")
    harness.tick(2)
    [record] = harness.records()
    assert record.status == "skipped"
    assert record.error == "schedule refers to tool 'ghost', which is not registered"


# A schedule changed before its firing is claimed -----------------------------------


def test_a_pause_not_yet_seen_by_the_member_stops_the_next_firing(
    store: ToolsDown, harness: Harness
) -> None:
    """`maomao schedule pause` lands, and the member's watch has not delivered it when the
    next firing is due: the claim compares the schedule's revision and is refused, so the
    paused schedule runs nothing; the refused firing waits for news of the schedule
    instead of being claimed again and again."""
    store.schedule_events_late = True
    schedule = put_schedule(store)  # every second
    harness.start("a")
    harness.tick(2)
    assert [r.status for r in harness.records()] == ["succeeded", "succeeded"]
    store.put(KEYS.schedule("s"), replace(schedule, paused=True).to_json())
    sent = store.claims_sent
    harness.tick(3)
    assert [r.status for r in harness.records()] == ["succeeded", "succeeded"], "no run"
    assert firing_keys(store) == [str(int(START + 1)), str(int(START + 2))], "no claim"
    assert store.claims_sent - sent == 3, "one refused claim per firing, no more"


def test_a_schedule_written_again_unchanged_loses_no_firing(
    store: ToolsDown, harness: Harness
) -> None:
    """A put of the same record (a resume of a schedule that was not paused) gives it a
    new revision: the member's claims compare the new one once its event is in."""
    schedule = put_schedule(store)
    harness.start("a")
    harness.tick(2)
    store.put(KEYS.schedule("s"), schedule.to_json())
    harness.tick(3)
    harness.journal.wait_for(lambda j: len(j.saved) >= 5)
    fired = [(int((r.fire_time or 0) - START), r.status) for r in harness.records()]
    assert fired == [(n, "succeeded") for n in range(1, 6)]


# Claims only for free slots ----------------------------------------------------------


def test_a_member_without_a_free_slot_leaves_the_firing_to_a_member_with_one(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, overlap=True)
    gate = threading.Event()
    a = harness.start("a", concurrent=True, gate=gate, max_parallel=1)
    harness.tick(1)  # a alone: it claims 1 and holds it at the gate
    harness.journal.wait_for(lambda j: len(j.executions) == 1)
    b = harness.start("b", concurrent=True, gate=gate, max_parallel=1)
    assert b.max_parallel == 1
    harness.tick(1)  # 2: a has no free slot, so only b claims it
    harness.journal.wait_for(lambda j: len(j.executions) == 2)
    assert [(e.fire_time, e.member) for e in harness.journal.executions] == [
        (START + 1, "a"),
        (START + 2, "b"),
    ]
    assert (a.stats.claims_won, a.stats.claims_lost) == (1, 0), "a never claimed 2"
    gate.set()
    harness.journal.wait_for(lambda j: len([r for r in j.saved if r.status == "succeeded"]) == 2)


def test_what_a_busy_member_cannot_start_waits_unclaimed_until_a_slot_frees(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, overlap=True)
    gate = threading.Event()
    a = harness.start("a", concurrent=True, gate=gate, max_parallel=1)
    harness.tick(1)
    harness.journal.wait_for(lambda j: len(j.executions) == 1)
    harness.tick(2)  # 2 and 3 come due while the only slot is taken
    assert firing_keys(store) == [str(int(START + 1))], "no claim without a free slot"
    assert a.stats.claims_won == 1
    gate.set()  # the slot frees: the oldest waiting firing is claimed, then the next
    harness.journal.wait_for(lambda j: len(j.executions) >= 3)
    harness.tick(1)
    harness.journal.wait_for(lambda j: len(j.executions) >= 4)
    started = [int(e.fire_time - START) for e in harness.journal.executions]
    assert started[:4] == [1, 2, 3, 4]


# Catch-up after an outage is one run -------------------------------------------------


def test_an_outage_beyond_the_grace_window_leaves_one_missed_record(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41,43,44,45 * * * * *", grace=1.0)
    harness.start("a")
    harness.tick(1)
    store.down = True
    harness.tick(6)  # 43, 44 and 45 missed
    store.down = False
    harness.tick(6)  # the reconnect backs off up to 4 s
    harness.stop()
    after = [r for r in harness.records() if (r.fire_time or 0) > START + 1]
    missed = [r for r in after if r.status == "skipped"]
    assert len(missed) == 1, [(r.fire_time, r.status, r.error) for r in after]
    assert (missed[0].error or "").startswith("missed: "), missed[0].error
    assert missed[0].fire_time == START + 5
    assert "3 firings (17:46:43 to 17:46:45)" in (missed[0].error or "")
    assert "beyond the grace window of 1s" in (missed[0].error or "")


def test_a_claim_whose_answer_was_lost_is_finished_not_coalesced(
    store: ToolsDown, harness: Harness, clock: FakeClock
) -> None:
    put_schedule(store, cron="41,43,44 * * * * *")
    worker = harness.start("a")
    real_claim = store.claim

    def applied_then_cut(claims: object) -> list[object]:
        real_claim(claims)  # type: ignore[arg-type]
        store.down = True  # the answer never comes back
        return [Unavailable("connection reset")]

    store.claim = applied_then_cut  # type: ignore[assignment,method-assign]
    harness.tick(1)  # 41 claimed, outcome unknown
    store.claim = real_claim  # type: ignore[method-assign]
    harness.tick(3)  # 43 and 44 missed
    store.down = False
    harness.tick(5)
    harness.stop()
    ran = [(int((e.fire_time) - START), e.trigger) for e in harness.journal.executions]
    assert ran == [(1, "schedule"), (4, "catch-up")], ran
    assert worker.stats.claims_won == 2


def test_a_claim_whose_answer_was_lost_beyond_the_grace_window_ends_in_a_final_record(
    store: ToolsDown, harness: Harness
) -> None:
    # The claim wrote its `running` record; the cut lasts longer than the grace window, so
    # on reconnecting the firing is late: still ours, it runs (a skip now would leave the
    # record the claim wrote `running` for ever, under a member that lives).
    put_schedule(store, cron="41 * * * * *", grace=2.0)
    harness.start("a")
    real_claim = store.claim

    def applied_then_cut(claims: object) -> list[object]:
        real_claim(claims)  # type: ignore[arg-type]
        store.down = True
        return [Unavailable("connection reset")]

    store.claim = applied_then_cut  # type: ignore[assignment,method-assign]
    harness.tick(1)
    store.claim = real_claim  # type: ignore[method-assign]
    harness.tick(5)
    store.down = False
    harness.tick(8)
    harness.stop()
    assert [(r.fire_time, r.status) for r in harness.records()] == [(START + 1, "succeeded")]


# The outbox on disk ---------------------------------------------------------------------


def test_the_outbox_journal_keeps_records_across_processes(tmp_path: Path) -> None:
    store = MemoryStore()
    journal = OutboxJournal(tmp_path / "outbox-a.jsonl")
    run = Run(id="r1", tool="t", member="a", status="running", schedule="s", fire_time=10.0)
    first = Outbox(store, runs_prefix="/p/runs/", journal=journal)
    store.down = True
    first.put("/p/runs/r1", run.to_json())
    first.put("/p/runs/r1", replace(run, status="succeeded").to_json())
    first.put("/p/runs/r2", replace(run, id="r2").to_json())
    with open(journal.path, "a") as torn:  # a write cut by a crash
        torn.write('{"put": 9, "key": "/p/ru')
    # A new process on the same journal: the newest value of each key, in order.
    second = Outbox(store, runs_prefix="/p/runs/", journal=OutboxJournal(journal.path))
    assert second.pending == 2
    store.down = False
    assert second.flush() == 2
    entry = store.get("/p/runs/r1")
    assert entry is not None and Run.from_json(entry.value).status == "succeeded"
    assert journal.path.read_text() == "", "emptied once everything is written"
    third = Outbox(store, runs_prefix="/p/runs/", journal=OutboxJournal(journal.path))
    assert third.pending == 0


def test_a_written_record_is_not_written_again_by_the_next_process(tmp_path: Path) -> None:
    store = MemoryStore()
    journal = OutboxJournal(tmp_path / "outbox-a.jsonl")
    outbox = Outbox(store, runs_prefix="/p/runs/", journal=journal)
    store.down = True
    outbox.put("/p/runs/r1", b'{"a": 1}')
    outbox.put("/p/runs/r2", b'{"b": 2}')
    store.down = False
    real_put = store.put
    calls = iter([True])

    def fail_second(key: str, value: bytes, *, lease: int | None = None) -> int:
        if key.endswith("r2") and next(calls, False):
            raise Unavailable("down again")
        return real_put(key, value, lease=lease)

    store.put = fail_second  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        outbox.flush()
    store.put = real_put  # type: ignore[method-assign]
    assert list(OutboxJournal(journal.path).load()) == ["/p/runs/r2"]


def test_a_worker_stopped_during_an_outage_writes_its_outcomes_at_its_next_start(
    store: ToolsDown, harness: Harness, tmp_path: Path
) -> None:
    put_schedule(store, cron="41 * * * * *")
    gate = threading.Event()
    # Its lease outlives its stop however long that takes (stop advances the fake clock
    # until the worker's thread is gone): b must find a's member alive, its run running.
    first = harness.start("a", concurrent=True, gate=gate, outbox_dir=tmp_path, lease_ttl=60)
    harness.tick(1)
    harness.journal.wait_for(lambda j: len(j.executions) == 1)
    store.down = True
    gate.set()  # the run ends while etcd is down: its outcome goes to the journal
    harness.journal.wait_for(lambda j: any(r.status == "succeeded" for r in j.saved))
    harness.stop(first)
    assert (tmp_path / "outbox-a.jsonl").read_text(), "kept on disk"
    store.down = False
    [running] = harness.records()
    assert running.status == "running"
    harness.start("b")  # a live member sweeping lost runs must not find it running
    harness.start("a", outbox_dir=tmp_path)
    harness.tick(1)
    harness.stop()
    [record] = harness.records()
    assert record.status == "succeeded", record
    assert len(harness.journal.executions) == 1, "never run twice"


T = TypeVar("T")


class Killed(Executor):
    """The pools of a process killed right after its claims: nothing submitted runs."""

    def submit(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> Future[T]:
        return Future()


def test_a_member_killed_right_after_its_claim_leaves_a_record_and_its_firing_is_retried(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41 * * * * *", retries=1)
    killed = harness.start("a", pool=lambda workers, name: Killed(), shutdown_grace=1)
    harness.tick(1)
    [claimed] = harness.records()
    assert (claimed.fire_time, claimed.member, claimed.status) == (START + 1, "a", "running")
    # Gone, as a killed process is, after waiting for the run that never came.
    [process] = harness.running
    process.stop.set()
    harness.tick(40)
    harness.stop(killed)
    assert [r.status for r in harness.records()] == ["running"]
    harness.start("b")
    harness.tick(1)
    harness.stop()
    lost, retried = harness.records()
    assert (lost.id, lost.status) == (claimed.id, "lost")
    assert (retried.fire_time, retried.attempt, retried.member, retried.status) == (
        START + 1,
        2,
        "b",
        "succeeded",
    )
    assert [(e.fire_time, e.attempt) for e in harness.journal.executions] == [(START + 1, 2)]


# Mode everywhere: a lost run belongs to its member ------------------------------------------


def orphan(member: str, fire_time: float, started: float) -> Run:
    return Run(
        id=f"orphan-{member}",
        tool="t",
        member=member,
        status="running",
        trigger="schedule",
        schedule="s",
        fire_time=fire_time,
        started=started,
    )


def test_everywhere_lost_run_is_retried_by_its_member_only(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="0 0 1 1 *", mode="everywhere", created=START - 600)
    fire = START - 10
    store.put(KEYS.run("orphan-a"), orphan("a", fire, START - 10).to_json())
    harness.start("b")  # a is gone: b marks the run lost, and does not re-run it
    lost = Run.from_json(store.get(KEYS.run("orphan-a")).value)  # type: ignore[union-attr]
    assert lost.status == "lost"
    assert lost.error is not None and "only a re-runs it" in lost.error
    assert harness.journal.executions == []
    harness.start("a")  # back within grace: it re-runs its own firing
    harness.stop()
    assert [(e.member, e.fire_time, e.attempt) for e in harness.journal.executions] == [
        ("a", fire, 2)
    ]


def test_a_returning_member_runs_its_lost_run_and_its_catch_up_one_after_the_other(
    store: ToolsDown, harness: Harness
) -> None:
    # Overlap forbidden: the retry of its lost run and the catch-up of the firing it missed
    # while away come due together, and share one overlap guard.
    put_schedule(store, cron="5/10 * * * * *", mode="everywhere", created=START - 600)
    lost = replace(orphan("a", START - 15, START - 15), status="lost")  # marked by another
    store.put(KEYS.run("orphan-a"), lost.to_json())
    harness.start("a")
    harness.tick(3)
    harness.stop()
    ran = [(e.fire_time - START, e.attempt, e.trigger) for e in harness.journal.executions]
    assert (-15, 2, "retry") in ran and (-5, 1, "catch-up") in ran, ran
    mine = [r for r in harness.records() if r.member == "a"]
    assert not [r for r in mine if r.fire_time == START - 15 and r.status == "skipped"], mine


def test_everywhere_lost_run_beyond_grace_stays_lost(store: ToolsDown, harness: Harness) -> None:
    put_schedule(store, cron="0 0 1 1 *", mode="everywhere", grace=5.0, created=START - 600)
    store.put(KEYS.run("orphan-a"), orphan("a", START - 60, START - 60).to_json())
    harness.start("a")
    harness.stop()
    assert harness.journal.executions == []
    lost = Run.from_json(store.get(KEYS.run("orphan-a")).value)  # type: ignore[union-attr]
    assert lost.status == "lost"


# Retries waiting for their backoff are recorded in etcd ----------------------------------


def test_a_retry_waiting_for_its_backoff_is_recorded_and_removed_once_claimed(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41 * * * * *", retries=1)
    harness.start("a", failing=1, backoff=10.0, backoff_max=60.0)
    harness.tick(2)
    [entry] = store.scan(KEYS.retries())
    pending = PendingRetry.decode(entry.value)
    assert pending is not None
    assert (pending.member, pending.attempt, pending.at) == ("a", 2, START + 11)
    harness.tick(10)
    assert store.scan(KEYS.retries()) == []
    assert [(e.attempt, e.trigger) for e in harness.journal.executions] == [
        (1, "schedule"),
        (2, "retry"),
    ]


def test_a_retry_queued_by_a_member_that_died_is_run_by_a_live_one(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="0 0 1 1 *", created=START - 600)
    fire = START - 30
    ghost = PendingRetry("ghost", START - 100, "s", fire, 2, START + 3)
    store.put(KEYS.pending_retry("s", int(fire), 2), ghost.encode())
    store.put(KEYS.pending_retry("s", int(fire), 3), b"not a record")  # ignored
    harness.start("a")
    harness.start("b")
    harness.tick(2)
    assert harness.journal.executions == [], "not before its due time"
    harness.tick(2)
    harness.stop()
    assert [(e.fire_time, e.attempt, e.trigger) for e in harness.journal.executions] == [
        (fire, 2, "retry")
    ]
    assert [KEYS.leaf(e.key) for e in store.scan(KEYS.retries())] == [f"{int(fire)}.r3"]


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'{"member": "a", "process": 1, "schedule": "s", "fire_time": 1, "attempt": 1, "at": 1}',
        b'{"member": "a", "process": 1, "schedule": "s", "fire_time": "x", "attempt": 2, "at": 1}',
        b'{"member": 1, "process": 1, "schedule": "s", "fire_time": 1, "attempt": 2, "at": 1}',
        b'{"member": "a", "process": 1, "schedule": "s", "fire_time": 1, "attempt": true, "at": 1}',
        b'{"member": "a", "process": 1, "schedule": "s", "fire_time": 1e999, "attempt": 2, "at": 1}',
    ],
)
def test_pending_retry_records_from_others_are_checked(raw: bytes) -> None:
    assert PendingRetry.decode(raw) is None


def test_pending_retry_round_trips() -> None:
    pending = PendingRetry("a", 1.5, "s", 100.0, 2, 105.0)
    assert PendingRetry.decode(pending.encode()) == pending
    assert json.loads(pending.encode())["attempt"] == 2


def test_the_guard_of_a_run_that_ended_during_an_outage_does_not_skip_the_catch_up(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41,43,44 * * * * *")  # overlap forbidden
    gate = threading.Event()
    harness.start("a", concurrent=True, gate=gate, lease_ttl=30)  # the lease outlives it
    harness.tick(1)
    harness.journal.wait_for(lambda j: len(j.executions) == 1)
    store.down = True
    gate.set()  # it ends while etcd is down: its guard cannot be deleted
    harness.journal.wait_for(lambda j: any(r.status == "succeeded" for r in j.saved))
    harness.tick(4)  # 43 and 44 missed
    store.down = False
    harness.tick(8)
    harness.stop()
    assert [(r.fire_time, r.status, r.trigger) for r in harness.records()] == [
        (START + 1, "succeeded", "schedule"),
        (START + 4, "succeeded", "catch-up"),
    ]


def test_a_catch_up_skipped_as_overlapping_names_the_firings_it_stood_for(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41,43,44 * * * * *")  # overlap forbidden
    gate = threading.Event()
    harness.start("a", concurrent=True, gate=gate, lease_ttl=30)
    harness.tick(1)
    harness.journal.wait_for(lambda j: len(j.executions) == 1)
    store.down = True
    harness.tick(4)  # 43 and 44 missed while 41 still runs
    store.down = False
    harness.tick(8)
    wait_for_stored(store, lambda runs: any(r.status == "skipped" for r in runs.values()))
    gate.set()
    harness.stop()
    skipped = [r for r in harness.records() if r.status == "skipped"]
    assert [(r.fire_time, r.trigger, r.error) for r in skipped] == [
        (START + 4, "catch-up", "previous run still running (overlap forbidden)")
    ]
    assert skipped[0].warning == "coalesced 2 missed firings (17:46:43 to 17:46:44)"


def test_etcd_going_away_after_registration_is_an_outage_not_a_failed_start(
    store: ToolsDown, harness: Harness
) -> None:
    put_schedule(store, cron="41,43,44 * * * * *")
    real_scan = store.scan_with_revision
    cut: list[str] = []

    def cut_at_the_first_load(prefix: str) -> tuple[list[Entry], int]:
        if not cut:  # listed as a member already, not up yet
            cut.append(prefix)
            store.down = True
            raise Unavailable("connection reset")
        return real_scan(prefix)

    store.scan_with_revision = cut_at_the_first_load  # type: ignore[method-assign]
    harness.start("a")  # up, and retrying
    # Its loop too waits on the clock (between two tries), besides the keep-alive and
    # the flush: the fake time must not pass it by.
    harness.clock.wait_for_waiters(3)
    store.down = False
    harness.tick(6)
    harness.stop()
    assert cut == [KEYS.schedules()]
    ran = [(int(e.fire_time - START), e.trigger) for e in harness.journal.executions]
    assert (4, "schedule") in ran, ran  # the schedules loaded on reconnecting


class CutOff:
    """One member's view of the shared store: while `cut`, every call fails for it only
    (a partition of that member), and its watches end."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.cut = False

    def __getattr__(self, name: str) -> object:
        if self.cut:
            raise Unavailable("etcd unreachable from this member")
        return getattr(self.store, name)


def test_a_member_cut_off_while_others_ran_the_firings_makes_no_catch_up(
    store: ToolsDown, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maomao.worker")
    put_schedule(store, overlap=True)
    view = CutOff(store)
    harness.start("b")
    cut = Worker(
        settings(),
        store_factory=lambda: view,  # type: ignore[arg-type,return-value]
        make_runs=lambda s: FakeRuns(s, "a", harness.journal, harness.clock),
        member="a",
        clock=harness.clock,
        make_pool=inline_pool,
    )
    stop = threading.Event()
    thread = threading.Thread(target=cut.run, args=(stop,), name="worker-a")
    thread.start()
    assert cut.ready.wait(10)
    harness.running.append(Running(cut, stop, thread))
    harness.clock.wait_for_waiters(4)
    harness.tick(1)
    view.cut = True
    harness.tick(4)  # b runs them all; a cannot claim
    view.cut = False
    harness.tick(8)
    harness.stop()
    ran = [(int(e.fire_time - START), e.trigger) for e in harness.journal.executions]
    assert [t for _, t in ran] == ["schedule"] * len(ran), ran
    assert [f for f, _ in ran] == list(range(1, len(ran) + 1)), "each once, none missing"
    assert "etcd reachable again" in caplog.text
    # Back, a sees b's claims in the stretch it missed: its next firing is a regular one.
    assert "coalesced into one catch-up" not in caplog.text
