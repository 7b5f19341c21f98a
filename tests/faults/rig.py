"""The test bed of the fault suite: three hosts, each a network namespace holding one etcd
member and one worker, hung off a bridge in a fourth namespace by veth pairs; one
private dockerd in the root namespace, reached through its unix socket (sockets on the
file system cross network namespaces).

Everything here is created by the suite and removed by name or pid; the machine's own
network is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parallel import subnet
from servers import wait_for

ROOT = Path(__file__).resolve().parents[2]
SUBNET = subnet("10.231", 91)  # 10.231.91 on gw0 (and without xdist), 10.231.92 on gw1...
SCHEDULE = "every-second"
TOOL = "ticker"
# Worker settings that make faults show within seconds: a short member lease (a dead
# worker is noticed after 3 s), quick retries, and no pruning of the records we count.
# Docker's API gets long to answer: an engine that is down refuses at once, while a loaded
# machine's engine may take seconds to create a container (CI failed runs at 5 s).
RETRIES = 3
WORKER_CONFIG = f"""
[etcd]
timeout = 2.0
[docker]
network = "none"
api_timeout = 30.0
[worker]
lease_ttl = 3
retries = {RETRIES}
backoff = 1.0
backoff_max = 4.0
shutdown_grace = 15.0
runs_kept = 1000000
"""


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "etcd", "etcdctl", "dockerd", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"mmfprobe-{uuid.uuid4().hex[:6]}"
    made = ip("netns", "add", probe)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe)
    return None


@dataclass
class Host:
    index: int
    ns: str
    veth: str  # the bridge side of this host's cable
    root: Path
    prefix: str
    docker_host: str
    endpoints: str = ""
    etcd: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    worker_logs: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.index}"

    @property
    def member(self) -> str:
        return f"m{self.index}"

    @property
    def worker_name(self) -> str:
        return f"w{self.index}"

    @property
    def importdir(self) -> Path:
        return self.root / "data"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:2379"

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def env(self) -> dict[str, str]:
        keep = {
            k: v for k, v in os.environ.items() if not k.startswith(("MAOMAO_", "DOCKER_", "XDG_"))
        }
        return {
            **keep,
            "HOME": str(self.root),
            "MAOMAO_CONFIG": str(self.root / "config.toml"),
            "MAOMAO_ETCD_ENDPOINTS": self.endpoints,
            "MAOMAO_ETCD_PREFIX": self.prefix,
            "MAOMAO_MEMBER": self.worker_name,
            "MAOMAO_DOCKER_HOST": self.docker_host,
            "COLUMNS": "200",
            "PYTHONPATH": str(ROOT / "src"),
        }

    def maomao(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.wrap([sys.executable, "-m", "maomao_cli", *args]),
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.wrap(["etcdctl", "--endpoints", self.endpoints, "--command-timeout=2s", *args]),
            capture_output=True,
            text=True,
            env={**os.environ, "ETCDCTL_API": "3"},
            timeout=30,
        )

    # etcd ---------------------------------------------------------------------

    def start_etcd(self, initial_cluster: str, state: str) -> None:
        with open(self.root / "etcd.log", "ab") as log:  # the child keeps its own descriptor
            peer = f"http://{self.address}:2380"
            client = f"http://{self.address}:2379"
            command = [
                "etcd", "--name", self.member, "--data-dir", str(self.root / "etcd"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                "--initial-cluster-token", "maomao-faults",
                "--heartbeat-interval", "50", "--election-timeout", "500",
            ]  # fmt: skip
            self.etcd = subprocess.Popen(
                self.wrap(command),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill_etcd(self, sig: int = signal.SIGKILL) -> None:
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.send_signal(sig)
            self.etcd.wait(30)
        self.etcd = None

    # worker -------------------------------------------------------------------

    def start_worker(self) -> None:
        log_path = self.root / f"worker-{len(self.worker_logs) + 1}.log"
        self.worker_logs.append(log_path)
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            self.worker = subprocess.Popen(
                self.wrap([sys.executable, "-m", "maomao_cli", "worker", "--max-parallel", "4"]),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )

    def freeze_worker(self) -> None:
        """SIGSTOP: the worker records nothing more, its runs stay as they are."""
        assert self.worker is not None
        self.worker.send_signal(signal.SIGSTOP)

    def thaw_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGCONT)

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(30)
        self.worker = None

    def stop_worker(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.worker is not None
        self.worker.send_signal(signal.SIGTERM)
        try:
            code = self.worker.wait(timeout)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
            code = -9
        self.worker = None
        return code

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.worker_logs if p.exists())

    # network ------------------------------------------------------------------

    def cable(self, bridge_ns: str, *, up: bool) -> None:
        """Plug or unplug this host: the bridge side of its veth pair up or down."""
        done = ip("-n", bridge_ns, "link", "set", self.veth, "up" if up else "down")
        assert done.returncode == 0, done.stderr

    def data_files(self) -> int:
        folder = self.importdir / "tools" / TOOL
        return len(list(folder.glob("data-*.txt"))) if folder.exists() else 0


class Network:
    """A bridge namespace and one namespace per host, removed with everything in them."""

    def __init__(self, count: int) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.bridge_ns = f"mmf-{self.tag}-br"
        self.count = count
        self.made: list[str] = []

    def create(self) -> list[tuple[str, str]]:
        """Create the namespaces; returns (namespace, bridge-side veth) per host."""
        assert ip("netns", "add", self.bridge_ns).returncode == 0
        self.made.append(self.bridge_ns)
        assert ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge").returncode == 0
        assert ip("-n", self.bridge_ns, "link", "set", "br0", "up").returncode == 0
        hosts = []
        for i in range(1, self.count + 1):
            ns = f"mmf-{self.tag}-h{i}"
            assert ip("netns", "add", ns).returncode == 0
            self.made.append(ns)
            veth = f"mf{self.tag}v{i}"
            made = ip(
                "link", "add", veth, "netns", self.bridge_ns, "type", "veth",
                "peer", "name", "eth0", "netns", ns,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            assert (
                ip("-n", self.bridge_ns, "link", "set", veth, "master", "br0", "up").returncode == 0
            )
            assert ip("-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0").returncode == 0
            assert ip("-n", ns, "link", "set", "eth0", "up").returncode == 0
            assert ip("-n", ns, "link", "set", "lo", "up").returncode == 0
            hosts.append((ns, veth))
        return hosts

    def remove(self) -> None:
        for ns in self.made:
            # Only processes this suite started live in these namespaces.
            for pid in ip("netns", "pids", ns).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", ns)


def etcd_leader(host: Host, hosts: list[Host]) -> Host:
    """The host whose member leads, from `etcdctl endpoint status -w json`."""
    shown = host.etcdctl("endpoint", "status", "-w", "json")
    assert shown.returncode == 0, shown.stderr
    statuses: list[dict[str, Any]] = json.loads(shown.stdout)
    leader = statuses[0]["Status"]["leader"]
    for status in statuses:
        if status["Status"]["header"]["member_id"] == leader:
            endpoint = status["Endpoint"].removeprefix("http://")
            return next(h for h in hosts if h.endpoint == endpoint)
    raise AssertionError(f"no leader among {statuses}")


def cluster_healthy(host: Host) -> bool:
    probe = host.etcdctl("endpoint", "health")
    return probe.returncode == 0


def fill_disk(folder: Path) -> Path:
    """Fill the file system holding folder to the last byte; returns the filler file."""
    filler = folder / "filler.bin"
    chunk = 1 << 20
    with open(filler, "wb", buffering=0) as out:
        while chunk:
            try:
                out.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    return filler


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    wait_for(predicate, timeout, what)


def now() -> float:
    return time.time()
