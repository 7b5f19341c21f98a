"""Workers end to end on a real etcd and a private dockerd: firings run exactly once across
three members, a killed member's runs are recovered, missed firings coalesce into one
catch-up, spikes reach `spikes --follow`, and `worker --check` tells alive from gone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, Env
from faults.checks import coalesced
from figures import figure
from observe import member_names, stored

pytestmark = [pytest.mark.etcd, pytest.mark.docker]

SCHEDULE = "every-second"
# The exactly-once window; MAOMAO_TEST_WINDOW=60 gives the full minute.
WINDOW = float(os.environ.get("MAOMAO_TEST_WINDOW", "20"))


def as_member(env: Env, member: str) -> Env:
    return Env({**env.vars, "MAOMAO_MEMBER": member}, env.home)


def start_worker(env: Env, member: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "maomao_cli", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env.vars, "MAOMAO_MEMBER": member},
    )


def wait_for_process(env: Env, name: str, worker: subprocess.Popen[str]) -> None:
    """Until member `name` is this process (not the entry of one killed before it)."""
    while not any(
        m.get("name") == name and m.get("pid") == worker.pid for m in stored(env, "members")
    ):
        assert worker.poll() is None, worker.communicate()[0]
        time.sleep(0.2)


def wait_for_members(env: Env, names: set[str], workers: list[subprocess.Popen[str]]) -> set[str]:
    """Until every named member is listed; the test's timeout bounds the wait."""
    while True:
        found = member_names(env)
        if names <= found:
            return found
        for worker in workers:
            assert worker.poll() is None, worker.communicate()[0]
        time.sleep(0.2)


def stop(workers: list[subprocess.Popen[str]]) -> tuple[list[int], list[str]]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    return [worker.returncode for worker in workers], outputs


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def runs_of(env: Env, *args: str) -> list[dict[str, Any]]:
    result = env.run("runs", "--json", "--limit", "1000", *args)
    assert result.code == 0, result.err
    records: list[dict[str, Any]] = json.loads(result.out)
    for record in records:
        if record["fire_time"] is not None:
            record["fire_time"] = epoch(record["fire_time"])
    return records


def register_and_schedule(env: Env, tool: str, *extra: str) -> None:
    registered = env.run("register", tool, DUMMY_IMAGE, "--network", "none", *extra)
    assert registered.code == 0, registered.err
    scheduled = env.run("run", tool, "--cron", "* * * * * *", "--name", SCHEDULE)
    assert scheduled.code == 0, scheduled.err


