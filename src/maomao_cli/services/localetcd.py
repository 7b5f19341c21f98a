"""A local single-node etcd for one machine, running in the background.

Its data lives under <statedir>/etcd so it survives restarts; its pid and log sit
beside it. It listens on the first configured endpoint, which must be loopback.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import BadInput
from ..frozen import frozen
from . import etcdprocess
from .etcdprocess import EtcdFiles, EtcdSpec

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@frozen
class LocalEtcd:
    endpoint: str
    data_dir: Path
    pid_file: Path
    log_file: Path
    pid: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


def _files(settings: Settings) -> EtcdFiles:
    root = settings.data.state_path / "etcd"
    return EtcdFiles(data=root / "data", pid=root / "etcd.pid", log=root / "etcd.log")


def inspect(settings: Settings) -> LocalEtcd:
    files = _files(settings)
    pid = etcdprocess.running_pid(files)
    return LocalEtcd(settings.etcd.endpoints[0], files.data, files.pid, files.log, pid)


def server_spec(endpoint: str) -> EtcdSpec:
    """A one-member cluster on loopback, its peer port beside the client port."""
    host, _, port_text = endpoint.rpartition(":")
    if host.strip("[]") not in {h.strip("[]") for h in LOOPBACK}:
        raise BadInput(
            f"the local etcd listens on loopback only, but the first endpoint is {endpoint}",
            hint="set [etcd] endpoints to 127.0.0.1:PORT, or use `maomao etcd init` for a shared cluster",
        )
    port = int(port_text)
    peer_port = port + 1 if port < 65535 else port - 1
    peer = f"http://{host}:{peer_port}"
    return EtcdSpec(
        name="local",
        endpoint=endpoint,
        client_url=f"http://{host}:{port}",
        peer_url=peer,
        initial_cluster=f"local={peer}",
    )


def start(settings: Settings, *, wait: float = 20.0) -> tuple[LocalEtcd, bool]:
    """Start etcd unless it already runs; returns its state and whether it was started."""
    current = inspect(settings)
    if current.running:
        return current, False
    spec = server_spec(current.endpoint)
    if etcdprocess.port_open(current.endpoint):
        raise BadInput(
            f"something already listens on {current.endpoint}",
            hint="if it is an etcd, use it as it is; otherwise pick another port with --etcd 127.0.0.1:PORT",
        )
    etcdprocess.start(_files(settings), spec, wait=wait)
    return inspect(settings), True


def stop(settings: Settings, *, wait: float = 15.0) -> LocalEtcd | None:
    """Stop the local etcd; returns what was stopped, None if it was not running."""
    current = inspect(settings)
    if current.pid is None:
        return None
    etcdprocess.stop(_files(settings), wait)
    return current
