"""The worker's lifecycle end to end on a real etcd (and a private dockerd where runs
matter): a restart mid-run starts one container per firing, of three workers started at
once under one name exactly one comes up, a manual run is never taken for lost while it
runs, and a worker whose clock is off claims nothing."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, Env
from figures import figure
from observe import member_names, stored
from servers import DockerDaemon

pytestmark = [pytest.mark.etcd]

# Debian's libfaketime (scripts/system-packages.sh), whatever the architecture.
LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), "")


def start_worker(env: Env, member: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "maomao_cli", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env.vars, "MAOMAO_MEMBER": member},
    )


def members(env: Env) -> list[dict[str, Any]]:
    result = env.run("members", "--json")
    assert result.code == 0, result.err
    found: list[dict[str, Any]] = json.loads(result.out)
    return found


def wait_for_members(env: Env, names: set[str], workers: list[subprocess.Popen[str]]) -> None:
    """Until every named member is listed; the test's timeout bounds the wait."""
    while not names <= member_names(env):
        for worker in workers:
            assert worker.poll() is None, worker.communicate()[0]
        time.sleep(0.2)


def stop(workers: list[subprocess.Popen[str]]) -> list[str]:
    """SIGTERM each; one that has not exited 90 s later is killed and reported."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    outputs = []
    for worker in workers:
        try:
            outputs.append(worker.communicate(timeout=90)[0])
        except subprocess.TimeoutExpired:
            worker.kill()
            stuck = worker.communicate()[0]
            raise AssertionError(f"worker {worker.pid} did not stop on SIGTERM: {stuck}") from None
    return outputs


def runs(env: Env, tool: str) -> list[dict[str, Any]]:
    result = env.run("runs", "--json", "--limit", "1000", "--tool", tool)
    assert result.code == 0, result.err
    found: list[dict[str, Any]] = json.loads(result.out)
    return found


def manual_runs(env: Env) -> list[dict[str, Any]]:
    return [r for r in stored(env, "runs") if r["tool"] == "manual"]


def add_config(env: Env, text: str) -> None:
    with open(env.vars["MAOMAO_CONFIG"], "a", encoding="utf-8") as config:
        config.write(text)


def container_starts(docker: DockerDaemon, tool: str, since: float) -> Counter[str]:
    """Container starts of `tool` since `since`, by run id (dockerd's own event log)."""
    import docker as docker_py

    client = docker_py.APIClient(base_url=docker.host, timeout=30)
    try:
        events = client.events(
            since=int(since),
            until=int(time.time()) + 1,
            filters={"type": "container", "event": "start", "label": f"maomao.tool={tool}"},
            decode=True,
        )
        return Counter(event["Actor"]["Attributes"]["maomao.run"] for event in events)
    finally:
        client.close()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_restart_mid_run_starts_one_container_per_firing(
    docker_env: Env, docker: DockerDaemon
) -> None:
    """SIGTERM with the shipped defaults (lease_ttl 10 s, shutdown_grace 30 s) to a worker
    whose run (20 s) has more than lease_ttl left, three times (each trial waits out a run:
    the suite's longest test at five): the run finishes on it, nobody takes it for lost,
    and every firing starts one container."""
    trials = 3
    since = time.time()
    registered = docker_env.run(
        "register", "long", DUMMY_IMAGE, "--network", "none", "--env", "SLEEP=20"
    )
    assert registered.code == 0, registered.err
    scheduled = docker_env.run("run", "long", "--cron", "*/25 * * * * *", "--name", "long")
    assert scheduled.code == 0, scheduled.err
    workers = {name: start_worker(docker_env, name) for name in ("r1", "r2")}
    outputs: list[str] = []
    restarted: list[str] = []
    try:
        wait_for_members(docker_env, set(workers), list(workers.values()))
        for _ in range(trials):
            # A run that started at most 8 s ago: more than lease_ttl of it is left.
            while True:
                fresh = [
                    r
                    for r in stored(docker_env, "runs")
                    if r["tool"] == "long"
                    and r["status"] == "running"
                    and r["id"] not in restarted
                    and time.time() - float(r["started"]) <= 8
                ]
                if fresh:
                    break
                time.sleep(0.2)
            [run] = fresh
            member = run["member"]
            [output] = stop([workers[member]])
            outputs.append(output)
            assert workers[member].returncode == 0, output
            restarted.append(run["id"])
            final = {r["id"]: r for r in runs(docker_env, "long")}[run["id"]]
            assert final["status"] == "succeeded", (final, output)
            figure(f"trial {len(restarted)}: {member} stopped mid-run, its run {final['status']}")
            workers[member] = start_worker(docker_env, member)
            wait_for_members(docker_env, {member}, [workers[member]])
    finally:
        outputs += stop(list(workers.values()))

    records = runs(docker_env, "long")
    starts = container_starts(docker, "long", since)
    by_fire = Counter(r["fire_time"] for r in records if r["status"] != "skipped")
    stopped = [r for r in records if r["id"] in restarted]
    figure(
        f"\nrestart mid-run: {trials} trials, runs stopped mid-way {len(stopped)}, "
        f"container starts per stopped firing {[starts[r['id']] for r in stopped]}, "
        f"records per firing {sorted(Counter(by_fire.values()).items())}, "
        f"statuses {dict(Counter(r['status'] for r in records))}"
    )
    assert len(stopped) == trials
    assert all(r["status"] == "succeeded" for r in stopped)
    assert [starts[r["id"]] for r in stopped] == [1] * trials
    assert set(by_fire.values()) == {1}, "one run of each firing"
    assert sum(starts.values()) == len(by_fire), "one container start per firing"
    assert not [r for r in records if r["status"] == "lost"]
    assert not any("could not leave" in output for output in outputs), outputs


# Starts N workers at once: the heavy imports are made once, then N processes fork from
# here (before any etcd client exists: gRPC channels do not survive a fork) and run
# `maomao worker`. It prints their pids, then each one's exit status as it exits, on its
# stdout; the workers write only to stderr (a line of theirs could otherwise run into
# one of the launcher's).
TWINS = """
import os, sys
import maomao_cli.cli.main, maomao_cli.store.etcd, maomao_cli.services.worker, docker
pids = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)
        sys.argv, code = ["maomao", "worker"], 0
        try:
            maomao_cli.cli.main.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    pids.append(pid)
print("pids", *pids, flush=True)
for _ in pids:
    pid, status = os.wait()
    print("exit", pid, os.waitstatus_to_exitcode(status), flush=True)
"""


def read_until(stream: Any, prefix: str, lines: list[str]) -> list[str]:
    """Read lines (kept in `lines`) until one starts with prefix; its words."""
    while True:
        line = stream.readline()
        assert line, f"the launcher ended early: {lines}"
        lines.append(line.rstrip())
        if line.startswith(prefix):
            words: list[str] = line.split()
            return words


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_of_three_simultaneous_starts_under_one_name_exactly_one_comes_up(env: Env) -> None:
    trials = 20
    # No dockerd: the leftover-container sweep fails with one warning; nothing runs.
    twins_env = {
        **env.vars,
        "MAOMAO_DOCKER_HOST": "unix:///nonexistent.sock",
        "MAOMAO_MEMBER": "twin",
    }
    tally: Counter[str] = Counter()
    for _ in range(trials):
        with tempfile.TemporaryFile("w+") as workers_output:
            launcher = subprocess.Popen(
                [sys.executable, "-c", TWINS, "3"],
                stdout=subprocess.PIPE,
                stderr=workers_output,
                text=True,
                env=twins_env,
            )
            lines: list[str] = []
            pids = [int(p) for p in read_until(launcher.stdout, "pids", lines)[1:]]
            exited: dict[int, int] = {}
            try:
                for _ in range(2):
                    _, refused, code = read_until(launcher.stdout, "exit", lines)
                    exited[int(refused)] = int(code)
                [up] = [pid for pid in pids if pid not in exited]
                [listed] = stored(Env(twins_env, env.home), "members")
                assert listed["pid"] == up, lines
                os.kill(up, signal.SIGTERM)
                _, last, code = read_until(launcher.stdout, "exit", lines)
                exited[int(last)] = int(code)
                assert (int(last), int(code)) == (up, 0), lines
            finally:
                for pid in pids:
                    if pid not in exited:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                launcher.communicate(timeout=60)
                workers_output.seek(0)
                lines += workers_output.read().splitlines()
            errors = [line for line in lines if line.startswith("error:")]
            assert sorted(exited.values()) == [0, 1, 1], lines
            assert len(errors) == 2, lines
            assert all(
                f"member 'twin' is already running (host {socket.gethostname()}, pid {up})" in e
                for e in errors
            ), errors
            tally["exactly one up"] += 1
    figure(f"\nsame name, 3 simultaneous starts: {dict(tally)} of {trials} trials")
    assert tally["exactly one up"] == trials


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_a_manual_run_longer_than_the_lease_is_never_taken_for_lost(docker_env: Env) -> None:
    add_config(docker_env, "[worker]\nlease_ttl = 2\n")
    registered = docker_env.run(
        "register", "manual", DUMMY_IMAGE, "--network", "none", "--env", "SLEEP=600"
    )
    assert registered.code == 0, registered.err
    manual = docker_env.popen("run", "manual")
    seen: set[str] = set()
    workers: list[subprocess.Popen[str]] = []
    try:
        while not manual_runs(docker_env):
            assert manual.poll() is None, manual.communicate()[0]
            time.sleep(0.1)
        # A worker under the CLI's own member name starts meanwhile (its sweep takes this
        # member's runs from before it started for lost, and it removes the containers
        # its previous process left), and another dies (each live member sweeps when a
        # member's lease expires).
        workers = [start_worker(docker_env, "member-a"), start_worker(docker_env, "dies")]
        wait_for_members(docker_env, {"member-a", "dies"}, workers)
        workers[1].kill()
        while "dies" in member_names(docker_env):
            seen |= {r["status"] for r in manual_runs(docker_env)}
            time.sleep(0.2)
        for _ in range(10):  # the sweeps that follow, over more than a lease TTL
            seen |= {r["status"] for r in manual_runs(docker_env)}
            time.sleep(0.5)
        [during] = runs(docker_env, "manual")
        assert manual.poll() is None, manual.communicate()[0]
    finally:
        manual.send_signal(signal.SIGINT)  # the run ends as interrupted, by its own hand
        manual_output = manual.communicate(timeout=60)[0]
        outputs = stop(workers)
    [record] = runs(docker_env, "manual")
    figure(
        f"\nmanual run, lease_ttl 2 s, a worker of its member name started and another "
        f"killed meanwhile: statuses seen while it ran {sorted(seen)}, then "
        f"{record['status']} ({record['error']})"
    )
    assert seen == {"running"}, seen
    assert during["status"] == "running"
    assert (record["status"], record["error"]) == ("failed", "interrupted"), manual_output
    assert not any("marked lost" in output for output in outputs), outputs
    assert not any("removed" in output for output in outputs), "its container was kept"


@pytest.mark.docker
@pytest.mark.skipif(not LIBFAKETIME, reason="needs libfaketime (scripts/system-packages.sh)")
@pytest.mark.timeout(180)
def test_a_worker_whose_clock_is_off_shows_it_and_claims_nothing(docker_env: Env) -> None:
    add_config(docker_env, "[worker]\nlease_ttl = 3\n")
    registered = docker_env.run("register", "clocked", DUMMY_IMAGE, "--network", "none")
    assert registered.code == 0, registered.err
    scheduled = docker_env.run("run", "clocked", "--cron", "* * * * * *", "--name", "clocked")
    assert scheduled.code == 0, scheduled.err
    # libfaketime preloaded into c3 alone (no wrapper process: signals reach the worker).
    skewed_env = Env(
        {
            **docker_env.vars,
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME": "+3s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
        docker_env.home,
    )
    workers = [
        start_worker(docker_env, "c1"),
        start_worker(docker_env, "c2"),
        start_worker(skewed_env, "c3"),
    ]
    try:
        wait_for_members(docker_env, {"c1", "c2", "c3"}, workers)
        # Until each member has published an estimate and each has settled: the first
        # ones can be off (a member that has heard from one other member alone shows half
        # the difference: c3 1.75 s, c2 -1.48 s in CI runs; 3.70 s for c3 when every
        # heartbeat so far had met 0.7 s of delay on a loaded CI machine), and each
        # member publishes its estimate a heartbeat later. After 60 s the assertions
        # below say how far they got.
        settle_by = time.monotonic() + 60
        while True:
            offsets = {m["name"]: m["clock_offset"] for m in members(docker_env)}
            published = len(offsets) == 3 and None not in offsets.values()
            settled = (
                published
                and 2.5 < offsets["c3"] < 3.5
                and abs(offsets["c1"]) < 0.5
                and abs(offsets["c2"]) < 0.5
            )
            if settled or (published and time.monotonic() > settle_by):
                break
            time.sleep(0.3)
        held_since = time.time()
        table = docker_env.run("members")
        check = Env({**docker_env.vars, "MAOMAO_MEMBER": "c3"}, docker_env.home).run(
            "worker", "--check"
        )
        time.sleep(8)
        window_end = time.time()
    finally:
        outputs = stop(workers)

    records = runs(docker_env, "clocked")
    # c3's clock reads 3 s ahead: what it claimed before the gate closed fires by then + 3 s.
    late = [r for r in records if r["member"] == "c3" and epoch(r["fire_time"]) > held_since + 4]
    others = [r for r in records if r["member"] != "c3" and epoch(r["fire_time"]) > held_since + 4]
    figure(
        f"\nclock offset (c3 under faketime +3s): members shows {offsets}; "
        f"claims by c3 after the gate: {len(late)}, by c1/c2: {len(others)} "
        f"in {window_end - held_since:.0f}s; worker --check: {check.code} {check.err.strip()}"
    )
    assert 2.5 < offsets["c3"] < 3.5, offsets
    assert abs(offsets["c1"]) < 0.5 and abs(offsets["c2"]) < 0.5, offsets
    [c3_row] = [cells for cells in map(str.split, table.out.splitlines()) if "c3" in cells]
    shown = float(next(cell for cell in c3_row if cell.endswith("s") and cell[0] in "+-")[:-1])
    assert 2.5 < shown < 3.5, table.out
    assert late == [], late
    assert len(others) >= 4, "the other members ran the firings"
    assert check.code == 1 and "claims no firings" in check.err, check.err
    assert sum("ahead of the collaboration" in line for line in outputs[2].splitlines()) == 1


def epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
