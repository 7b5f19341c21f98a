"""An etcd server this machine runs in the background: its command line, starting it and
waiting until its client port listens, its pid file, stopping it.

Both the local single-node etcd (services/localetcd.py) and this machine's cluster member
(services/cluster) run etcd through here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..errors import MaomaoError, Unavailable
from ..frozen import frozen
from ..processes import pid_alive, terminate


@frozen
class EtcdFiles:
    """Where one etcd keeps its data, its pid and its log."""

    data: Path
    pid: Path
    log: Path


@frozen
class ServerTls:
    """The certificates an etcd serves and dials its peers with, and the CA it trusts."""

    ca: Path
    server_cert: Path
    server_key: Path
    peer_cert: Path
    peer_key: Path


@frozen
class EtcdSpec:
    """What one etcd server is: its name, URLs and cluster bootstrap."""

    name: str
    endpoint: str  # host:port of client_url, where this machine waits for it to listen
    client_url: str
    peer_url: str
    initial_cluster: str
    initial_state: str | None = None  # etcd's default: "new"
    cluster_token: str | None = None
    tls: ServerTls | None = None


def etcd_binary() -> str:
    binary = shutil.which("etcd")
    if binary is None:
        raise Unavailable(
            "the etcd binary is not on PATH",
            hint="install it: apt-get install -y etcd-server etcd-client",
        )
    return binary


def argv(binary: str, files: EtcdFiles, spec: EtcdSpec) -> list[str]:
    command = [
        binary,
        "--name", spec.name,
        "--data-dir", str(files.data),
        "--listen-client-urls", spec.client_url,
        "--advertise-client-urls", spec.client_url,
        "--listen-peer-urls", spec.peer_url,
        "--initial-advertise-peer-urls", spec.peer_url,
        "--initial-cluster", spec.initial_cluster,
    ]  # fmt: skip
    if spec.initial_state is not None:
        command += ["--initial-cluster-state", spec.initial_state]
    if spec.cluster_token is not None:
        command += ["--initial-cluster-token", spec.cluster_token]
    command += ["--auto-compaction-retention", "1"]
    if spec.tls is not None:
        command += [
            "--cert-file", str(spec.tls.server_cert),
            "--key-file", str(spec.tls.server_key),
            "--client-cert-auth",
            "--trusted-ca-file", str(spec.tls.ca),
            "--peer-cert-file", str(spec.tls.peer_cert),
            "--peer-key-file", str(spec.tls.peer_key),
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file", str(spec.tls.ca),
        ]  # fmt: skip
    return command


def port_open(endpoint: str) -> bool:
    """Does something accept connections on host:port (IPv6 hosts in brackets)?"""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, int(port))) == 0


def running_pid(files: EtcdFiles) -> int | None:
    """The pid of the etcd started with these files, if it still runs."""
    try:
        pid = int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid, b"etcd") else None


def start(files: EtcdFiles, spec: EtcdSpec, *, wait: float) -> int:
    """Start etcd in the background; returns its pid once its client port listens."""
    command = argv(etcd_binary(), files, spec)
    files.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.data.chmod(0o700)  # etcd refuses a data dir others can read
    with open(files.log, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command
        )
    files.pid.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            files.pid.unlink(missing_ok=True)
            tail = files.log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise MaomaoError(
                f"etcd exited at start (status {process.returncode}): {tail[0][-200:]}",
                hint=f"see {files.log}",
            )
        if port_open(spec.endpoint):
            # Detached on purpose (it outlives this command): say so, or Popen warns that
            # its child still runs when the object goes.
            process.returncode = 0
            return process.pid
        time.sleep(0.1)
    stop(files)
    raise Unavailable(
        f"etcd did not listen on {spec.endpoint} within {wait:g}s", hint=f"see {files.log}"
    )


def stop(files: EtcdFiles, wait: float = 15.0) -> int | None:
    """Stop the etcd started with these files; its pid, None when it was not running."""
    pid = running_pid(files)
    if pid is not None:
        terminate(pid, b"etcd", wait)
    files.pid.unlink(missing_ok=True)
    return pid
