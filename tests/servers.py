"""Real services for the tests: etcd and dockerd on loopback, started and stopped here."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# The tests' servers take their ports from this worker's slice (tests/parallel.py).
from parallel import free_port as free_port


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def start(self, initial_cluster: str, state: str = "new") -> None:
        with open(
            self.data_dir.parent / f"{self.name}.log", "ab"
        ) as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [
                    "etcd",
                    "--name",
                    self.name,
                    "--data-dir",
                    str(self.data_dir),
                    "--listen-client-urls",
                    f"http://{self.host}:{self.client_port}",
                    "--advertise-client-urls",
                    f"http://{self.host}:{self.client_port}",
                    "--listen-peer-urls",
                    self.peer_url,
                    "--initial-advertise-peer-urls",
                    self.peer_url,
                    "--initial-cluster",
                    initial_cluster,
                    "--initial-cluster-state",
                    state,
                    "--initial-cluster-token",
                    "maomao-test",
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class EtcdCluster:
    """One or three etcd members on free loopback ports with temporary data."""

    def __init__(self, size: int = 1, extra: list[str] | None = None) -> None:
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not installed: apt-get install -y etcd-server etcd-client")
        self.root = Path(tempfile.mkdtemp(prefix="maomao-etcd-"))
        self.members = [
            EtcdMember(f"m{i}", free_port(), free_port(), self.root / f"m{i}", extra=extra or [])
            for i in range(size)
        ]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def start(self) -> EtcdCluster:
        for member in self.members:
            member.start(self.initial_cluster)
        for member in self.members:
            wait_for(lambda m=member: self.healthy(m), 30, f"etcd {member.name}")
        return self

    def healthy(self, member: EtcdMember) -> bool:
        if not port_open(member.client_port, member.host):
            return False
        probe = subprocess.run(
            [
                "etcdctl",
                "--endpoints",
                member.endpoint,
                "--command-timeout=1s",
                "endpoint",
                "health",
            ],
            capture_output=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        return probe.returncode == 0

    def restart(self, member: EtcdMember) -> None:
        member.start(self.initial_cluster, state="existing")
        wait_for(lambda: self.healthy(member), 30, f"etcd {member.name}")

    def stop(self) -> None:
        for member in self.members:
            member.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class DockerDaemon:
    """A private dockerd on its own socket; tests never touch the host's engine."""

    def __init__(self) -> None:
        if shutil.which("dockerd") is None:
            raise RuntimeError("dockerd is not installed: apt-get install -y docker.io")
        # Short path: unix socket paths are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="mmd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> DockerDaemon:
        with open(self.root / "dockerd.log", "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [
                    "dockerd",
                    "--host",
                    self.host,
                    "--data-root",
                    str(self.root / "data"),
                    "--exec-root",
                    str(self.root / "exec"),
                    "--pidfile",
                    str(self.root / "docker.pid"),
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 60, "dockerd")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"dockerd exited; see {self.root / 'dockerd.log'}")
        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"200 OK" in sock.recv(1024)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
