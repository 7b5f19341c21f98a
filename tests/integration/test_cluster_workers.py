"""Workers on a cluster founded and joined with `maomao etcd`: three hosts in network
namespaces (the fixtures of test_cluster), mutual TLS, a worker on each started with the
config `init`/`join` printed. Stopping the founder's etcd keeps firings running exactly
once, and the founder's own worker keeps going through the other members, although its
endpoints file (written by `init`, before anyone joined) named only its own member.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from test_cluster import Host, hosts  # noqa: F401  (hosts: the three-namespace fixture)

from conftest import DUMMY_IMAGE
from faults.checks import epoch, judge, settled
from figures import figure
from servers import DockerDaemon

pytestmark = [pytest.mark.etcd, pytest.mark.docker, pytest.mark.slow]

SCHEDULE = "every-second"
TOOL = "ticker"
RETRIES = 3
LEASE_TTL = 3
OUTAGE = 10.0  # seconds the founder's etcd stays down
# Faults show within seconds: a short member lease, quick retries, nothing pruned.
WORKER_CONFIG = f"""[docker]
network = "none"
api_timeout = 30.0
host = "{{docker_host}}"
[worker]
lease_ttl = {LEASE_TTL}
retries = {RETRIES}
backoff = 1.0
backoff_max = 4.0
shutdown_grace = 15.0
runs_kept = 1000000
"""


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.5)


def _json(host: Host, *args: str, via: str | None = None) -> Any:
    """A command's JSON output; `via` names the endpoints to use instead of the file's.
    (A single CLI call does not fail over: it fails when its randomly chosen endpoint is
    the stopped member, so the observer talks to the members that stay up.)"""
    shown = host.maomao(*(("--etcd", via) if via else ()), *args, "--json", timeout=60)
    # `etcd status` exits 1 while a member is down (its health check): its JSON says so.
    allowed = (0, 1) if args[:2] == ("etcd", "status") else (0,)
    assert shown.returncode in allowed, f"{args}: {shown.stderr}"
    return json.loads(shown.stdout)


def _configure(host: Host, printed: str, docker: DockerDaemon) -> None:
    """config.toml: the fixture's [data], worker settings, and the [etcd] section the
    cluster command printed (endpoints_file and the client certificate)."""
    config = host.root / "config.toml"
    config.write_text(
        config.read_text()
        + WORKER_CONFIG.format(docker_host=docker.host)
        + printed
        + "\ntimeout = 2.0\n"
    )


def _start_worker(host: Host) -> subprocess.Popen[bytes]:
    with open(host.root / "worker.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            ["ip", "netns", "exec", host.ns, sys.executable, "-m", "maomao_cli", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=host.env(),
        )


def _stop_worker(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return -9


def _our_containers(docker: DockerDaemon, names: set[str]) -> list[dict[str, Any]]:
    import docker as docker_py

    api = docker_py.APIClient(base_url=docker.host, timeout=30)
    try:
        found: list[dict[str, Any]] = api.containers(all=True)
    finally:
        api.close()
    return [c for c in found if (c.get("Labels") or {}).get("maomao.member") in names]


@pytest.fixture
def workers(hosts: list[Host]) -> Iterator[dict[str, subprocess.Popen[bytes]]]:  # noqa: F811
    started: dict[str, subprocess.Popen[bytes]] = {}
    yield started
    for worker in started.values():  # a failed test: the fixture of test_cluster does the rest
        if worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            worker.wait(30)


@pytest.mark.timeout(300)
def test_workers_on_every_member_survive_the_founders_etcd_stopping(
    hosts: list[Host],  # noqa: F811
    workers: dict[str, subprocess.Popen[bytes]],
    docker: DockerDaemon,
) -> None:
    h1, h2, h3 = hosts
    names = {h.name for h in hosts}
    observer = f"{h2.endpoint},{h3.endpoint}"

    founded = h1.maomao("etcd", "init", "--listen", h1.address, "--json")
    assert founded.returncode == 0, founded.stderr
    founded_json = json.loads(founded.stdout)
    token = founded_json["token_file"]
    printed = {h1.name: founded_json["config"]}
    for host in (h2, h3):
        joined = host.maomao("etcd", "join", h1.endpoint, "--token", token, "--json")
        assert joined.returncode == 0, joined.stderr
        printed[host.name] = json.loads(joined.stdout)["config"]
    for host in hosts:
        assert "ca_file" in printed[host.name] and "endpoints_file" in printed[host.name]
        _configure(host, printed[host.name], docker)
    # The founder's file was written before anyone joined: the worker must learn the rest.
    assert (h1.cluster / "endpoints").read_text().split() == [h1.endpoint]

    for done in (
        h1.maomao("register", TOOL, DUMMY_IMAGE, "--network", "none"),
        # Overlap allowed, so a slow container never turns a firing into a skip.
        h1.maomao("run", TOOL, "--cron", "* * * * * *", "--name", SCHEDULE, "--allow-overlap"),
    ):
        assert done.returncode == 0, done.stderr

    for host in hosts:
        workers[host.name] = _start_worker(host)
    _poll(
        lambda: {m["name"] for m in _json(h2, "members", via=observer)} == names,
        60,
        "three workers",
    )
    assert {m["name"] for m in _json(h2, "members", via=observer)} == names
    # Every worker asked the cluster for its members and rewrote its machine's list.
    for host in hosts:
        _poll(
            lambda host=host: (
                set((host.cluster / "endpoints").read_text().split())  # type: ignore[misc]
                == {h.endpoint for h in hosts}
            ),
            30,
            f"{host.name}'s endpoints file listing every member",
        )

    window_start = math.ceil(time.time()) + 1
    time.sleep(4)
    stopped = h1.maomao("etcd", "stop")
    assert stopped.returncode == 0, stopped.stderr
    outage_start = time.time()
    time.sleep(OUTAGE)
    # The founder's worker kept its member lease alive through the other members: without
    # them its record would have expired LEASE_TTL seconds into the outage.
    seen = {m["name"]: m for m in _json(h2, "members", via=observer)}
    told = (h1.root / "worker.log").read_text(errors="replace")[-3000:]
    assert h1.name in seen, f"host1's worker dropped out: {seen}\n{told}"
    heartbeat = datetime.fromisoformat(seen[h1.name]["heartbeat"].replace("Z", "+00:00"))
    assert heartbeat.timestamp() > outage_start + 2 * LEASE_TTL
    outage_end = time.time()

    restarted = h1.maomao("etcd", "start")
    assert restarted.returncode == 0, restarted.stderr
    _poll(lambda: _json(h1, "etcd", "status")["healthy_voters"] == 3, 60, "host1 back as a voter")
    time.sleep(3)
    window_end = math.floor(time.time()) - 1
    window = (window_start, window_end)

    runs: list[dict[str, Any]] = _json(h2, "runs", "--limit", "10000000", via=observer)
    deadline = time.monotonic() + 60
    while not settled(runs, SCHEDULE, window, RETRIES) and time.monotonic() < deadline:
        time.sleep(1)
        runs = _json(h2, "runs", "--limit", "10000000", via=observer)

    codes = {name: _stop_worker(worker) for name, worker in workers.items()}
    logs = {h.name: (h.root / "worker.log").read_text(errors="replace")[-3000:] for h in hosts}
    assert codes == dict.fromkeys(names, 0), logs

    verdict = judge("founder's etcd stopped", runs, SCHEDULE, window, RETRIES)
    in_outage = [
        r
        for r in runs
        if r.get("schedule") == SCHEDULE
        and r["status"] == "succeeded"
        and outage_start + 1 <= epoch(r["fire_time"]) <= outage_end
    ]
    by_member = Counter(str(r["member"]) for r in in_outage)
    figure(
        f"\nwindow {window[1] - window[0] + 1} s, outage {outage_end - outage_start:.1f} s: "
        f"firings {verdict.firings}, duplicates {verdict.duplicates}, "
        f"unexplained misses {verdict.unexplained}, records missing {verdict.missing}; "
        f"outcomes {dict(verdict.outcomes)}; succeeded during the outage {len(in_outage)} "
        f"by member {dict(sorted(by_member.items()))}"
    )
    for line in verdict.details[:20]:
        figure(f"   {line}")
    assert verdict.firings >= 15
    assert verdict.duplicates == 0, verdict.details
    assert verdict.unexplained == 0, (verdict.details[:5], logs)
    assert verdict.missing == 0, verdict.details
    # Firings kept running while the founder's etcd was down.
    assert len(in_outage) >= OUTAGE / 2

    left = _our_containers(docker, names)
    assert left == [], [c["Names"] for c in left]