def firing_report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per fire time: succeeded how often, explained by a reasoned non-success, or missing."""
    ran = Counter(r["fire_time"] for r in runs if r["status"] == "succeeded")
    fire_times = sorted({r["fire_time"] for r in runs})
    first, last = fire_times[0], fire_times[-1]
    explained = {r["fire_time"] for r in runs if r["status"] != "succeeded" and r["error"]}
    # Firings a worker could not claim (cut off from etcd): in a catch-up's stretch.
    explained |= {float(second) for second in coalesced(runs, SCHEDULE)}
    every_second = [first + i for i in range(int(last - first) + 1)]
    return {
        "firings": len(every_second),
        "succeeded": len(ran),
        "duplicates": sorted(f for f, n in ran.items() if n > 1),
        "missing": [f for f in every_second if f not in ran and f not in explained],
        "unexplained_failures": [
            r
            for r in runs
            if r["status"] not in ("succeeded", "skipped", "lost")
            or (r["status"] != "succeeded" and not r["error"])
        ],
        "others": Counter(
            (r["status"], r["attempt"], (r["error"] or "")[:40])
            for r in runs
            if r["status"] != "succeeded"
        ),
    }


def summary(label: str, report: dict[str, Any]) -> None:
    figure(
        f"\n{label}: firings {report['firings']}, succeeded {report['succeeded']}, "
        f"duplicates {len(report['duplicates'])}, misses {len(report['missing'])}, "
        f"others {dict(report['others'])}"
    )


@pytest.mark.timeout(100 + WINDOW)
def test_three_workers_run_each_firing_exactly_once(docker_env: Env) -> None:
    register_and_schedule(docker_env, "once")
    names = ["w1", "w2", "w3"]
    workers = [start_worker(docker_env, name) for name in names]
    try:
        listed = wait_for_members(docker_env, set(names), workers)
        time.sleep(WINDOW)
    finally:
        codes, outputs = stop(workers)

    assert listed == set(names)
    assert codes == [0, 0, 0], outputs
    runs = [r for r in runs_of(docker_env, "--tool", "once") if r["schedule"] == SCHEDULE]
    report = firing_report(runs)
    summary("three workers", report)
    assert report["duplicates"] == []
    assert report["missing"] == []
    assert Counter((r["fire_time"], r["attempt"]) for r in runs).most_common(1)[0][1] == 1
    assert {r["member"] for r in runs} <= set(names)
    # It kept firing through the window; under load some firings are overlap skips.
    assert report["succeeded"] >= WINDOW / 4


@pytest.mark.timeout(120)
def test_everywhere_gives_each_member_its_own_run_of_each_firing(docker_env: Env) -> None:
    registered = docker_env.run("register", "both", DUMMY_IMAGE, "--network", "none")
    assert registered.code == 0, registered.err
    scheduled = docker_env.run(
        "run", "both", "--cron", "*/2 * * * * *", "--name", "both-sides", "--everywhere",
        # Overlap allowed: under load a run outlasts 2 s, and an overlap skip on one member
        # would say nothing of how firings are shared.
        "--allow-overlap",
    )  # fmt: skip
    assert scheduled.code == 0, scheduled.err
    names = ["e1", "e2"]
    workers = [start_worker(docker_env, name) for name in names]
    try:
        wait_for_members(docker_env, set(names), workers)
        both_up = time.time()
        time.sleep(12)
    finally:
        codes, outputs = stop(workers)
    assert codes == [0, 0], outputs
    runs = [r for r in runs_of(docker_env, "--tool", "both") if r["schedule"] == "both-sides"]
    by_fire: dict[float, list[str]] = {}  # every record
    ran: dict[float, list[str]] = {}
    for r in runs:
        by_fire.setdefault(r["fire_time"], []).append(r["member"])
        if r["status"] == "succeeded":
            ran.setdefault(r["fire_time"], []).append(r["member"])
        else:
            raise AssertionError(f"every firing runs on every member: {r}")
    figure(
        f"\neverywhere: {len(by_fire)} firings, members per firing "
        f"{Counter(len(m) for m in by_fire.values())}, ran on both {Counter(map(len, ran.values()))}"
    )
    both = [f for f, members in ran.items() if sorted(members) == names]
    assert len(both) >= 3, ran
    # Never twice on one member; a firing at the edges may have reached only one. Between
    # them each member ran each firing itself.
    assert all(len(members) == len(set(members)) for members in by_fire.values())
    # Firings before both were up went to the first one alone (or into a later member's
    # start-up catch-up, docs/reliability.md): judged from the first after both were up.
    inner = [f for f in sorted(by_fire)[:-1] if f > both_up]
    assert all(sorted(by_fire[f]) == names for f in inner), by_fire


# A bound, not a figure: on a loaded machine each `runs` call and each worker's start
# take seconds, and the test waits for a run of w3's that has just started.
@pytest.mark.timeout(240 + 2 * WINDOW)
def test_killed_worker_is_recovered_without_duplicates(docker_env: Env) -> None:
    # Runs of ~3 s: the kill lands while w3 has one in its container.
    register_and_schedule(docker_env, "killed", "--env", "SLEEP=3")
    names = ["w1", "w2", "w3"]
    workers = [start_worker(docker_env, name) for name in names]
    restarted: subprocess.Popen[str] | None = None
    try:
        wait_for_members(docker_env, set(names), workers)
        # The shape, scaled by the window: kill at a third, restart at two thirds.
        time.sleep(WINDOW / 3)
        # A run of w3 that started at most 1.5 s ago: it has more than a second left in
        # its container, longer than the kill takes to land.
        while not any(
            r["status"] == "running"
            and r["member"] == "w3"
            and r["tool"] == "killed"
            and time.time() - float(r["started"]) <= 1.5
            for r in stored(docker_env, "runs")
        ):
            time.sleep(0.1)
        workers[2].kill()
        killed_output = workers[2].communicate(timeout=30)[0]
        killed_at = time.time()
        time.sleep(WINDOW / 3)
        # Same member name: it must take over its own stale member entry (the wait is for
        # the new process, not the killed one's entry, whose lease may not have expired).
        restarted = start_worker(docker_env, "w3")
        wait_for_process(docker_env, "w3", restarted)
        # The lost run's retry (3 s) takes the overlap guard first: then firings go on.
        time.sleep(WINDOW / 2)
    finally:
        codes, outputs = stop([w for w in (workers[0], workers[1], restarted) if w is not None])

    assert workers[2].returncode == -signal.SIGKILL, killed_output
    assert codes == [0, 0, 0], outputs
    runs = [r for r in runs_of(docker_env, "--tool", "killed") if r["schedule"] == SCHEDULE]
    report = firing_report(runs)
    summary("kill -9 and restart", report)
    lost = [r for r in runs if r["status"] == "lost"]
    figure(f"lost: {[(r['fire_time'], r['member'], r['attempt']) for r in lost]}")
    retries = [r for r in runs if r["attempt"] == 2]
    figure(f"retries: {[(r['fire_time'], r['member'], r['status']) for r in retries]}")
    skipped = Counter(r["error"] for r in runs if r["status"] == "skipped")
    figure(f"skipped: {dict(skipped)}")
    assert report["duplicates"] == []
    assert report["missing"] == []
    assert not any(r["status"] == "running" for r in runs), "no run left `running`"
    # Killed while its one run (overlap forbidden) was in its container: that run is lost.
    assert len(lost) == 1
    for record in lost:  # retried once, as attempt 2
        assert record["member"] == "w3"
        assert record["attempt"] == 1
        [retry] = [r for r in retries if r["fire_time"] == record["fire_time"]]
        # The retry ran, unless a newer firing took the overlap guard first (the dead
        # member's guard goes with its lease, when the retry is queued): then it says so.
        assert retry["status"] == "succeeded" or (
            retry["status"] == "skipped" and "overlap forbidden" in retry["error"]
        ), retry
    assert all(any(r["fire_time"] == x["fire_time"] for r in lost) for x in retries)
    # Firings went on after the kill.
    warnings = [line for out in outputs for line in out.splitlines() if "WARNING" in line]
    assert any(r["status"] == "succeeded" and r["fire_time"] > killed_at + 2 for r in runs), (
        "\n".join(warnings[-30:])
    )


@pytest.mark.timeout(90)
def test_missed_firings_coalesce_into_one_catch_up(docker_env: Env) -> None:
    register_and_schedule(docker_env, "catchup")
    first = start_worker(docker_env, "solo")
    try:
        wait_for_members(docker_env, {"solo"}, [first])
        time.sleep(4)
    finally:
        codes, outputs = stop([first])
    assert codes == [0], outputs
    before = runs_of(docker_env, "--tool", "catchup")
    assert before, outputs
    last_before = max(r["fire_time"] for r in before)
    time.sleep(5)  # no worker: five firings go by

    second = start_worker(docker_env, "solo")
    try:
        wait_for_members(docker_env, {"solo"}, [second])
        while not [
            r
            for r in stored(docker_env, "runs")
            if r["tool"] == "catchup" and (r["fire_time"] or 0) > last_before + 4
        ]:
            assert second.poll() is None, second.communicate()[0]
            time.sleep(0.3)
        time.sleep(2)
    finally:
        codes, outputs = stop([second])
    assert codes == [0], outputs

    runs = runs_of(docker_env, "--tool", "catchup")
    after = [r for r in runs if r["fire_time"] > last_before]
    # The first start catches up too (the firing just before it): only the restart counts.
    catch_ups = [r for r in after if r["trigger"] == "catch-up"]
    first_after = min(r["fire_time"] for r in after)
    figure(
        f"\ncatch-up: last fire before stop {last_before}, first after restart {first_after} "
        f"(gap {first_after - last_before:.0f}s), catch-up runs {len(catch_ups)}, "
        f"triggers after restart {Counter(r['trigger'] for r in after)}"
    )
    # One record for the missed stretch, the catch-up at its newest firing, not five.
    assert len(catch_ups) == 1, catch_ups
    assert catch_ups[0]["fire_time"] == first_after
    assert [r for r in after if r["fire_time"] == first_after] == catch_ups
    assert catch_ups[0]["status"] == "succeeded"
    assert first_after - last_before >= 5  # the firings in between were not run one by one
    listed = docker_env.run("schedule", "list", "--json")
    assert listed.code == 0, listed.err
    [schedule] = json.loads(listed.out)
    assert schedule["name"] == SCHEDULE
    assert schedule["cron"] == "* * * * * *"
    assert schedule["tool"] == "catchup"
    assert not schedule["paused"]


@pytest.mark.timeout(120)
def test_fifth_run_spike_is_stored_and_followed(docker_env: Env) -> None:
    registered = docker_env.run(
        "register", "spiky", DUMMY_IMAGE, "--network", "none", "--env", "SPIKE_AT=5"
    )
    assert registered.code == 0, registered.err
    follower = docker_env.popen("spikes", "--follow", "--tool", "spiky", "--json")
    try:
        assert follower.stdout is not None
        note = follower.stdout.readline()  # it is watching before the first run
        assert "following" in note, note
        # In the order they ran (`runs` shows times to the second: runs of one second tie).
        run_ids: list[str] = []
        for _ in range(5):
            result = docker_env.run("run", "spiky")
            assert result.code == 0, result.out + result.err
            run_ids.append(re.findall(r", run (\S+)", result.out + result.err)[-1])
        stored = docker_env.run("spikes", "--tool", "spiky", "--json")
        # A stored spike reaches the follower right away; give its watch a moment anyway.
        time.sleep(2)
    finally:
        follower.send_signal(signal.SIGINT)
        followed_out = follower.communicate(timeout=30)[0]

    assert stored.code == 0, stored.err
    spikes = json.loads(stored.out)
    runs = runs_of(docker_env, "--tool", "spiky")
    figure(f"\nspikes: stored {len(spikes)}, runs {len(runs)}")
    assert sorted(r["id"] for r in runs) == sorted(run_ids)
    assert [s["run_id"] for s in spikes] == [run_ids[4]]
    followed = [json.loads(line) for line in followed_out.splitlines() if line.startswith("{")]
    assert [s["run_id"] for s in followed] == [run_ids[4]], followed_out


@pytest.mark.timeout(60)
def test_worker_check_follows_the_worker(docker_env: Env) -> None:
    checker = as_member(docker_env, "checked")
    worker = start_worker(docker_env, "checked")
    try:
        wait_for_members(docker_env, {"checked"}, [worker])
        alive = checker.run("worker", "--check")
    finally:
        codes, outputs = stop([worker])
    gone = checker.run("worker", "--check")

    assert codes == [0], outputs
    assert alive.code == 0, alive.err
    assert "alive" in alive.out
    assert gone.code == 1, gone.out
    assert len(gone.err.strip().splitlines()) == 1
