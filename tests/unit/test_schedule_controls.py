"""The pure parts of the operator controls, in tables: DST marks of the next firings
(Europe/Zurich and America/New_York, both changes), time options, jitter, pauses,
backfill planning and the service's refusals (one line, nothing written), and coverage
classification with its gaps and day strip."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from fakes.clock import START, FakeClock
from maomao_cli import jitter, timespec
from maomao_cli.errors import BadInput
from maomao_cli.keys import Keys
from maomao_cli.models import Member, Run, RunStatus, Schedule, Tool
from maomao_cli.scheduling import CronClock, paused_during, paused_now
from maomao_cli.services import backfill, coverage
from maomao_cli.services.registry import Registry
from maomao_cli.services.schedules import ScheduleService
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/maomao")


def at(text: str, tz: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def utc(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%m-%d %H:%M")


# (zone, cron, after (local), [(wall time, UTC instant, mark)])
DST_TABLE = [
    (
        "Europe/Zurich",
        "30 2 * * *",
        "2026-03-28T12:00",
        [("03-29 02:30", "03-29 01:30", "moved"), ("03-30 02:30", "03-30 00:30", None)],
    ),
    (
        "Europe/Zurich",
        "*/30 * * * *",
        "2026-03-29T01:10",
        [
            ("03-29 01:30", "03-29 00:30", None),
            ("03-29 02:00", "03-29 01:00", "moved"),
            ("03-29 02:30", "03-29 01:30", "moved"),
            ("03-29 03:00", None, "skipped"),
            ("03-29 03:30", None, "skipped"),
            ("03-29 04:00", "03-29 02:00", None),
        ],
    ),
    (
        "Europe/Zurich",
        "0,30 2 * * *",
        "2026-10-24T12:00",
        [
            ("10-25 02:00", "10-25 00:00", "repeated"),
            ("10-25 02:30", "10-25 00:30", "repeated"),
            ("10-26 02:00", "10-26 01:00", None),
        ],
    ),
    (
        "America/New_York",
        "0 2 * * *",
        "2026-03-07T12:00",
        [("03-08 02:00", "03-08 07:00", "moved"), ("03-09 02:00", "03-09 06:00", None)],
    ),
    (
        "America/New_York",
        "*/30 1 * * *",
        "2026-10-31T12:00",
        [
            ("11-01 01:00", "11-01 05:00", "repeated"),
            ("11-01 01:30", "11-01 05:30", "repeated"),
            ("11-02 01:00", "11-02 06:00", None),
        ],
    ),
]


@pytest.mark.parametrize(("tz", "cron", "after", "expected"), DST_TABLE)
def test_next_firings_mark_what_a_dst_change_does(
    tz: str, cron: str, after: str, expected: list[tuple[str, str | None, str | None]]
) -> None:
    clock = CronClock(cron, tz)
    start = at(after, tz)
    count = sum(1 for _, instant, _ in expected if instant is not None)
    planned = clock.marked(start, count)
    assert [(p.wall.strftime("%m-%d %H:%M"), utc(p.instant), p.mark) for p in planned] == expected
    # The instants are exactly the ones the workers fire at.
    assert [p.instant for p in planned if p.instant is not None] == clock.upcoming(start, count)


def test_show_next_ten_across_both_changes_in_both_zones() -> None:
    """The issue's `schedule show --next 10`, in the service, across each change."""
    store = MemoryStore()
    store.put(KEYS.tool("t"), Tool(name="t", image="img").to_json())
    members = [Member(name=n, host=n, version="1", started=0) for n in ("lab-a", "lab-b")]
    for tz, after, marks in (
        ("Europe/Zurich", "2026-03-29T00:10", {"moved": 2, "skipped": 2, "repeated": 0}),
        ("Europe/Zurich", "2026-10-25T00:10", {"moved": 0, "skipped": 0, "repeated": 2}),
        ("America/New_York", "2026-03-08T00:10", {"moved": 2, "skipped": 2, "repeated": 0}),
        ("America/New_York", "2026-11-01T00:10", {"moved": 0, "skipped": 0, "repeated": 2}),
    ):
        schedule = Schedule(
            name="s", tool="t", cron="*/30 * * * *", timezone=tz, mode="everywhere", jitter=60
        )
        service = ScheduleService(store, KEYS, Registry(store, KEYS))
        found = service.next_firings(schedule, 10, members, after=at(after, tz))
        fired = [f for f in found if f.instant is not None]
        assert len(fired) == 10
        counted = {m: sum(f.mark == m for f in found) for m in ("moved", "skipped", "repeated")}
        assert counted == marks, (tz, after)
        # Each member's offset is its own and the same at every firing.
        assert {tuple(sorted(f.jitter)) for f in fired} == {("lab-a", "lab-b")}
        assert len({f.jitter["lab-a"] for f in fired}) == 1
        assert fired[0].jitter["lab-a"] != fired[0].jitter["lab-b"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600), ("90", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert timespec.duration(text, "--jitter") == seconds


@pytest.mark.parametrize("text", ["", "ten", "5x", "-5s", "1h-", "nan", "inf"])
def test_bad_durations_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(BadInput, match="invalid --jitter") as caught:
        timespec.duration(text, "--jitter")
    assert "\n" not in str(caught.value)


def test_instants_are_durations_from_now_or_iso_times_in_the_zone() -> None:
    now = START
    assert timespec.instant("10s", "--until", now=now, zone_name="UTC", sign=1) == now + 10
    assert timespec.instant("2h", "--since", now=now, zone_name="UTC", sign=-1) == now - 7200
    zurich = timespec.instant(
        "2026-07-01T06:00", "--to", now=now, zone_name="Europe/Zurich", sign=1
    )
    assert utc(zurich) == "07-01 04:00"
    offset = timespec.instant(
        "2026-07-01T06:00+00:00", "--to", now=now, zone_name="Europe/Zurich", sign=1
    )
    assert utc(offset) == "07-01 06:00"
    with pytest.raises(BadInput, match="invalid --until 'soon'"):
        timespec.instant("soon", "--until", now=now, zone_name="UTC", sign=1)


def test_jitter_offsets() -> None:
    everywhere = Schedule(name="s", tool="t", cron="* * * * *", mode="everywhere", jitter=10)
    once = Schedule(name="s", tool="t", cron="* * * * *", jitter=10)
    a1 = jitter.offset(everywhere, "a", START, START + 60)
    assert a1 == jitter.offset(everywhere, "a", START + 60, START + 120), "stable per member"
    assert a1 != jitter.offset(everywhere, "b", START, START + 60)
    assert 0 <= a1 < 10
    # Mode once: every member computes the same offset; it changes with the nominal time.
    assert jitter.offset(once, "a", START, START + 60) == jitter.offset(
        once, "b", START, START + 60
    )
    assert jitter.offset(once, "a", START, START + 60) != jitter.offset(
        once, "a", START + 60, START + 120
    )
    # Never past the next firing; nothing without jitter.
    assert all(jitter.offset(everywhere, m, START, START + 1) < 1 for m in "abcdefgh")
    assert (
        jitter.offset(Schedule(name="s", tool="t", cron="* * * * *"), "a", START, START + 60) == 0
    )


def test_pauses() -> None:
    until = Schedule(
        name="s", tool="t", cron="* * * * *", paused=True, paused_at=100, paused_until=200
    )
    assert paused_now(until, 150) and not paused_now(until, 200)
    assert paused_during(until, 100) and paused_during(until, 199) and not paused_during(until, 99)
    open_ended = Schedule(name="s", tool="t", cron="* * * * *", paused=True)  # an old record
    assert paused_now(open_ended, 1e12) and paused_during(open_ended, 0)
    earlier = Schedule(name="s", tool="t", cron="* * * * *", pauses=[[10, 20]])
    assert (
        paused_during(earlier, 15)
        and not paused_during(earlier, 20)
        and not paused_now(earlier, 15)
    )


def run(fire: float, status: RunStatus, **fields: object) -> Run:
    return Run(
        id=f"{fire}-{status}",
        tool="t",
        member="a",
        status=status,
        schedule="s",
        fire_time=fire,
        **fields,  # type: ignore[arg-type]
    )


def test_backfill_plan() -> None:
    times = [100.0, 200.0, 300.0, 400.0, 500.0]
    claimed = backfill.claimed_attempts(["100", "200", "200.r2", "300@a", "9x"], ["400-a1"])
    assert claimed == {100: 1, 200: 2, 300: 1, 400: 1}
    runs = [run(100, "succeeded"), run(200, "failed"), run(300, "running")]
    plain = backfill.plan(times, claimed=claimed, runs=runs, missing_only=False)
    assert [(p.attempt, p.skip) for p in plain] == [
        (1, "claimed already (attempt 1)"),
        (2, "claimed already (attempt 2)"),
        (1, "running now"),
        (1, "claimed already (attempt 1)"),
        (1, None),
    ]
    missing = backfill.plan(times, claimed=claimed, runs=runs, missing_only=True)
    assert [(p.attempt, p.skip) for p in missing] == [
        (1, "succeeded already"),
        (3, None),
        (1, "running now"),
        (2, None),
        (1, None),
    ]


@pytest.fixture
def schedules() -> tuple[ScheduleService, MemoryStore]:
    store = MemoryStore()
    store.put(KEYS.tool("t"), Tool(name="t", image="img").to_json())
    service = ScheduleService(store, KEYS, Registry(store, KEYS), clock=FakeClock())
    service.create("t", "* * * * *", name="s")
    return service, store


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start": "2h", "end": "-1h"}, "invalid --to '-1h'"),
        ({"start": "1h", "end": "2030-03-17T18:00+00:00"}, "--to is in the future"),
        ({"start": "1h", "end": "2h"}, "--from is after --to"),
        ({"start": "30d", "end": "1s"}, "more than 1000 firings"),
        ({"start": "1h", "end": "1s", "max_parallel": 0}, "invalid --max-parallel 0"),
        ({"start": "yesterday", "end": "1s"}, "invalid --from 'yesterday'"),
    ],
)
def test_backfill_refuses_bad_ranges_in_one_line_and_writes_nothing(
    schedules: tuple[ScheduleService, MemoryStore], options: dict[str, object], message: str
) -> None:
    service, store = schedules
    before = store.scan_with_revision("/")[1]
    with pytest.raises(BadInput, match=message) as caught:
        service.backfill("s", **options)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert store.scan_with_revision("/")[1] == before


