"""The fault suite's test bed (one per session, shared by every fault) and its summary.

Profiles: short (the default, for CI) and full (`MAOMAO_FAULTS=full`, the durations of
issue 9: a 20 s partition, etcd down for 15 s...).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE
from servers import DockerDaemon

from .checks import VERDICTS, Verdict
from .rig import (
    ROOT,
    SCHEDULE,
    TOOL,
    WORKER_CONFIG,
    Host,
    Network,
    cluster_healthy,
    namespaces_unavailable,
    wait_until,
)


@dataclass(frozen=True)
class Profile:
    name: str
    baseline: float  # seconds of normal running before each fault
    settle: float  # seconds of normal running after each fault, inside the window
    worker_dead: float  # a SIGKILLed worker stays dead this long (> lease_ttl)
    leader_dead: float
    partition: float
    etcd_down: float
    disk_full: float


PROFILES = {
    "short": Profile("short", 3, 4, 6, 5, 8, 8, 6),
    "full": Profile("full", 5, 8, 15, 15, 20, 15, 20),
}


def profile() -> Profile:
    chosen = os.environ.get("MAOMAO_FAULTS", "short")
    if chosen not in PROFILES:
        raise pytest.UsageError(f"MAOMAO_FAULTS must be one of {sorted(PROFILES)}, not {chosen!r}")
    return PROFILES[chosen]


class Rig:
    """Three hosts (etcd member + worker each), one dockerd, the schedule running."""

    def __init__(self, hosts: list[Host], network: Network, docker: DockerDaemon) -> None:
        self.hosts = hosts
        self.network = network
        self.docker = docker
        self.profile = profile()
        self.initial_cluster = ",".join(f"{h.member}=http://{h.address}:2380" for h in hosts)
        self.inventory: dict[str, set[str]] = {}
        self.left_seen: set[str] = set()  # containers already counted as left behind

    @property
    def observer(self) -> Host:
        """Where the suite reads etcd from: host 1, never the partitioned one."""
        return self.hosts[0]

    def cli(self, *args: str) -> Any:
        shown = self.observer.maomao(*args)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def runs(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.cli("runs", "--json", "--limit", "10000000")
        return records

    def take_inventory(self) -> dict[str, set[str]]:
        return {
            "tools": {t["name"] for t in self.cli("tools", "--json")},
            "schedules": {s["name"] for s in self.cli("schedule", "list", "--json")},
            "spikes": {
                f"{s['tool']}@{s['sortable']}" for s in self.cli("spikes", "--all", "--json")
            },
        }

    def docker_api(self) -> Any:
        import docker as docker_py

        return docker_py.APIClient(base_url=self.docker.host, timeout=30)

    def containers(self, *, running: bool | None = None) -> list[dict[str, Any]]:
        api = self.docker_api()
        try:
            found: list[dict[str, Any]] = api.containers(all=True)
        finally:
            api.close()
        if running is None:
            return found
        return [c for c in found if (c.get("State") == "running") == running]

    def running_on(self, host: Host) -> bool:
        """Does a container of this host's worker run right now?"""
        return any(
            c["Labels"].get("maomao.member") == host.worker_name
            for c in self.containers(running=True)
        )

    def restart_docker(self) -> None:
        """Stop the engine (its running containers with it) and start it on the same root."""
        process = self.docker.process
        assert process is not None
        process.terminate()
        process.wait(60)
        self.docker.start()

    def etcd_healthy(self) -> bool:
        return all(cluster_healthy(h) for h in self.hosts)

    def members(self) -> set[str]:
        return {m["name"] for m in self.cli("members", "--json")}


