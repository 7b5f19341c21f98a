"""The fault suite's test bed: one per session, shared by every fault, on one xdist
worker (the faults run in order on it: test_faults.py). Its durations: profiles.py; its
summary table: summary.py."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE
from parallel import worker_index
from servers import DockerDaemon

from .profiles import profile
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

# The source name of every host's tmpfs disk (in `mount`): which worker's rig it is.
DISK = f"maomao-faults-gw{worker_index()}"


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
                ["mount", "-t", "tmpfs", "-o", "size=8m", DISK, str(host.importdir)],
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
