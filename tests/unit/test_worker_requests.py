"""Operator controls on the worker, against the in-memory store and a fake clock:
`schedule trigger` (one run through the claim path, overlap respected, --force),
`schedule backfill` (each nominal time once across three workers, --missing-only),
pause with an end (nothing during, nothing caught up, resumes by itself), and jitter
(stable per member, different between members, never past the next firing)."""

from __future__ import annotations

import threading
from collections import Counter

from test_worker_memory import (
    KEYS,
    Members,
    clock,
    members,
    put_schedule,
    store,
    stored_runs,
    wait_for_stored,
)

from fakes.clock import START, FakeClock
from maomao_cli import jitter
from maomao_cli.config import Settings
from maomao_cli.models import FiringRequest, Schedule
from maomao_cli.services.coverage import CoverageService
from maomao_cli.services.registry import Registry
from maomao_cli.services.schedules import ScheduleService
from maomao_cli.services.worker.requests import Requests
from maomao_cli.services.worker.timetable import Due
from maomao_cli.store.memory import MemoryStore

__all__ = ["clock", "members", "store"]  # the fixtures, shared with test_worker_memory

NEVER = "0 0 1 1 *"  # no regular firing during a test


def service(store: MemoryStore, clock: FakeClock) -> ScheduleService:
    return ScheduleService(store, KEYS, Registry(store, KEYS), clock=clock)


def tick_until(members: Members, done: object, limit: int = 60) -> None:
    for _ in range(limit):
        if callable(done) and done():
            return
        members.tick(1)
    raise AssertionError("it never happened")


def test_trigger_runs_one_firing_now_through_the_claim_path(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store, cron=NEVER)
    members.start(["a", "b", "c"])
    request = service(store, clock).trigger("s", by="ops@lab")
    tick_until(members, lambda: members.journal.executions)
    members.tick(2)
    members.stop()
    assert [(e.fire_time, e.attempt, e.trigger) for e in members.journal.executions] == [
        (request.fire_time, 1, "manual")
    ]
    assert request.fire_time == START
    assert store.scan(KEYS.requests()) == [], "the request is done with"
    assert store.get(KEYS.firing("s", int(START))) is not None, "claimed as that nominal time"


def test_trigger_respects_the_overlap_policy_unless_forced(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store, cron=NEVER)
    gate = threading.Event()
    members.start(["a", "b"], concurrent=True, gate=gate)
    schedules = service(store, clock)
    schedules.trigger("s")
    members.journal.wait_for(lambda j: len(j.executions) == 1)  # held at the gate
    members.tick(1)
    schedules.trigger("s")  # the first still runs: skipped as overlapping
    wait_for_stored(store, lambda runs: any(r.status == "skipped" for r in runs.values()))
    members.tick(1)
    schedules.trigger("s", force=True)  # runs beside it
    members.journal.wait_for(lambda j: len(j.executions) == 2)
    gate.set()
    members.journal.wait_for(
        lambda j: sum(r.status == "succeeded" for r in j.final().values()) == 2
    )
    members.stop()
    final = stored_runs(store)
    assert [final[k].status for k in sorted(final)] == ["succeeded", "skipped", "succeeded"]
    assert "overlap" in (final[START + 1, 1].error or "")
    assert store.get(KEYS.active("s")) is None, "the forced run left the guard alone"


def test_a_triggered_firing_runs_on_every_member_in_mode_everywhere(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store, cron=NEVER, mode="everywhere")
    members.start(["a", "b", "c"])
    service(store, clock).trigger("s")
    tick_until(members, lambda: len(members.journal.executions) == 3)
    members.tick(2)
    members.stop()
    assert sorted(e.member for e in members.journal.executions) == ["a", "b", "c"]