def _build_dummy(daemon: DockerDaemon) -> None:
    spec = importlib.util.spec_from_file_location(
        "maomao_dummy_build", ROOT / "examples" / "dummy-tool" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(DUMMY_IMAGE, host=daemon.host, quiet=True)


def _make_hosts(base: Path, network: Network, docker: DockerDaemon) -> list[Host]:
    """One host per network namespace, each with its own config, all knowing every endpoint."""
    prefix = f"/maomao-faults/{network.tag}"
    hosts: list[Host] = []
    for i, (ns, veth) in enumerate(network.create(), start=1):
        root = base / f"h{i}"
        root.mkdir()
        host = Host(i, ns, veth, root, prefix, docker.host)
        host.importdir.mkdir()
        (root / "config.toml").write_text(
            f'[data]\nimportdir = "{host.importdir}"\nstatedir = "{root / "state"}"\n'
            + WORKER_CONFIG
        )
        hosts.append(host)
    endpoints = ",".join(h.endpoint for h in hosts)
    for host in hosts:
        host.endpoints = endpoints
    return hosts


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"fault suite needs network namespaces: {reason}")
    base = tmp_path_factory.mktemp("faults")
    network = Network(3)
    docker = DockerDaemon()
    hosts: list[Host] = []
    mounted: list[Path] = []
    try:
        docker.start()
        _build_dummy(docker)
        hosts.extend(_make_hosts(base, network, docker))
        # Every host keeps its data on a small disk of its own, filled up by one fault.
        for host in hosts:
            mount = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=8m", "maomao-faults", str(host.importdir)],
                capture_output=True,
                text=True,
            )
            assert mount.returncode == 0, mount.stderr
            mounted.append(host.importdir)
        made = Rig(hosts, network, docker)
        for host in hosts:
            host.start_etcd(made.initial_cluster, "new")
        wait_until(made.etcd_healthy, 60, "the three-member etcd")
        _populate(made)
        made.inventory = made.take_inventory()
        assert made.inventory["spikes"], "the planted spike was not found: nothing to keep"
        for host in hosts:
            host.start_worker()
        wait_until(lambda: made.members() == {h.worker_name for h in hosts}, 60, "three workers")
        yield made
    finally:
        for host in hosts:
            if host.worker is not None:
                with contextlib.suppress(Exception):
                    host.kill_worker()
            with contextlib.suppress(Exception):
                host.kill_etcd()
        network.remove()
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        with contextlib.suppress(Exception):
            if docker.process is not None and docker.process.poll() is None:
                api = Rig(hosts, network, docker).docker_api()
                for container in api.containers(all=True):
                    api.remove_container(container["Id"], force=True)
                for image in api.images():
                    api.remove_image(image["Id"], force=True)
                api.close()
        docker.stop()


def _populate(rig: Rig) -> None:
    """Tools, schedules and one planted spike that no fault may take away."""
    h1 = rig.observer

    def ok(*args: str) -> None:
        done = h1.maomao(*args)
        assert done.returncode == 0, f"{args}: {done.stderr}"

    ok("register", TOOL, DUMMY_IMAGE, "--network", "none")
    ok("register", "spiky", DUMMY_IMAGE, "--network", "none", "-e", "SPIKE_AT=5")
    ok("register", "idle", DUMMY_IMAGE, "--network", "none", "--description", "never runs")
    # The measured schedule; overlap allowed so a slow container never turns a firing
    # into a skip, which would blur the figures.
    ok("run", TOOL, "--cron", "* * * * * *", "--name", SCHEDULE, "--allow-overlap")
    ok("run", "idle", "--daily", "--name", "idle-daily")
    ok("run", "spiky", "--weekly", "--name", "spiky-weekly")
    for _ in range(5):  # the fifth run of spiky writes a spike
        ok("run", "spiky")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not VERDICTS:
        return
    write = terminalreporter.write_line
    write("")
    write(f"fault suite summary (profile {profile().name})")
    header = (
        "fault",
        "firings checked",
        "duplicates",
        "unexplained misses",
        "records missing",
        "data lost",
        "containers left",
    )
    rows = [header, *(_row(v) for v in VERDICTS)]
    total = Verdict("total")
    for v in VERDICTS:
        total.firings += v.firings
        total.duplicates += v.duplicates
        total.unexplained += v.unexplained
        total.missing += v.missing
        total.data_lost += v.data_lost
        total.containers_left += v.containers_left
    rows.append(_row(total))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        write("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            write("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for v in VERDICTS:
        outcomes = ", ".join(f"{k} {n}" for k, n in sorted(v.outcomes.items()))
        # A check of no firings (the clean stop) says what it checked instead.
        write(f"  {v.fault}: {outcomes or f'{v.containers_left} container(s) left'}")
    write(f"  ({time.strftime('%Y-%m-%d %H:%M:%S')})")


def _row(v: Verdict) -> tuple[str, ...]:
    return (
        v.fault,
        str(v.firings),
        str(v.duplicates),
        str(v.unexplained),
        str(v.missing),
        str(v.data_lost),
        str(v.containers_left),
    )
