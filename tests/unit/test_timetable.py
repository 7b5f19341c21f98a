"""The timetable: which firing is due when, driven by the time it is given (tables)."""

from __future__ import annotations

import pytest

from maomao_cli.models import Schedule
from maomao_cli.services.worker.timetable import LONGEST_WAIT, Due, Timetable

T0 = 1_900_000_000.0  # 2030-03-17T17:46:40Z


def schedule(name: str = "s", **fields: object) -> Schedule:
    fields.setdefault("cron", "* * * * * *")
    fields.setdefault("created", T0 - 3600)
    return Schedule(name=name, tool="t", **fields)  # type: ignore[arg-type]


def firings(dues: list[Due]) -> list[tuple[str, float, str, int]]:
    return [(d.schedule, d.fire_time - T0, d.trigger, d.attempt) for d in dues]


def tracking(*schedules: Schedule, now: float = T0, grace: float | None = None) -> Timetable:
    table = Timetable()
    for s in schedules:
        assert table.track(s, now, catch_up_grace=grace)
    return table


@pytest.mark.parametrize(
    ("cron", "now", "due_at", "expected"),
    [
        # Every second: the next whole second after `now`, never `now` itself.
        ("* * * * * *", T0, T0 + 1, [("s", 1.0, "schedule", 1)]),
        ("* * * * * *", T0 + 0.5, T0 + 1, [("s", 1.0, "schedule", 1)]),
        ("* * * * * *", T0, T0 + 0.999, []),
        # Every 20 seconds (T0 is at :40): the next is at :00.
        ("*/20 * * * * *", T0, T0 + 20, [("s", 20.0, "schedule", 1)]),
        ("*/20 * * * * *", T0, T0 + 19, []),
        # Daily at midnight UTC: 6 h 13 min 20 s after T0.
        ("0 0 * * *", T0, T0 + 22400, [("s", 22400.0, "schedule", 1)]),
    ],
)
def test_the_next_firing_is_due_at_its_time(
    cron: str, now: float, due_at: float, expected: list[tuple[str, float, str, int]]
) -> None:
    table = tracking(schedule(cron=cron), now=now)
    assert firings(table.pop_due(due_at)) == expected


@pytest.mark.parametrize(
    ("cron", "grace", "created", "expected"),
    [
        # The newest missed firing, within the grace window: caught up, due now.
        ("39 * * * * *", 5.0, T0 - 3600, [("s", -1.0, "catch-up", 1)]),
        ("39 * * * * *", 1.0, T0 - 3600, [("s", -1.0, "catch-up", 1)]),
        # Older than the grace window: not run.
        ("30 * * * * *", 5.0, T0 - 3600, []),
        # From before the schedule existed: never missed.
        ("39 * * * * *", 5.0, T0 - 0.5, []),
        # A firing exactly now is the regular one, not a catch-up.
        ("40 * * * * *", 5.0, T0 - 3600, []),
        # No grace window given (not the first connect): nothing is caught up.
        ("39 * * * * *", None, T0 - 3600, []),
    ],
)
def test_catch_up_on_start(
    cron: str, grace: float | None, created: float, expected: list[tuple[str, float, str, int]]
) -> None:
    table = tracking(schedule(cron=cron, created=created), grace=grace)
    assert firings(table.pop_due(T0)) == expected


@pytest.mark.parametrize(
    ("heads", "now", "expected"),
    [
        ([], T0, LONGEST_WAIT),
        ([T0 + 0.25], T0, 0.25),
        ([T0 + 5], T0, LONGEST_WAIT),
        ([T0 - 2], T0, 0.0),
        ([T0 + 0.75, T0 + 0.5], T0, 0.5),
    ],
)
def test_wait_time(heads: list[float], now: float, expected: float) -> None:
    table = tracking(schedule(cron="0 0 1 1 *"))
    table.pop_due(T0 + 10 * 365 * 86400)  # empties the heap
    for at in heads:
        assert table.queue_retry("s", T0, 2, at)
    assert table.wait_time(now) == pytest.approx(expected)


