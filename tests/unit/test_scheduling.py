"""Next-fire times, DST, catch-up and retry decisions: tables on a fake clock."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from maomao_cli.errors import BadInput
from maomao_cli.scheduling import CronClock, catch_up_time, resolve_cron, retry_delay, validate_cron


def at(zone: str, *parts: int) -> float:
    year, month, day, hour, minute, second = (*parts, 0, 0, 0)[:6]
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone)).timestamp()


def local(zone: str, epoch: float) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S%z")


@pytest.mark.parametrize(
    ("cron", "zone", "start", "expected"),
    [
        (
            "0 0 * * *",
            "UTC",
            (2026, 1, 1, 12),
            ["2026-01-02 00:00:00+0000", "2026-01-03 00:00:00+0000"],
        ),
        (
            "0 6 * * 1",
            "UTC",
            (2026, 11, 28),
            ["2026-11-30 06:00:00+0000", "2026-12-07 06:00:00+0000"],
        ),
        (
            "*/20 * * * * *",
            "UTC",
            (2026, 1, 1, 0, 0, 5),
            ["2026-01-01 00:00:20+0000", "2026-01-01 00:00:40+0000"],
        ),
        (
            "0 9 * * *",
            "America/New_York",
            (2026, 6, 1),
            ["2026-06-01 09:00:00-0400", "2026-06-02 09:00:00-0400"],
        ),
        # Europe/Zurich springs forward on 2026-03-29 at 02:00 -> 03:00: 02:30 does not exist
        (
            "30 2 * * *",
            "Europe/Zurich",
            (2026, 3, 28, 12),
            ["2026-03-29 03:30:00+0200", "2026-03-30 02:30:00+0200"],
        ),
        # and falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice, fires once
        (
            "30 2 * * *",
            "Europe/Zurich",
            (2026, 10, 24, 12),
            ["2026-10-25 02:30:00+0200", "2026-10-26 02:30:00+0100"],
        ),
        # New York: 2026-03-08 02:00 -> 03:00 and 2026-11-01 02:00 -> 01:00
        (
            "30 2 * * *",
            "America/New_York",
            (2026, 3, 7, 12),
            ["2026-03-08 03:30:00-0400", "2026-03-09 02:30:00-0400"],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            (2026, 10, 31, 12),
            ["2026-11-01 01:30:00-0400", "2026-11-02 01:30:00-0500"],
        ),
    ],
)
def test_next_fire_times(cron: str, zone: str, start: tuple[int, ...], expected: list[str]) -> None:
    clock = CronClock(cron, zone)
    got = [local(zone, t) for t in clock.upcoming(at(zone, *start), len(expected))]
    assert got == expected


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        ("Europe/Zurich", (2026, 3, 28, 22), (2026, 3, 29, 6)),
        ("Europe/Zurich", (2026, 10, 24, 22), (2026, 10, 25, 6)),
        ("America/New_York", (2026, 3, 7, 22), (2026, 3, 8, 6)),
        ("America/New_York", (2026, 10, 31, 22), (2026, 11, 1, 6)),
    ],
)
def test_dst_days_neither_skip_nor_double_wall_times(
    zone: str, start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    clock = CronClock("*/15 * * * *", zone)
    first, last = at(zone, *start), at(zone, *end)
    fires = []
    t = first
    while True:
        t = clock.next_after(t)
        if t > last:
            break
        fires.append(t)
    assert fires == sorted(set(fires)), "an instant fired twice"
    walls = [local(zone, f)[:16] for f in fires]
    assert len(walls) == len({w[11:16] + w[:10] for w in walls}), "a wall time fired twice"
    gaps = [b - a for a, b in itertools.pairwise(fires)]
    # At most one 15-minute step may stretch, across the one repeated hour.
    assert all(g == 900 for g in gaps if g != 4500) and gaps.count(4500) <= 1


@pytest.mark.parametrize(
    ("now_offset", "grace", "expected_offset"),
    [
        (30, 300, 0),  # missed 30 s ago, inside the window: catch up on that firing
        (299, 300, 0),
        (301, 300, None),  # outside the window: nothing to run
        (0, 300, 0),  # exactly at a fire time
    ],
)
def test_catch_up_time(now_offset: float, grace: float, expected_offset: float | None) -> None:
    clock = CronClock("0 * * * *", "UTC")
    base = at("UTC", 2026, 1, 1, 10)
    got = catch_up_time(clock, base + now_offset, grace)
    assert got == (None if expected_offset is None else base + expected_offset)


def test_catch_up_coalesces_many_missed_firings_into_the_newest() -> None:
    clock = CronClock("* * * * * *", "UTC")  # every second
    now = at("UTC", 2026, 1, 1, 10) + 0.5
    assert catch_up_time(clock, now, 60) == at("UTC", 2026, 1, 1, 10)


@pytest.mark.parametrize(
    ("attempt", "retries", "expected"),
    [(1, 2, 5.0), (2, 2, 10.0), (3, 2, None), (1, 0, None), (5, 10, 80.0), (8, 10, 300.0)],
)
def test_retry_delay(attempt: int, retries: int, expected: float | None) -> None:
    assert retry_delay(attempt, retries, 5.0, 300.0) == expected


@pytest.mark.parametrize(
    "bad",
    ["", "* * * *", "61 * * * *", "* * * * * * *", "a b c d e", "*/0 * * * *", "0 0 31 2 * extra"],
)
def test_bad_cron_is_refused(bad: str) -> None:
    with pytest.raises(BadInput, match="cron"):
        validate_cron(bad)


@pytest.mark.parametrize("bad_zone", ["Mars/Olympus", "../etc/passwd", "", "/etc/localtime"])
def test_bad_zone_is_refused(bad_zone: str) -> None:
    with pytest.raises(BadInput, match="time zone"):
        CronClock("0 0 * * *", bad_zone)


def test_resolve_cron_shorthands() -> None:
    assert resolve_cron(cron=None, daily=True) == "0 0 * * *"
    assert resolve_cron(cron=None, weekly=True) == "0 0 * * 0"
    assert resolve_cron(cron=None, hourly=True) == "0 * * * *"
    assert resolve_cron(cron="*/5  * * * *") == "*/5 * * * *"
    with pytest.raises(BadInput):
        resolve_cron(cron="0 0 * * *", daily=True)
    with pytest.raises(BadInput):
        resolve_cron(cron=None)


def test_next_after_answers_alike_when_asked_again_or_in_any_order() -> None:
    """next_after keeps its last answer (asked twice per firing by the worker): asking
    again, or for another instant in between, gives what a fresh clock gives."""
    from maomao_cli.scheduling import CronClock

    kept = CronClock("30 2 * * *", "Europe/Zurich")  # 02:30 is skipped on 2026-03-29
    afters = [1774650000.0, 1774650000.0, 1774740000.0, 1774650000.0, 1792800000.0]
    for after in afters:
        assert kept.next_after(after) == CronClock("30 2 * * *", "Europe/Zurich").next_after(after)
