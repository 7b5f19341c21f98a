"""`maomao schedule trigger/backfill/pause/show --next`, `schedule list` and `coverage`
in-process, on the memory store and a fake clock: what they print, what they write, and
how they refuse (one line, exit 2, nothing written). What the workers then do with the
requests: tests/unit/test_worker_requests.py and tests/integration/test_schedule_controls.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli_harness import Cli
from fakes.clock import START, FakeClock
from maomao_cli.composition import Services
from maomao_cli.keys import Keys
from maomao_cli.models import Run, RunStatus

PREFIX = "/maomao-cli-test"
KEYS = Keys(PREFIX)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def on(cli: Cli, clock: FakeClock) -> Services:
    return Services(cli.settings, store=cli.store, runner=cli.runner, clock=clock)


def invoke(cli: Cli, clock: FakeClock, *args: str) -> Any:
    result = cli.invoke(*args, services=on(cli, clock))
    assert result.code == 0, (result.out, result.err)
    assert "error" not in result.err, result.err  # notes go to stderr
    return result


def revision(cli: Cli) -> int:
    return cli.store.scan_with_revision("/")[1]


@pytest.fixture
def scheduled(cli: Cli, clock: FakeClock) -> Cli:
    invoke(cli, clock, "register", "probe", "img")
    invoke(cli, clock, "run", "probe", "--cron", "*/10 * * * *", "--tz", "Europe/Zurich")
    return cli


def test_trigger_writes_one_request_for_this_second(scheduled: Cli, clock: FakeClock) -> None:
    result = invoke(scheduled, clock, "schedule", "trigger", "probe", "--force", "--json")
    request = result.json()
    assert (request["trigger"], request["force"], request["attempt"]) == ("manual", True, 1)
    assert request["fire_time"] == "2030-03-17T17:46:40Z"
    assert scheduled.records("requests/") == [f"{PREFIX}/requests/probe/{int(START)}-a1"]
    again = invoke(scheduled, clock, "schedule", "trigger", "probe", "--json").json()
    assert again["attempt"] == 2, "a second trigger in the same second is its own firing"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schedule", "trigger", "nope"], "no schedule named 'nope'"),
        (
            ["schedule", "backfill", "probe", "--from", "1h", "--to", "2040-01-01T00:00"],
            "in the future",
        ),
        (["schedule", "backfill", "probe", "--from", "400d", "--to", "1s"], "too large"),
        (
            ["schedule", "backfill", "probe", "--from", "2h", "--to", "1h", "--max-parallel", "0"],
            "--max-parallel",
        ),
        (["schedule", "pause", "probe", "--until", "2001-01-01T00:00"], "must be in the future"),
        (["schedule", "pause", "probe", "--until", "later"], "invalid --until 'later'"),
        (["schedule", "show", "probe", "--next", "0"], "invalid --next 0"),
        (["run", "probe", "--cron", "* * * * *", "--jitter", "lots"], "invalid --jitter 'lots'"),
        (["coverage", "--since", "whenever"], "invalid --since 'whenever'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    scheduled: Cli, clock: FakeClock, args: list[str], message: str
) -> None:
    before = revision(scheduled)
    result = scheduled.invoke(*args, services=on(scheduled, clock))
    assert result.code == 2, result.out
    assert message in result.err and len(result.err_lines) <= 2, result.err  # message, hint
    assert revision(scheduled) == before


def test_backfill_dry_run_lists_the_plan_and_writes_nothing(
    scheduled: Cli, clock: FakeClock
) -> None:
    before = revision(scheduled)
    result = invoke(
        scheduled,
        clock,
        "schedule",
        "backfill",
        "probe",
        "--from",
        "2030-03-17T17:00",
        "--to",
        "2030-03-17T18:00",
        "--dry-run",
    )
    lines = result.out.splitlines()
    # 17:00 to 18:00 in Europe/Zurich is 16:00 to 17:00 UTC: seven ten-minute firings.
    assert lines[0].startswith("2030-03-17 17:00:00 CET  would run")
    assert len([line for line in lines if "would run" in line]) == 7
    assert "would request 7 of 7 firing(s) of probe" in result.out
    assert revision(scheduled) == before


def test_backfill_missing_only_skips_succeeded_firings(scheduled: Cli, clock: FakeClock) -> None:
    fire = START - 400  # 17:40:00 UTC, a firing of */10
    run = Run(
        id="r1", tool="probe", member="a", status="succeeded", schedule="probe", fire_time=fire
    )
    scheduled.store.put(KEYS.run("r1"), run.to_json())
    result = invoke(
        scheduled,
        clock,
        "schedule",
        "backfill",
        "probe",
        "--from",
        "30m",
        "--to",
        "1s",
        "--missing-only",
        "--json",
    )
    plan = result.json()
    assert [f["skip"] for f in plan["firings"]] == [None, None, "succeeded already"]
    assert plan["requested"] == 2
    assert len(scheduled.records("requests/probe/")) == 2


def test_pause_note_and_end_in_list_and_resume_by_itself(scheduled: Cli, clock: FakeClock) -> None:
    invoke(
        scheduled,
        clock,
        "schedule",
        "pause",
        "probe",
        "--note",
        "laser maintenance",
        "--until",
        "1h",
    )
    table = invoke(scheduled, clock, "schedule", "list").out
    assert "yes until 2030-03-17 19:46:40 CET (laser maintenance)" in table
    [listed] = invoke(scheduled, clock, "schedule", "list", "--json").json()
    assert listed["paused"] is True
    assert (listed["pause_note"], listed["paused_until"]) == (
        "laser maintenance",
        "2030-03-17T18:46:40Z",
    )
    assert listed["paused_by"].count("@") == 1 and listed["paused_at"] == "2030-03-17T17:46:40Z"
    assert listed["next_fire"] == "2030-03-17T18:50:00Z", "the first firing after the end"
    clock.advance(3601)
    [after] = invoke(scheduled, clock, "schedule", "list", "--json").json()
    assert after["paused"] is False, "over at its end, with no one resuming it"


def test_show_next_marks_dst_and_jitter(cli: Cli, clock: FakeClock) -> None:
    invoke(cli, clock, "register", "probe", "img")
    invoke(
        cli,
        clock,
        "run",
        "probe",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Zurich",
        "--jitter",
        "10s",
    )
    # START is 2030-03-17; Europe/Zurich springs forward on 2030-03-31.
    shown = invoke(cli, clock, "schedule", "show", "probe", "--next", "20", "--json").json()
    marks = {n["wall"][:10]: n["mark"] for n in shown["next"]}
    assert marks["2030-03-31"] == "moved" and marks["2030-03-30"] is None
    assert shown["jitter"] == 10.0
    table = invoke(cli, clock, "schedule", "show", "probe", "--next", "20").out
    assert "2030-03-31 03:30:00 CEST" in table and "moved" in table


def test_list_and_show_report_counters(scheduled: Cli, clock: FakeClock) -> None:
    planted: list[tuple[RunStatus, str]] = [
        ("failed", "exited with code 1"),
        ("skipped", "previous run still running (overlap forbidden)"),
    ]
    for n, (status, error) in enumerate(planted):
        run = Run(
            id=f"r{n}",
            tool="probe",
            member="a",
            status=status,
            schedule="probe",
            fire_time=START - 400 - 600 * n,
            error=error,
        )
        scheduled.store.put(KEYS.run(run.id), run.to_json())
    schedule_key = KEYS.schedule("probe")
    record = json.loads(scheduled.store.get(schedule_key).value)  # type: ignore[union-attr]
    record["created"] = START - 3600
    scheduled.store.put(schedule_key, json.dumps(record).encode())
    [listed] = invoke(scheduled, clock, "schedule", "list", "--json").json()
    day = listed["counters"]["24h"]
    assert (day["failed"], day["skipped"], day["missed"]) == (1, {"overlap": 1}, 4)
    shown = invoke(scheduled, clock, "schedule", "show", "probe").out
    assert "24h: missed 4, failed 1, skipped overlap 1" in shown


def test_coverage_strip_fits_80_columns(cli: Cli, clock: FakeClock) -> None:
    invoke(cli, clock, "register", "probe", "img")
    invoke(cli, clock, "run", "probe", "--hourly")
    schedule_key = KEYS.schedule("probe")
    record = json.loads(cli.store.get(schedule_key).value)  # type: ignore[union-attr]
    record["created"] = START - 90 * 86400
    cli.store.put(schedule_key, json.dumps(record).encode())
    out = invoke(cli, clock, "coverage", "--since", "90d").out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "x" * 56 in out, "ninety days of misses, a day a mark"
    # Older than [worker] runs_max_age (30 days): the records may have been pruned.
    assert "gap 2029-12-17 18:00 .. 2030-02-15 17:00 (1440) unknown: run records pruned" in out
    assert "gap 2030-02-15 18:00 .. 2030-03-17 17:00 (720) missed: no member ran it" in out