def test_pop_due_takes_everything_due_earliest_first_and_nothing_later() -> None:
    table = tracking(schedule("a"), schedule("b", cron="*/2 * * * * *"))
    assert table.queue_retry("a", T0 - 7, 2, T0 + 1.5)
    assert firings(table.pop_due(T0 + 1)) == [("a", 1.0, "schedule", 1)]
    assert firings(table.pop_due(T0 + 2)) == [
        ("a", -7.0, "retry", 2),
        ("b", 2.0, "schedule", 1),
    ]
    assert table.pop_due(T0 + 100) == [], "only what was queued: next_regular queues more"


def test_next_regular_queues_the_firing_after_the_given_one() -> None:
    table = tracking(schedule(cron="*/10 * * * * *"))  # T0 is at :40
    [due] = table.pop_due(T0 + 30)
    assert due.fire_time == T0 + 10
    table.next_regular(due)
    assert firings(table.pop_due(T0 + 100)) == [("s", 20.0, "schedule", 1)]


def test_a_changed_schedule_drops_the_entries_of_its_old_version() -> None:
    table = tracking(schedule(cron="* * * * * *"))
    changed = schedule(cron="*/5 * * * * *")
    assert not table.follows(changed)
    assert table.track(changed, T0 + 0.5, catch_up_grace=None)
    assert table.follows(changed)
    assert firings(table.pop_due(T0 + 30)) == [("s", 5.0, "schedule", 1)]


def test_entries_of_an_untracked_schedule_are_dropped() -> None:
    table = tracking(schedule("a"), schedule("b"))
    assert table.untrack("a") and not table.untrack("a")
    assert [d.schedule for d in table.pop_due(T0 + 1)] == ["b"]
    assert table.schedule("a") is None and len(table) == 1


def test_keep_only_forgets_the_others() -> None:
    table = tracking(schedule("a"), schedule("b"), schedule("c"))
    table.keep_only({"b"})
    assert len(table) == 1 and table.schedule("b") is not None
    assert [d.schedule for d in table.pop_due(T0 + 1)] == ["b"]


def test_a_retry_of_an_unknown_schedule_is_refused() -> None:
    assert not Timetable().queue_retry("gone", T0, 2, T0)


def test_an_entry_put_back_is_due_again_as_it_was() -> None:
    table = tracking(schedule())
    [due] = table.pop_due(T0 + 1)
    table.put_back(due)
    [again] = table.pop_due(T0 + 1)
    assert again == due and again.nonce == due.nonce, "the same claim value when retried"


@pytest.mark.parametrize(
    ("cron", "timezone"), [("every day", "UTC"), ("* * * * *", "Mars/Olympus_Mons")]
)
def test_an_invalid_schedule_is_not_followed(cron: str, timezone: str) -> None:
    table = tracking(schedule("good"))
    assert not table.track(schedule("bad", cron=cron, timezone=timezone), T0, catch_up_grace=None)
    assert table.schedule("bad") is None and len(table) == 1


def test_an_invalid_change_stops_following_the_old_version() -> None:
    table = tracking(schedule())
    assert not table.track(schedule(cron="nonsense"), T0, catch_up_grace=None)
    assert table.pop_due(T0 + 10) == []


def requested(name: str, fire_time: float, trigger: str = "backfill") -> Due:
    due = Due(T0, 0, name, fire_time, 0, trigger=trigger)
    due.request = f"req/{name}/{fire_time}"
    return due


