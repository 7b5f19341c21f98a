"""The etcd command line, the one place both the local etcd and a cluster member get it."""

from __future__ import annotations

from pathlib import Path

from maomao_cli.services.etcdprocess import EtcdFiles, EtcdSpec, ServerTls, argv, running_pid
from maomao_cli.services.localetcd import server_spec as local_spec

FILES = EtcdFiles(data=Path("/s/data"), pid=Path("/s/etcd.pid"), log=Path("/s/etcd.log"))


def flags(command: list[str]) -> dict[str, str | None]:
    """--flag value pairs (None for a flag without a value)."""
    found: dict[str, str | None] = {}
    for i, word in enumerate(command[1:], start=1):
        if word.startswith("--"):
            nxt = command[i + 1] if i + 1 < len(command) else "--"
            found[word] = None if nxt.startswith("--") else nxt
    return found


def test_the_local_etcd_is_a_plain_one_member_cluster_beside_its_port() -> None:
    command = argv("/usr/bin/etcd", FILES, local_spec("127.0.0.1:2379"))
    assert command[0] == "/usr/bin/etcd"
    assert flags(command) == {
        "--name": "local",
        "--data-dir": "/s/data",
        "--listen-client-urls": "http://127.0.0.1:2379",
        "--advertise-client-urls": "http://127.0.0.1:2379",
        "--listen-peer-urls": "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls": "http://127.0.0.1:2380",
        "--initial-cluster": "local=http://127.0.0.1:2380",
        "--auto-compaction-retention": "1",
    }


def test_the_local_etcd_on_the_last_port_peers_below_it() -> None:
    assert local_spec("[::1]:65535").peer_url == "http://[::1]:65534"


def test_a_member_with_tls_checks_every_client_and_peer() -> None:
    tls = ServerTls(
        ca=Path("/c/ca.crt"),
        server_cert=Path("/c/server.crt"),
        server_key=Path("/c/server.key"),
        peer_cert=Path("/c/peer.crt"),
        peer_key=Path("/c/peer.key"),
    )
    spec = EtcdSpec(
        name="a",
        endpoint="10.0.0.1:2379",
        client_url="https://10.0.0.1:2379",
        peer_url="https://10.0.0.1:2380",
        initial_cluster="a=https://10.0.0.1:2380",
        initial_state="existing",
        cluster_token="maomao-1",
        tls=tls,
    )
    found = flags(argv("etcd", FILES, spec))
    assert found["--initial-cluster-state"] == "existing"
    assert found["--initial-cluster-token"] == "maomao-1"
    assert found["--client-cert-auth"] is None and found["--peer-client-cert-auth"] is None
    assert found["--trusted-ca-file"] == found["--peer-trusted-ca-file"] == "/c/ca.crt"
    assert (found["--cert-file"], found["--peer-key-file"]) == ("/c/server.crt", "/c/peer.key")


def test_a_pid_file_of_nothing_running_is_no_etcd(tmp_path: Path) -> None:
    files = EtcdFiles(tmp_path / "data", tmp_path / "etcd.pid", tmp_path / "etcd.log")
    assert running_pid(files) is None
    files.pid.write_text("not a pid\n")
    assert running_pid(files) is None
