"""The gateway store on real etcd: its reads are the gRPC store's, made without gRPC; a
member without the gateway, or one that does not answer, is handled as gRPC would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from maomao_cli.config import EtcdSettings
from maomao_cli.errors import BadInput, EtcdUnreachable
from maomao_cli.keys import Keys
from maomao_cli.models import Tool
from maomao_cli.store.base import Store
from maomao_cli.store.etcd import EtcdStore
from maomao_cli.store.etcd_gateway import GatewayStore
from servers import EtcdCluster, free_port

pytestmark = pytest.mark.etcd


def settings_of(endpoints: str, timeout: float = 5.0) -> EtcdSettings:
    return EtcdSettings(endpoints=tuple(endpoints.split(",")), timeout=timeout)


class Grpc:
    """The gRPC store behind a gateway store, and whether it was ever needed."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.made: list[Store] = []

    def __call__(self) -> Store:
        store = EtcdStore(self.settings)
        self.made.append(store)
        return store


@pytest.fixture
def grpc_store(etcd: EtcdCluster) -> Iterator[EtcdStore]:
    store = EtcdStore(settings_of(etcd.endpoints))
    yield store
    store.close()


def test_reads_equal_grpcs_and_need_no_grpc(
    etcd: EtcdCluster, grpc_store: EtcdStore, prefix: str
) -> None:
    lease = grpc_store.grant_lease(60)
    grpc_store.put(f"{prefix}/empty", b"")
    grpc_store.put(f"{prefix}/leased", b"v", lease=lease.id)
    big = os.urandom(20_000)  # a page of these is answered in chunks
    for i in range(40):
        grpc_store.put(f"{prefix}/runs/{i:03d}", big if i % 2 else f"run {i}".encode())
    grpc = Grpc(settings_of(etcd.endpoints))
    gateway = GatewayStore(settings_of(etcd.endpoints), grpc)
    try:
        for key in (f"{prefix}/empty", f"{prefix}/leased", f"{prefix}/runs/007", f"{prefix}/no"):
            assert gateway.get(key) == grpc_store.get(key)
        assert gateway.scan(f"{prefix}/") == grpc_store.scan(f"{prefix}/")
        for kwargs in ({}, {"descending": True, "limit": 5}, {"keys_only": True, "limit": 3}):
            mine = gateway.scan_page(f"{prefix}/runs/", **kwargs)  # type: ignore[arg-type]
            theirs = grpc_store.scan_page(f"{prefix}/runs/", **kwargs)  # type: ignore[arg-type]
            assert mine == theirs
        assert gateway.count(f"{prefix}/runs/") == grpc_store.count(f"{prefix}/runs/") == 40
        mine_status, theirs_status = gateway.status(), grpc_store.status()
        # Everything but the raft index and the database's size, which move between the
        # two reads (other tests write to this etcd meanwhile).
        assert replace(mine_status, raft_index=0, db_size=0) == replace(
            theirs_status, raft_index=0, db_size=0
        )
        assert 0 < mine_status.raft_index <= theirs_status.raft_index
        assert mine_status.db_size > 0 and theirs_status.db_size > 0
        assert mine_status.quota is not None and mine_status.alarms == ()
        assert grpc.made == []
    finally:
        gateway.close()
        lease.revoke()


def test_writes_through_it_are_read_back_at_once(etcd: EtcdCluster, prefix: str) -> None:
    grpc = Grpc(settings_of(etcd.endpoints))
    gateway = GatewayStore(settings_of(etcd.endpoints), grpc)
    try:
        for i in range(5):
            gateway.put(f"{prefix}/k", str(i).encode())
            entry = gateway.get(f"{prefix}/k")  # linearizable: the write is seen
            assert entry is not None and entry.value == str(i).encode()
        gateway.put(f"{prefix}/l", b"x")
        assert gateway.delete(f"{prefix}/l") is True
        assert gateway.delete(f"{prefix}/l") is False
        assert gateway.delete_prefix(f"{prefix}/") == 1
        assert gateway.scan(f"{prefix}/") == []
        assert grpc.made == []  # puts, deletes: over the gateway
        assert gateway.create(f"{prefix}/c", b"1") is True
        assert gateway.create(f"{prefix}/c", b"2") is False
        assert len(grpc.made) == 1  # a compare-and-set: over gRPC
    finally:
        gateway.close()


def test_a_lease_through_it_holds_its_keys_until_revoked(etcd: EtcdCluster, prefix: str) -> None:
    grpc = Grpc(settings_of(etcd.endpoints))
    gateway = GatewayStore(settings_of(etcd.endpoints), grpc)
    try:
        lease = gateway.grant_lease(30)
        assert lease.ttl == 30
        gateway.put(f"{prefix}/held", b"1", lease=lease.id)
        assert lease.refresh() is True
        assert gateway.lease_of(lease.id, 30).refresh() is True
        lease.revoke()
        assert gateway.get(f"{prefix}/held") is None  # its key went with it
        assert lease.refresh() is False
        assert grpc.made == []
    finally:
        gateway.close()