def test_backfill_runs_each_nominal_time_once_across_three_workers(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store, cron="* * * * *")  # every minute; created at START
    members.start(["a", "b", "c"])
    schedules = service(store, clock)
    plan = schedules.backfill("s", start=START - 1200, end=START - 1, max_parallel=3)
    assert plan.requested == 20
    tick_until(members, lambda: len(members.journal.executions) >= 20)
    members.tick(2)
    ran = Counter(e.fire_time for e in members.journal.executions)
    assert len(ran) == 20 and set(ran.values()) == {1}
    assert {e.trigger for e in members.journal.executions} == {"backfill"}
    assert store.scan(KEYS.requests()) == [] and store.scan(KEYS.slots("s")) == []

    # --missing-only after deleting the records of 5: those 5 run again, as attempt 2.
    gone = sorted(ran)[3:8]
    for run in list(members.journal.final().values()):
        if run.fire_time in gone:
            store.delete(KEYS.run(run.id))
    again = schedules.backfill("s", start=START - 1200, end=START - 1, missing_only=True)
    assert (again.requested, sum(f.skip is None for f in again.firings)) == (5, 5)
    tick_until(members, lambda: len(members.journal.executions) >= 25)
    members.tick(2)
    members.stop()
    second = [(e.fire_time, e.attempt) for e in members.journal.executions[20:]]
    assert sorted(second) == [(fire, 2) for fire in gone]


def test_backfill_never_runs_more_at_once_than_max_parallel(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store, cron="* * * * *")
    gate = threading.Event()
    members.start(["a", "b", "c"], concurrent=True, gate=gate)
    service(store, clock).backfill("s", start=START - 600, end=START - 1, max_parallel=2)
    # Fake time passes while we wait: members that found every slot taken look again.
    tick_until(members, lambda: len(members.journal.executions) >= 2)
    members.tick(3)  # the others look for a slot again: there is none
    assert len(members.journal.executions) == 2
    assert len(store.scan(KEYS.slots("s"))) == 2
    gate.set()
    tick_until(members, lambda: len(members.journal.executions) == 10)
    members.stop()
    assert len({e.fire_time for e in members.journal.executions}) == 10


def test_pause_until_runs_nothing_during_and_resumes_by_itself(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store)  # every second
    paused = service(store, clock).pause("s", until="5s", note="maintenance", by="ops@lab")
    assert (paused.paused_until, paused.paused_at, paused.paused_by) == (
        START + 5,
        START,
        "ops@lab",
    )
    members.start(["a"])
    members.tick(8)
    members.stop()
    fired = sorted(int(e.fire_time - START) for e in members.journal.executions)
    assert fired == [5, 6, 7, 8], "nothing during the pause, nothing caught up after"


def test_a_firing_during_a_deliberate_pause_is_never_caught_up(
    store: MemoryStore, members: Members
) -> None:
    # Like test_a_missed_firing_within_the_grace_window_is_caught_up, but START - 1 fell
    # in a pause that has ended since.
    put_schedule(
        store, cron="39 * * * * *", grace=5.0, created=START - 60, pauses=[[START - 30, START]]
    )
    members.start(["a"])
    members.stop()
    assert members.journal.executions == []


def test_jitter_is_stable_per_member_and_never_past_the_next_firing(
    store: MemoryStore, members: Members
) -> None:
    put_schedule(store, cron="*/20 * * * * *", mode="everywhere", jitter=10.0)
    members.start(["a", "b", "c"])
    members.tick(80)
    members.stop()
    offsets: dict[str, set[float]] = {}
    for run in members.journal.saved:
        assert run.fire_time is not None and run.started is not None
        assert run.fire_time % 20 == 0, "the record carries the nominal time"
        offsets.setdefault(run.member, set()).add(round(run.started - run.fire_time, 3))
    assert sorted(offsets) == ["a", "b", "c"]
    assert all(len(found) == 1 for found in offsets.values()), offsets  # stable
    values = [next(iter(found)) for found in offsets.values()]
    assert len(set(values)) == 3, "differ between members"
    assert all(0 <= v < 10 for v in values)
    schedule = Schedule(name="s", tool="t", cron="*/20 * * * * *", mode="everywhere", jitter=10)
    assert offsets["a"] == {jitter.offset(schedule, "a", START + 20, START + 40)}