def test_pause_refuses_an_end_in_the_past_and_keeps_history(
    schedules: tuple[ScheduleService, MemoryStore],
) -> None:
    service, _store = schedules
    with pytest.raises(BadInput, match="must be in the future"):
        service.pause("s", until="2020-01-01T00:00")
    with pytest.raises(BadInput, match="control character"):
        service.pause("s", note="a\x1b[2Jb")
    paused = service.pause("s", note="maintenance", until="1h", by="ops@lab")
    assert (paused.pause_note, paused.paused_until, paused.paused_by) == (
        "maintenance",
        START + 3600,
        "ops@lab",
    )
    resumed = service.resume("s")
    assert (resumed.paused, resumed.pauses) == (False, [[START, START]])
    rescheduled, _ = service.create("t", "*/5 * * * *", name="s", jitter="10s")
    assert (rescheduled.pauses, rescheduled.jitter) == ([[START, START]], 10.0)


@pytest.mark.parametrize(
    ("claimed", "start"),
    [
        ([], START),  # nothing claimed since the pause's start: it stands
        ([f"{int(START) - 1}"], START),  # claimed before the start: not in the pause
        ([f"{int(START)}"], START + 0.001),  # claimed at the start, before it landed
        ([f"{int(START)}@a", f"{int(START) + 1}@b.r2"], START + 1.001),  # the latest
    ],
)
def test_a_pause_starts_after_the_firings_claimed_before_it_landed(
    schedules: tuple[ScheduleService, MemoryStore], claimed: list[str], start: float
) -> None:
    """Workers claim a firing only while the schedule is as they saw it, so a claim made
    after the pause landed is refused; one made before it ran. The record's start moves
    past it: no firing with a nominal time in the recorded pause ever runs."""
    service, store = schedules
    for tail in claimed:
        store.put(f"{KEYS.firings('s')}{tail}", b"claim")
    paused = service.pause("s", until="10s")
    stored = store.get(KEYS.schedule("s"))
    assert stored is not None and Schedule.from_json(stored.value) == paused
    assert (paused.paused_at, paused.paused_until) == (start, START + 10)
    assert all(not paused_during(paused, float(t.split("@")[0])) for t in claimed)


