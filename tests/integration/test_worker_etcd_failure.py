"""A three-member etcd cluster on loopback: stopping the member a worker talks to does not
stop firings, and no firing runs twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import DUMMY_IMAGE, Env, make_env
from faults.checks import coalesced
from figures import figure
from servers import DockerDaemon, EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    three = EtcdCluster(3).start()
    yield three
    three.stop()


def start_worker(env: Env, member: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "maomao_cli", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env.vars, "MAOMAO_MEMBER": member},
    )


@pytest.mark.timeout(180)
def test_stopping_an_etcd_member_keeps_firings_exactly_once(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str
) -> None:
    # Each worker lists every endpoint; the first member is the one they all start on.
    endpoints = ",".join(m.endpoint for m in cluster.members)
    env = make_env(tmp_path, endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)
    assert env.run("register", "t", DUMMY_IMAGE, "--network", "none").code == 0
    assert env.run("run", "t", "--cron", "* * * * * *", "--name", "every-second").code == 0
    workers = [start_worker(env, name) for name in ("w1", "w2")]
    try:
        time.sleep(6)
        victim = cluster.members[0]
        victim.stop(signal.SIGKILL)
        stopped_at = time.time()
        time.sleep(10)
        restarted_at = time.time()
        cluster.restart(victim)
        time.sleep(5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    result = env.run("runs", "--tool", "t", "--json", "--limit", "1000")
    assert result.code == 0, result.err
    runs = [r for r in json.loads(result.out) if r["schedule"] == "every-second"]
    for r in runs:  # ISO text -> epoch seconds
        r["fire_time"] = datetime.fromisoformat(r["fire_time"].replace("Z", "+00:00")).timestamp()
    ran = Counter(r["fire_time"] for r in runs if r["status"] == "succeeded")
    duplicates = [f for f, n in ran.items() if n > 1]
    fire_times = sorted({r["fire_time"] for r in runs})
    span = int(fire_times[-1] - fire_times[0]) + 1
    explained = {r["fire_time"] for r in runs if r["status"] != "succeeded" and r["error"]}
    # Firings the workers could not claim while they failed over: in a catch-up's stretch.
    explained |= {float(second) for second in coalesced(runs, "every-second")}
    missing = [
        fire_times[0] + i
        for i in range(span)
        if fire_times[0] + i not in ran and fire_times[0] + i not in explained
    ]
    figure(
        f"\nfirings: {len(fire_times)}, succeeded: {len(ran)}, duplicates: {len(duplicates)}, "
        f"unexplained misses: {len(missing)}, others: "
        f"{Counter((r['status'], r['error']) for r in runs if r['status'] != 'succeeded')}"
    )
    assert duplicates == []
    records = Counter((r["fire_time"], r["attempt"]) for r in runs)
    assert max(records.values()) == 1, "one record per firing and attempt, skips included"
    assert missing == [], (missing, telling_lines(outputs))
    # Firings kept going while the member was down (how many depends on the machine's
    # speed: the 1 s tool's runs may overlap the next second's firing, recorded skipped).
    assert [f for f in ran if stopped_at + 1 <= f <= restarted_at], sorted(ran)


def telling_lines(outputs: list[str]) -> list[str]:
    """What the workers said about their connection and missed firings (a failure's story)."""
    words = ("WARNING", "coalesced", "missed", "reconnect", "skipped")
    return [
        f"{n}: {line}"
        for n, output in enumerate(outputs, 1)
        for line in output.splitlines()
        if any(word in line for word in words)
    ][-60:]
