"""A local single-node etcd for one machine, running in the background.

Its data lives under <statedir>/etcd so it survives restarts; its pid and log sit
beside it. It listens on the first configured endpoint, which must be loopback.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import BadInput, MaomaoError, Unavailable
from ..processes import pid_alive, terminate

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class LocalEtcd:
    endpoint: str
    data_dir: Path
    pid_file: Path
    log_file: Path
    pid: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    root = settings.data.state_path / "etcd"
    return root / "data", root / "etcd.pid", root / "etcd.log"


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def inspect(settings: Settings) -> LocalEtcd:
    data_dir, pid_file, log_file = _paths(settings)
    pid: int | None = None
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and not pid_alive(pid, b"etcd"):
        pid = None
    return LocalEtcd(settings.etcd.endpoints[0], data_dir, pid_file, log_file, pid)


def start(settings: Settings, *, wait: float = 20.0) -> tuple[LocalEtcd, bool]:
    """Start etcd unless it already runs; returns its state and whether it was started."""
    current = inspect(settings)
    if current.running:
        return current, False
    host, _, port_text = current.endpoint.rpartition(":")
    if host.strip("[]") not in {h.strip("[]") for h in LOOPBACK}:
        raise BadInput(
            f"the local etcd listens on loopback only, but the first endpoint is {current.endpoint}",
            hint="set [etcd] endpoints to 127.0.0.1:PORT, or use `maomao etcd init` for a shared cluster",
        )
    port = int(port_text)
    if _port_open(host.strip("[]"), port):
        raise BadInput(
            f"something already listens on {current.endpoint}",
            hint="if it is an etcd, use it as it is; otherwise pick another port with --etcd 127.0.0.1:PORT",
        )
    binary = shutil.which("etcd")
    if binary is None:
        raise Unavailable(
            "the etcd binary is not on PATH",
            hint="install it: apt-get install -y etcd-server etcd-client",
        )
    current.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    peer_port = port + 1 if port < 65535 else port - 1
    url = f"http://{host}:{port}"
    peer = f"http://{host}:{peer_port}"
    with open(current.log_file, "ab") as log:
        process = subprocess.Popen(
            [
                binary,
                "--name",
                "local",
                "--data-dir",
                str(current.data_dir),
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"local={peer}",
                "--auto-compaction-retention",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # keeps running after this command exits
        )
    current.pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = current.log_file.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise MaomaoError(
                f"etcd exited at start (status {process.returncode}): {tail[0][:200]}",
                hint=f"see {current.log_file}",
            )
        if _port_open(host.strip("[]"), port):
            return inspect(settings), True
        time.sleep(0.1)
    raise Unavailable(
        f"etcd did not listen on {current.endpoint} within {wait:g}s",
        hint=f"see {current.log_file}",
    )


def stop(settings: Settings, *, wait: float = 15.0) -> LocalEtcd | None:
    """Stop the local etcd; returns what was stopped, None if it was not running."""
    current = inspect(settings)
    if current.pid is None:
        return None
    terminate(current.pid, b"etcd", wait)
    current.pid_file.unlink(missing_ok=True)
    return current