def test_coverage_classifies_each_firing_and_lists_gaps() -> None:
    schedule = Schedule(
        name="s", tool="t", cron="* * * * *", pauses=[[START + 300, START + 420]], created=0
    )
    times = [START + 60 * i for i in range(10)]
    runs = [
        run(times[0], "succeeded"),
        run(times[1], "failed", error="exited with code 3"),
        run(times[1], "succeeded", attempt=2),  # the retry made it
        run(times[2], "skipped", error="previous run still running (overlap forbidden)"),
        run(times[3], "skipped", error="missed: ran 400s late, beyond the grace window"),
        run(times[4], "lost", error="member a stopped before the run finished"),
        # 5, 6: paused; 7, 8: the outage (no record); 9: succeeded
        run(times[9], "succeeded"),
    ]
    slots = coverage.classify(schedule, times, runs, None)
    assert [(s.outcome, s.reason) for s in slots] == [
        ("succeeded", None),
        ("succeeded", None),
        ("skipped", "overlap"),
        ("missed", "beyond the grace window"),
        ("lost", "member a stopped before the run finished"),
        ("paused", None),
        ("paused", None),
        ("missed", "no member ran it"),
        ("missed", "no member ran it"),
        ("succeeded", None),
    ]
    found = coverage.Coverage(schedule, times[0], times[-1], slots)
    assert [(g.start - START, g.end - START, g.count, g.outcome) for g in found.gaps()] == [
        (120, 120, 1, "skipped"),
        (180, 180, 1, "missed"),
        (240, 240, 1, "lost"),
        (300, 360, 2, "paused"),
        (420, 480, 2, "missed"),
    ]
    assert found.days() == [("2030-03-17", "+")]