def test_a_member_without_the_gateway_is_read_over_grpc(prefix: str) -> None:
    cluster = EtcdCluster(1, extra=["--enable-grpc-gateway=false"]).start()
    grpc = Grpc(settings_of(cluster.endpoints))
    gateway = GatewayStore(settings_of(cluster.endpoints), grpc)
    try:
        gateway.put(f"{prefix}/a", b"1")
        entry = gateway.get(f"{prefix}/a")
        assert entry is not None and entry.value == b"1"
        assert [e.key for e in gateway.scan(f"{prefix}/")] == [f"{prefix}/a"]
        assert gateway.status().version.startswith("3.")
        assert len(grpc.made) == 1
    finally:
        gateway.close()
        cluster.stop()


def test_a_member_that_accepts_and_never_answers_is_named_as_grpc_names_it() -> None:
    silent = socket.create_server(("127.0.0.1", 0), backlog=8)  # accepts, never reads
    endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        gateway = GatewayStore(settings_of(endpoint, timeout=1.0), Grpc(settings_of(endpoint)))
        with pytest.raises(EtcdUnreachable) as raised:
            gateway.get("/anything")
        assert str(raised.value) == f"etcd at {endpoint} did not answer within 1s"
        gateway.close()
    finally:
        silent.close()


def test_a_refused_first_endpoint_is_passed_over(
    etcd: EtcdCluster, grpc_store: EtcdStore, prefix: str
) -> None:
    grpc_store.put(f"{prefix}/a", b"1")
    endpoints = f"127.0.0.1:{free_port()},{etcd.endpoints}"
    grpc = Grpc(settings_of(endpoints))
    gateway = GatewayStore(settings_of(endpoints), grpc)
    try:
        entry = gateway.get(f"{prefix}/a")
        assert entry is not None and entry.value == b"1"
        assert grpc.made == []
    finally:
        gateway.close()


def test_a_read_command_imports_no_grpc(
    etcd: EtcdCluster, grpc_store: EtcdStore, prefix: str, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    grpc_store.put(keys.tool("dummy"), Tool(name="dummy", image="img").to_json())
    probe = (
        "import sys\n"
        "sys.argv = ['maomao', 'tools', '--json']\n"
        "from maomao_cli.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "heavy = sorted({'grpc', 'etcd3', 'google.protobuf', 'pydantic'} & set(sys.modules))\n"
        "print(code, heavy, file=sys.stderr)\n"
    )
    (tmp_path / "config.toml").write_text("")
    env = {
        **os.environ,
        "MAOMAO_CONFIG": str(tmp_path / "config.toml"),
        "MAOMAO_ETCD_ENDPOINTS": etcd.endpoints,
        "MAOMAO_ETCD_PREFIX": prefix,
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert [t["name"] for t in json.loads(done.stdout)] == ["dummy"], done.stderr
    assert done.stderr.strip().splitlines()[-1] == "0 []", done.stderr


def etcdctl(endpoints: str, *args: str) -> None:
    done = subprocess.run(
        ["etcdctl", "--endpoints", endpoints, "--command-timeout=5s", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=30,
    )
    assert done.returncode == 0, (args, done.stderr)


def test_a_user_reads_with_a_token_made_again_when_it_expires(prefix: str) -> None:
    cluster = EtcdCluster(1, extra=["--auth-token-ttl", "2"]).start()
    endpoints = cluster.endpoints
    for step in (
        ("user", "add", "root:rootpw"),
        ("user", "grant-role", "root", "root"),
        ("user", "add", "ana:anapw"),
        ("role", "add", "lab"),
        ("role", "grant-permission", "lab", "--prefix=true", "readwrite", prefix),
        ("user", "grant-role", "ana", "lab"),
        ("auth", "enable"),
    ):
        etcdctl(endpoints, *step)
    settings = replace(settings_of(endpoints), user="ana", password="anapw")
    grpc = Grpc(settings)
    gateway = GatewayStore(settings, grpc)
    wrong = GatewayStore(
        replace(settings, password="nope"), Grpc(replace(settings, password="nope"))
    )
    try:
        etcdctl(endpoints, "--user", "root:rootpw", "put", f"{prefix}/a", "1")
        entry = gateway.get(f"{prefix}/a")
        assert entry is not None and entry.value == b"1"
        time.sleep(4)  # unused this long, the token is gone
        assert gateway.count(f"{prefix}/") == 1
        assert grpc.made == []
        with pytest.raises(BadInput, match="refused the credentials"):  # said by gRPC
            wrong.get(f"{prefix}/a")
    finally:
        gateway.close()
        wrong.close()
        cluster.stop()