def test_jitter_is_capped_below_the_gap_to_the_next_firing(
    store: MemoryStore, members: Members
) -> None:
    put_schedule(store, cron="*/2 * * * * *", jitter=10.0)  # once: one offset per firing
    members.start(["a", "b"])
    members.tick(20)
    members.stop()
    runs = list(members.journal.final().values())
    assert len(runs) >= 8
    assert all(0 <= (r.started or 0) - (r.fire_time or 0) < 2 for r in runs)
    assert len(Counter(r.fire_time for r in runs)) == len(runs), "still once per firing"


def test_coverage_matches_what_happened_firing_by_firing(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    """A worker runs a 10 s schedule; a pause from 60 s to 90 s; every worker down from
    100 s to 137 s (beyond the 5 s grace window: nothing to catch up); then it runs on."""
    put_schedule(store, cron="*/10 * * * * *", grace=5.0)
    members.start(["a"])
    members.tick(60)
    service(store, clock).pause("s", until="30s", note="maintenance", by="ops@lab")
    members.tick(40)
    members.stop()  # the outage
    clock.advance(37)
    back = Members(store, clock)
    try:
        back.start(["a"])
        back.tick(53)  # to 190 s
    finally:
        back.stop()
    found = CoverageService(store, KEYS, Settings(), clock).report(since=START)
    [report] = [c.to_dict() for c in found]
    by_second = {
        int(f["fire_time"] - START): (f["outcome"], f["reason"]) for f in report["firings"]
    }
    ran = ("succeeded", None)
    assert by_second == {
        10: ran, 20: ran, 30: ran, 40: ran, 50: ran, 60: ran,
        70: ("paused", "maintenance"), 80: ("paused", "maintenance"),
        90: ran, 100: ran,
        110: ("missed", "no member ran it"), 120: ("missed", "no member ran it"),
        130: ("missed", "no member ran it"),
        140: ran, 150: ran, 160: ran, 170: ran, 180: ran,
    }  # fmt: skip
    gaps = [
        (g["start"] - START, g["end"] - START, g["count"], g["outcome"]) for g in report["gaps"]
    ]
    assert gaps == [(70, 80, 2, "paused"), (110, 130, 3, "missed")]
    assert report["counts"] == {"succeeded": 13, "paused": 2, "missed": 3}


def test_a_trigger_older_than_the_grace_window_is_not_run_by_a_member_starting_later(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store, cron=NEVER, mode="everywhere", grace=5.0)
    service(store, clock).trigger("s")  # no worker up
    clock.advance(6)
    members.start(["late"])
    members.tick(3)
    members.stop()
    assert members.journal.executions == []


def test_a_backfill_goes_on_when_its_schedule_is_paused_meanwhile(
    store: MemoryStore, clock: FakeClock, members: Members
) -> None:
    put_schedule(store, cron="* * * * *")
    gate = threading.Event()
    members.start(["a"], concurrent=True, gate=gate)
    schedules = service(store, clock)
    schedules.backfill("s", start=START - 300, end=START - 1, max_parallel=1)
    members.journal.wait_for(lambda j: len(j.executions) == 1)
    schedules.pause("s", note="changed meanwhile")  # a new version of the schedule
    members.tick(1)
    gate.set()
    tick_until(members, lambda: len(members.journal.executions) == 5)
    members.stop()
    assert len({e.fire_time for e in members.journal.executions}) == 5


def test_a_member_that_frees_a_backfill_slot_takes_the_next_request_at_once(
    store: MemoryStore,
) -> None:
    """Slots full: the member waits SLOT_RETRY before looking again, unless it freed one
    itself (a lost claim, a finished run), which it may take straight away."""
    schedule = put_schedule(store, cron=NEVER)
    for offset in (60, 120):
        request = FiringRequest(
            schedule="s", fire_time=START - offset, trigger="backfill", max_parallel=1
        )
        store.put(KEYS.request("s", str(offset)), request.to_json())
    requests = Requests(KEYS, "a", {}, grace=lambda _: 60.0)
    requests.load(store.scan(KEYS.requests()))

    def take() -> list[Due]:
        return requests.take(store, now=START, free=4, schedule_of=lambda _: schedule, lease=None)

    [first] = take()
    assert first.slot is not None and take() == [], "the only slot is taken"
    requests.finished(store, first)
    [second] = take()
    assert second.request != first.request and second.slot == first.slot
