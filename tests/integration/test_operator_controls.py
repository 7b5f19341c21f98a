"""The operator controls on a real etcd, with two or three `maomao worker` processes and
a private dockerd: `schedule trigger` (one run, overlap respected, --force overrides),
`schedule backfill` (20 past firings over three workers, each nominal time once;
--missing-only after deleting 5 records: 5 runs; --dry-run writes no key), pause --until
(nothing during, nothing caught up, resumes by itself) and jitter (each member's offset
stable across firings, different between members, never past the next firing)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_worker import runs_of, start_worker, stop, wait_for_members

from conftest import DUMMY_IMAGE, Env
from figures import figure
from maomao_cli import config, jitter
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Schedule
from maomao_cli.services.coverage import SETTLE
from maomao_cli.services.records import load_all
from maomao_cli.store.etcd import EtcdStore
from observe import stored

pytestmark = [pytest.mark.etcd, pytest.mark.docker, pytest.mark.slow]

NEVER = "0 0 1 1 *"


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    stop(started)  # also when the test failed


def launch(env: Env, names: list[str], started: list[subprocess.Popen[str]]) -> None:
    started += [start_worker(env, name) for name in names]
    wait_for_members(env, set(names), started)


def ok(env: Env, *args: str) -> Any:
    result = env.run(*args)
    assert result.code == 0, (result.out, result.err)
    return json.loads(result.out) if "--json" in args else result.out


def until(check: Callable[[], bool], what: str, limit: float = 90) -> None:
    """Poll (the test's timeout bounds it too) until `check` holds."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.3)


def polled(env: Env, name: str) -> list[dict[str, Any]]:
    """The schedule's runs as stored (a cheap read for polling; times are epoch seconds)."""
    return [r for r in stored(env, "runs") if r.get("schedule") == name]


def schedule_runs(env: Env, name: str) -> list[dict[str, Any]]:
    return [r for r in runs_of(env) if r["schedule"] == name]


@pytest.mark.timeout(150)
def test_trigger_runs_once_respects_overlap_and_force_overrides(
    docker_env: Env, workers: list[subprocess.Popen[str]]
) -> None:
    ok(docker_env, "register", "slow", DUMMY_IMAGE, "--network", "none", "--env", "SLEEP=20")
    ok(docker_env, "run", "slow", "--cron", NEVER, "--name", "manual")
    launch(docker_env, ["w1", "w2"], workers)
    ok(docker_env, "schedule", "trigger", "manual")
    until(lambda: any(r["status"] == "running" for r in polled(docker_env, "manual")), "a run")
    time.sleep(1.1)  # the next trigger is a firing of its own second
    ok(docker_env, "schedule", "trigger", "manual")  # the first still runs: skipped
    until(
        lambda: any(r["status"] == "skipped" for r in polled(docker_env, "manual")),
        "an overlap skip",
    )
    # Of its own second too: the skip is recorded with its claim, within the same second
    # (a trigger in the same second is that second's next attempt).
    time.sleep(1.1)
    ok(docker_env, "schedule", "trigger", "manual", "--force")
    until(
        lambda: sum(r["status"] == "succeeded" for r in polled(docker_env, "manual")) == 2,
        "two runs",
    )
    runs = schedule_runs(docker_env, "manual")
    figure(f"\ntrigger: {Counter((r['status'], r['trigger']) for r in runs)}")
    assert Counter(r["status"] for r in runs) == {"succeeded": 2, "skipped": 1}
    assert {r["trigger"] for r in runs} == {"manual"}
    assert len({r["fire_time"] for r in runs}) == 3, "each trigger is its own nominal time"
    [skipped] = [r for r in runs if r["status"] == "skipped"]
    assert "overlap" in skipped["error"]
    forced, first = sorted(
        (r for r in runs if r["status"] == "succeeded"), key=lambda r: -r["fire_time"]
    )
    assert forced["started"] < first["finished"], "--force ran beside the first run"


@pytest.mark.timeout(240)
def test_backfill_twenty_firings_over_three_workers_each_once(
    docker_env: Env, workers: list[subprocess.Popen[str]]
) -> None:
    ok(docker_env, "register", "fill", DUMMY_IMAGE, "--network", "none")
    ok(docker_env, "run", "fill", "--cron", "* * * * *", "--name", "fill")
    launch(docker_env, ["b1", "b2", "b3"], workers)
    # Twenty whole minutes, the newest one at least a minute ago.
    newest = (int(time.time()) // 60 - 1) * 60
    first, last = (iso_utc(t) for t in (newest - 19 * 60, newest))
    planned = ok(
        docker_env, "schedule", "backfill", "fill", "--from", first, "--to", last,
        "--max-parallel", "3", "--json",
    )  # fmt: skip
    nominal = {f["fire_time"] for f in planned["firings"]}
    assert (planned["requested"], len(nominal)) == (20, 20)

    def backfilled() -> list[dict[str, Any]]:
        return [r for r in schedule_runs(docker_env, "fill") if r["trigger"] == "backfill"]

    until(
        lambda: (
            sum(
                r["status"] == "succeeded" and r["trigger"] == "backfill"
                for r in polled(docker_env, "fill")
            )
            >= 20
        ),
        "20 runs",
        150,
    )
    runs = backfilled()
    ran = Counter(r["fire_time"] for r in runs)
    figure(
        f"\nbackfill: {len(runs)} runs of {len(ran)} nominal times on "
        f"{dict(Counter(r['member'] for r in runs))}"
    )
    assert len(runs) == 20 and set(ran.values()) == {1}
    assert {r["status"] for r in runs} == {"succeeded"}
    regular = [r for r in schedule_runs(docker_env, "fill") if r["trigger"] != "backfill"]
    assert not {r["fire_time"] for r in regular} & set(ran), "never also run by the schedule"

    # --missing-only after deleting the records of 5: 5 runs, as attempt 2 of each.
    settings = config.load(env=docker_env.vars)
    keys = Keys(settings.etcd.prefix)
    store = EtcdStore(settings.etcd)
    try:
        gone = sorted(runs, key=lambda r: r["fire_time"])[5:10]
        for r in gone:
            assert store.delete(keys.run(r["id"]))
        again = ok(
            docker_env, "schedule", "backfill", "fill", "--from", first, "--to", last,
            "--missing-only", "--max-parallel", "3", "--json",
        )  # fmt: skip
        assert again["requested"] == 5
        until(lambda: len(backfilled()) >= 20, "5 more runs", 90)
        second = [r for r in backfilled() if r["attempt"] == 2]
        assert sorted(r["fire_time"] for r in second) == sorted(r["fire_time"] for r in gone)
        figure(f"\nbackfill --missing-only after deleting 5 records: {len(second)} runs")

        # --dry-run writes nothing: etcd's revision is the same before and after (the
        # workers are stopped first: their heartbeats write too).
        codes, _ = stop(workers)
        assert codes == [0, 0, 0]
        before = store.scan_with_revision(keys.schedules())[1]
        dry = ok(
            docker_env, "schedule", "backfill", "fill", "--from", first, "--to", last,
            "--missing-only", "--dry-run",
        )  # fmt: skip
        after = store.scan_with_revision(keys.schedules())[1]
        figure(f"\nbackfill --dry-run: revision {before} before, {after} after")
        assert before == after
        assert "would request 0 of 20" in dry
    finally:
        store.close()


@pytest.mark.timeout(150)
def test_pause_until_ten_seconds_nothing_runs_nothing_caught_up_resumes(
    docker_env: Env, workers: list[subprocess.Popen[str]]
) -> None:
    ok(docker_env, "register", "tick", DUMMY_IMAGE, "--network", "none")
    ok(docker_env, "run", "tick", "--cron", "*/2 * * * * *", "--name", "tick", "--allow-overlap")
    launch(docker_env, ["p1", "p2"], workers)
    until(lambda: len(polled(docker_env, "tick")) >= 2, "firings before the pause")
    ok(docker_env, "schedule", "pause", "tick", "--until", "10s", "--note", "maintenance")
    [listed] = ok(docker_env, "schedule", "list", "--json")
    assert (listed["paused"], listed["pause_note"]) == (True, "maintenance")
    start, end = paused_interval(docker_env, "tick")  # to the microsecond, from etcd
    assert epoch_of(listed["paused_until"]) == int(end)
    # 10 s, less a firing claimed just before the pause landed (its start moves past it).
    assert 8 < end - start <= 10 + 1e-6
    # Resumed, and late enough that coverage judges every firing of the pause (SETTLE).
    until(
        lambda: any((r["fire_time"] or 0) >= end + SETTLE for r in polled(docker_env, "tick")),
        "resumed",
    )
    [after] = ok(docker_env, "schedule", "list", "--json")
    assert after["paused"] is False, "resumed at its end, by itself"
    codes, _ = stop(workers)
    assert codes == [0, 0]
    runs = schedule_runs(docker_env, "tick")
    during = [r for r in runs if start < r["fire_time"] < end]
    resumed = sorted(r["fire_time"] for r in runs if r["fire_time"] >= end)
    figure(
        f"\npause --until 10s: {len(runs)} runs, {len(during)} with a nominal time in the pause, "
        f"first after it {resumed[0] - end:.0f}s past the end"
    )
    assert during == [], "nothing run during the pause, nothing caught up after it"
    assert resumed and resumed[0] - end <= 2, "the first firing after the end ran"
    covered = ok(docker_env, "coverage", "--since", "2m", "--json")
    [report] = [c for c in covered if c["schedule"] == "tick"]
    paused = [epoch_of(f["fire_time"]) for f in report["firings"] if f["outcome"] == "paused"]
    in_pause = [t for t in range(int(start), int(end) + 1) if t % 2 == 0 and start <= t < end]
    assert paused == in_pause, "coverage lists each firing of the pause as paused"
    assert {f["reason"] for f in report["firings"] if f["outcome"] == "paused"} == {"maintenance"}


def paused_interval(env: Env, name: str) -> tuple[float, float]:
    settings = config.load(env=env.vars)
    store = EtcdStore(settings.etcd)
    try:
        [schedule] = [
            s
            for s in load_all(store, Keys(settings.etcd.prefix).schedules(), Schedule)
            if s.name == name
        ]
    finally:
        store.close()
    assert schedule.paused_at is not None and schedule.paused_until is not None
    return schedule.paused_at, schedule.paused_until


def iso_utc(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def epoch_of(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(150)
def test_jitter_offsets_are_stable_per_member_and_differ_between_members(
    docker_env: Env, workers: list[subprocess.Popen[str]]
) -> None:
    ok(docker_env, "register", "spread", DUMMY_IMAGE, "--network", "none")
    ok(
        docker_env, "run", "spread", "--cron", "*/12 * * * * *", "--name", "spread",
        "--everywhere", "--jitter", "10s", "--allow-overlap",
    )  # fmt: skip
    names = ["lab-a", "lab-b", "lab-c"]
    schedule = Schedule(
        name="spread", tool="spread", cron="*/12 * * * * *", mode="everywhere", jitter=10
    )
    expected = {n: jitter.offset(schedule, n, 0, 12) for n in names}
    assert min(abs(a - b) for a in expected.values() for b in expected.values() if a != b) > 3
    launch(docker_env, names, workers)
    shown = ok(docker_env, "schedule", "show", "spread", "--next", "3", "--json")
    assert shown["next"][0]["jitter"] == expected

    settings = config.load(env=docker_env.vars)
    store = EtcdStore(settings.etcd)

    def per_member() -> dict[str, list[float]]:
        """Start minus nominal time of each run, to the microsecond (from the records)."""
        found: dict[str, list[float]] = {}
        for run in load_all(store, Keys(settings.etcd.prefix).runs(), Run):
            # Regular firings only: a catch-up of the firing missed before the workers
            # started runs at once.
            regular = run.schedule == "spread" and run.trigger == "schedule"
            if regular and run.started and run.fire_time is not None:
                assert run.fire_time % 12 == 0, "the record carries the nominal time"
                found.setdefault(run.member, []).append(run.started - run.fire_time)
        return found

    until(
        lambda: all(len(v) >= 3 for v in per_member().values()) and len(per_member()) == 3,
        "3 firings each",
        110,
    )
    offsets = per_member()
    figure(
        "\njitter 10s, everywhere: "
        + ", ".join(
            f"{m} expected {expected[m]:.3f}s measured {sorted(round(o, 2) for o in v)}"
            for m, v in sorted(offsets.items())
        )
    )
    for member, measured in offsets.items():
        assert all(0 <= o - expected[member] < 1.5 for o in measured), (member, measured)
        assert max(measured) - min(measured) < 1.5, "stable across firings"
        assert max(measured) < 12, "never past the next firing"
    store.close()
