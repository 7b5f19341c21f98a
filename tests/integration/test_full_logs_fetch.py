"""`maomao logs RUN --full` end to end (issue 17): a real worker on real etcd and dockerd
runs a tool printing far more than the record's 16 KiB; `maomao logs RUN` shows the tail
and `maomao logs RUN --full` from another member (its own HOME, config and state
directory) gets every line, fetched through etcd from the worker that ran it."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Env, make_env
from servers import DockerDaemon, EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.docker]

LINES = 3000
FILLER = "x" * 60
# About 200 KiB of output, numbered so every line can be checked.
SCRIPT = f'n=1; while [ $n -le {LINES} ]; do echo "line $n {FILLER}"; n=$((n+1)); done'
EXPECTED = [f"line {n} {FILLER}" for n in range(1, LINES + 1)]
DEADLINE = 120.0


def member_env(root: Path, etcd: EtcdCluster, prefix: str, member: str, **extra: str) -> Env:
    root.mkdir()
    env = make_env(root, etcd.endpoints, prefix, **extra)
    return Env({**env.vars, "MAOMAO_MEMBER": member}, env.home)


def first_success(env: Env) -> dict[str, Any] | None:
    result = env.run("runs", "--json", "--tool", "noisy")
    assert result.code == 0, result.err
    done = [r for r in json.loads(result.out) if r["status"] == "succeeded"]
    return done[-1] if done else None


def stop(worker: subprocess.Popen[str]) -> str:
    worker.send_signal(signal.SIGTERM)
    try:
        output, _ = worker.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
    return output


@pytest.mark.timeout(240)
def test_full_log_from_another_member_has_every_line(
    tmp_path: Path, etcd: EtcdCluster, prefix: str, docker: DockerDaemon, script_image: str
) -> None:
    ran_on = member_env(tmp_path / "w1", etcd, prefix, "w1", MAOMAO_DOCKER_HOST=docker.host)
    elsewhere = member_env(tmp_path / "w2", etcd, prefix, "w2")
    registered = ran_on.run("register", "noisy", script_image, "--env", f"SCRIPT={SCRIPT}")
    assert registered.code == 0, registered.err
    assert ran_on.run("run", "noisy", "--cron", "* * * * * *").code == 0

    worker = ran_on.popen("worker")
    try:
        deadline = time.monotonic() + DEADLINE
        while (record := first_success(elsewhere)) is None:
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the tool did not run"
            time.sleep(0.3)
        run_id = record["id"]
        tail = elsewhere.run("logs", run_id)
        full = elsewhere.run("logs", run_id, "--full")
    finally:
        output = stop(worker)
    gone = elsewhere.run("logs", run_id, "--full")

    assert worker.returncode == 0, output
    assert (tail.code, tail.err) == (0, "")
    assert tail.lines[-1] == EXPECTED[-1] and EXPECTED[0] not in tail.lines
    assert len(tail.out.encode()) < 17 * 1024  # the record's tail: 16 KiB
    assert (full.code, full.err) == (0, "")
    assert full.lines == EXPECTED
    kept = tmp_path / "w1" / "state" / "logs" / f"{run_id}.log"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert not (tmp_path / "w2" / "state" / "logs").exists()  # fetched, not kept
    # With its worker gone, the member is named and what to do said, on one line.
    assert (gone.code, gone.out) == (1, "")
    assert gone.err.splitlines() == [
        f"error: member w1 is not in the member list: the full log of run {run_id} is kept "
        f"on its host; run `maomao logs {run_id} --full` there, or `maomao logs {run_id}` "
        "for the last 16 KiB"
    ]
