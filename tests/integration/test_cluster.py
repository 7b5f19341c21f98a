"""Three hosts, each in its own network namespace, found, join and leave one cluster.

The namespaces hang off a bridge that lives in a fourth namespace, so the test never
touches the machine's own network; everything it creates is removed by name and pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parallel import subnet

ROOT = Path(__file__).resolve().parents[2]
SUBNET = subnet("10.232", 77)  # 10.232.77 on gw0 (and without xdist), 10.232.78 on gw1...

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _namespaces_available() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "etcd", "etcdctl", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"mmprobe-{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Host:
    ns: str
    address: str
    name: str
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def cluster(self) -> Path:
        return self.state / "cluster"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:2379"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("MAOMAO_", "XDG_"))}
        return {
            **keep,
            "MAOMAO_CONFIG": str(self.root / "config.toml"),
            "MAOMAO_MEMBER": self.name,
            "HOME": str(self.root),
            "COLUMNS": "200",
            "PYTHONPATH": str(ROOT / "src"),
        }

    def maomao(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-m", "maomao_cli", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )

    def etcdctl(self, *args: str, endpoints: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "ip", "netns", "exec", self.ns, "etcdctl",
                "--endpoints", endpoints or self.endpoint,
                "--cacert", str(self.cluster / "ca.crt"),
                "--cert", str(self.cluster / "client.crt"),
                "--key", str(self.cluster / "client.key"),
                "--command-timeout=5s", *args,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "ETCDCTL_API": "3"},
            timeout=30,
        )  # fmt: skip


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Host]]:
    reason = _namespaces_available()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    bridge_ns = f"mm-{tag}-br"
    made: list[str] = []
    hosts: list[Host] = []
    try:
        for ns in (bridge_ns,):
            assert _ip("netns", "add", ns).returncode == 0
            made.append(ns)
        assert _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge").returncode == 0
        assert _ip("-n", bridge_ns, "link", "set", "br0", "up").returncode == 0
        for i in (1, 2, 3):
            ns = f"mm-{tag}-h{i}"
            assert _ip("netns", "add", ns).returncode == 0
            made.append(ns)
            veth = f"mm{tag}v{i}"
            created = _ip(
                "link", "add", veth, "netns", bridge_ns, "type", "veth",
                "peer", "name", "eth0", "netns", ns,
            )  # fmt: skip
            assert created.returncode == 0, created.stderr
            assert _ip("-n", bridge_ns, "link", "set", veth, "master", "br0", "up").returncode == 0
            assert _ip("-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0").returncode == 0
            assert _ip("-n", ns, "link", "set", "eth0", "up").returncode == 0
            assert _ip("-n", ns, "link", "set", "lo", "up").returncode == 0
            root = tmp_path / f"h{i}"
            root.mkdir()
            (root / "config.toml").write_text(
                f'[data]\nimportdir = "{root / "data"}"\nstatedir = "{root / "state"}"\n'
            )
            hosts.append(Host(ns, f"{SUBNET}.{i}", f"host{i}", root))
        yield hosts
    finally:
        for host in hosts:
            pid_file = host.cluster / "etcd.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
        for ns in made:
            # Only processes we started live in these namespaces.
            pids = _ip("netns", "pids", ns).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns)


def _members(host: Host, endpoints: str | None = None) -> list[dict[str, object]]:
    listed = host.etcdctl("member", "list", "-w", "json", endpoints=endpoints)
    assert listed.returncode == 0, listed.stderr
    members: list[dict[str, object]] = json.loads(listed.stdout)["members"]
    return members


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _wrong_token(tmp_path: Path) -> Path:
    key, crt = tmp_path / "other-ca.key", tmp_path / "other-ca.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(crt),
            "-days", "1", "-subj", "/CN=not the collaboration",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    token = tmp_path / "wrong-token.json"
    token.write_text(
        json.dumps(
            {"version": 1, "tls": True, "ca_cert": crt.read_text(), "ca_key": key.read_text()}
        )
    )
    return token


# `etcd status` exits by health (docs/cluster.md): a script's health check.
HEALTH_EXIT = {"healthy": 0, "degraded": 1, "no-quorum": 3}


def _status(host: Host) -> dict[str, object]:
    shown = host.maomao("etcd", "status", "--json")
    data: dict[str, object] = json.loads(shown.stdout)
    assert shown.returncode == HEALTH_EXIT[str(data["health"])], shown.stderr
    return data


@pytest.mark.timeout(600)
def test_found_join_fail_over_rejoin_and_leave(hosts: list[Host], tmp_path: Path) -> None:
    h1, h2, h3 = hosts

    founded = h1.maomao("etcd", "init", "--listen", h1.address, "--json")
    assert founded.returncode == 0, founded.stderr
    token = Path(json.loads(founded.stdout)["token_file"])
    assert oct(token.stat().st_mode & 0o777) == "0o600"

    joined = h2.maomao("etcd", "join", h1.endpoint, "--token", str(token))
    assert joined.returncode == 0, joined.stderr

    # A CA that does not match: refused at the handshake, nothing added.
    wrong = h3.maomao("etcd", "join", h1.endpoint, "--token", str(_wrong_token(tmp_path)))
    assert wrong.returncode != 0
    assert len(_error_lines(wrong.stderr)) == 1, wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert "TLS" in wrong.stderr
    # An endpoint nobody listens on: one line, nothing added.
    unreachable = h3.maomao("etcd", "join", f"{SUBNET}.99:2379", "--token", str(token))
    assert unreachable.returncode != 0
    assert len(_error_lines(unreachable.stderr)) == 1, unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert len(_members(h1)) == 2

    # Joining through the second member works as well as through the founder.
    joined = h3.maomao("etcd", "join", h2.endpoint, "--token", str(token))
    assert joined.returncode == 0, joined.stderr

    members = _members(h1)
    assert sorted(str(m["name"]) for m in members) == ["host1", "host2", "host3"]
    assert not any(m.get("isLearner") for m in members)

    status = _status(h3)
    assert status["voters"] == 3
    assert status["healthy_voters"] == 3
    assert status["fault_tolerance"] == 1
    # Workers on every host point at every member.
    assert set((h3.cluster / "endpoints").read_text().split()) == {h.endpoint for h in hosts}

    # The founder's etcd stops: the others keep the cluster writable.
    stopped = h1.maomao("etcd", "stop")
    assert stopped.returncode == 0, stopped.stderr
    others = f"{h2.endpoint},{h3.endpoint}"
    written = h2.etcdctl("put", "/maomao-test/cluster", "still-writable", endpoints=others)
    assert written.returncode == 0, written.stderr
    status = _status(h2)
    assert status["healthy_voters"] == 2
    assert status["fault_tolerance"] == 0
    assert status["health"] == "degraded"  # exit 1: quorum holds, a member is down
    # With one member down, a join would risk the quorum: refused without --force.
    refused = h1.maomao("etcd", "join", h2.endpoint, "--token", str(token))
    assert refused.returncode == 2

    # The founder comes back from its stored settings and catches up.
    restarted = h1.maomao("etcd", "start")
    assert restarted.returncode == 0, restarted.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _status(h1)["healthy_voters"] != 3:
        time.sleep(0.5)
    assert _status(h1)["fault_tolerance"] == 1
    read = h1.etcdctl("get", "/maomao-test/cluster", "--print-value-only")
    assert read.stdout.strip() == "still-writable"

    # One host leaves; the other two go on.
    left = h3.maomao("etcd", "leave")
    assert left.returncode == 0, left.stderr
    assert not (h3.cluster / "member.json").exists()
    assert sorted(str(m["name"]) for m in _members(h1)) == ["host1", "host2"]
    written = h1.etcdctl(
        "put", "/maomao-test/cluster", "two-left", endpoints=f"{h1.endpoint},{h2.endpoint}"
    )
    assert written.returncode == 0, written.stderr
    status = _status(h2)
    assert status["voters"] == 2
    assert status["healthy_voters"] == 2