def test_coverage_day_strip_marks() -> None:
    slot = coverage.Slot
    assert coverage._day_mark([]) == "."
    assert coverage._day_mark([slot(0, None, "succeeded")]) == "#"
    assert coverage._day_mark([slot(0, None, "succeeded"), slot(1, None, "paused")]) == "p"
    assert coverage._day_mark([slot(0, None, "succeeded"), slot(1, None, "missed")]) == "+"
    assert coverage._day_mark([slot(0, None, "failed")]) == "x"


@pytest.mark.parametrize("text", ["0001-01-01T00:00", "9999-12-31T23:59", "99999999w"])
def test_instants_outside_the_dates_every_function_takes_are_refused(text: str) -> None:
    with pytest.raises(BadInput, match="between 1970 and 9998"):
        timespec.instant(text, "--since", now=START, zone_name="Pacific/Kiritimati", sign=1)


def test_coverage_of_an_everywhere_schedule_is_per_member() -> None:
    schedule = Schedule(name="s", tool="t", cron="* * * * *", mode="everywhere")
    times = [START + 60 * i for i in range(3)]
    runs = [replace(run(t, "succeeded"), id=f"a{t}", member="a") for t in times] + [
        replace(run(times[0], "succeeded"), id="b0", member="b")
    ]
    slots = coverage.classify(schedule, times, runs, ["a", "b"])
    assert [(s.member, s.outcome) for s in slots] == [
        ("a", "succeeded"),
        ("a", "succeeded"),
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("b", "missed"),
        ("b", "missed"),
    ]
    found = coverage.Coverage(schedule, times[0], times[-1], slots)
    assert [(g.member, g.count) for g in found.gaps()] == [("b", 2)]
    assert found.days("a") == [("2030-03-17", "#")] and found.days("b") == [("2030-03-17", "+")]