def test_requested_firings_are_never_coalesced_and_queue_no_regular_firing() -> None:
    # A backfill of three past nominal times stays three entries after an outage, while
    # the schedule's own missed firings merge into one catch-up.
    table = tracking(schedule())
    for offset in (-30.0, -20.0, -10.0):
        assert table.push_requested(requested("s", T0 + offset))
    made = table.coalesce_missed(T0 + 5)
    assert firings(made) == [("s", 5.0, "catch-up", 1)]
    assert made[0].coalesced == 5  # T0+1 .. T0+5
    dues = table.pop_due(T0 + 5)
    assert sorted(firings(dues)) == [
        ("s", -30.0, "backfill", 1),
        ("s", -20.0, "backfill", 1),
        ("s", -10.0, "backfill", 1),
        ("s", 5.0, "catch-up", 1),
    ]
    # Only the catch-up queues the schedule's next firing; each request has none to queue.
    for due in dues:
        table.next_regular(due)
    assert firings(table.pop_due(T0 + 6)) == [("s", 6.0, "schedule", 1)]


def test_a_requested_firing_outlives_a_change_of_its_schedule_through_coalescing() -> None:
    table = tracking(schedule())
    table.push_requested(requested("s", T0 - 10, trigger="manual"))
    assert table.track(schedule(retries=2), T0, catch_up_grace=None)  # a new generation
    table.coalesce_missed(T0 + 0.5)
    assert firings(table.pop_due(T0 + 0.5)) == [("s", -10.0, "manual", 1)]


def croniter_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every croniter the schedules' clocks make from now on, by expression."""
    from maomao_cli import scheduling

    made: list[str] = []
    real = scheduling._croniter()

    def counting(expr: str, *args: object, **kwargs: object) -> object:
        made.append(expr)
        return real(expr, *args, **kwargs)

    monkeypatch.setattr(scheduling, "_croniter", lambda: counting)
    return made


@pytest.mark.parametrize(
    ("crons", "until", "limit", "worked_out"),
    [
        # Due within LOOK_AHEAD (2 s) of now: worked out, up to the limit.
        (["* * * * * *", "* * * * * *"], T0, 16, 2),
        (["* * * * * *", "* * * * * *", "* * * * * *"], T0, 2, 2),
        # A minutely schedule's next firing is beyond the horizon: left for later.
        (["0 * * * * *"], T0, 16, 0),
        (["0 * * * * *"], T0 + 20, 16, 1),
    ],
)
def test_look_ahead_works_out_successors_of_firings_due_soon(
    crons: list[str], until: float, limit: int, worked_out: int
) -> None:
    table = tracking(*(schedule(f"s{i}", cron=cron) for i, cron in enumerate(crons)))
    assert table.look_ahead(until, limit) == worked_out


def test_a_firing_looked_ahead_comes_due_without_croniter(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker does when a burst comes due (queue each successor, the claim's
    life) is answered from the look-ahead: no croniter between due and claim."""
    table = tracking(*(schedule(f"s{i}") for i in range(5)))
    assert table.look_ahead(T0, 16) == 5
    made = croniter_calls(monkeypatch)
    dues = table.pop_due(T0 + 1)
    for due in dues:
        table.next_regular(due)
        cron = table.cron_of(table.schedule(due.schedule))  # type: ignore[arg-type]
        assert cron is not None and cron.next_after(due.fire_time) == T0 + 2
    assert len(dues) == 5 and made == []
    # The successors queued are not looked ahead yet: the next pop would compute them.
    assert table.look_ahead(T0 + 1, 16) == 5


def test_look_ahead_skips_entries_of_a_changed_or_dropped_schedule() -> None:
    table = tracking(schedule("kept"), schedule("changed"), schedule("dropped"))
    table.track(schedule("changed", cron="*/2 * * * * *"), T0, catch_up_grace=None)
    table.untrack("dropped")
    # kept's entry, and the changed schedule's new one; its old entry and dropped's are not.
    assert table.look_ahead(T0, 16) == 2
    assert table.look_ahead(T0, 16) == 0


def test_firings_left_to_look_ahead_stay_bounded_when_the_loop_never_waits() -> None:
    table = tracking(*(schedule(f"s{i}") for i in range(3)))
    for second in range(1, 50):  # every firing popped and followed, no look-ahead
        for due in table.pop_due(T0 + second):
            table.next_regular(due)
    assert table.look_ahead(T0 + 49, 1000) <= 2 * 3 + 1
