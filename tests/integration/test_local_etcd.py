"""`maomao etcd start|stop`: a background single-node etcd whose data survives restarts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from pathlib import Path

import pytest

from conftest import Env, make_env
from servers import free_port, port_open

pytestmark = pytest.mark.etcd


def two_free_ports() -> int:
    """A client port whose neighbour (the peer port the local etcd takes) is free too."""
    while True:
        port = free_port()
        if port < 65535 and not port_open(port + 1):
            return port


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    # Reparented to an init that has not reaped it yet: dead all the same.
    return "\nState:\tZ" in status


def started_pid(out: str) -> int:
    match = re.search(r"pid (\d+)", out)
    assert match, out
    return int(match.group(1))


@pytest.mark.timeout(180)
def test_start_is_idempotent_keeps_data_and_stops(tmp_path: Path, prefix: str) -> None:
    port = two_free_ports()
    endpoint = f"127.0.0.1:{port}"
    (tmp_path / "config.toml").write_text(
        f'[etcd]\nendpoints = ["{endpoint}"]\n[data]\nimportdir = "{tmp_path / "data"}"\n'
    )
    env: Env = make_env(tmp_path, endpoint, prefix)
    del env.vars["MAOMAO_ETCD_ENDPOINTS"]  # the file alone says where the local etcd listens
    pids: list[int] = []
    try:
        first = env.run("etcd", "start")
        assert first.code == 0, first.err
        assert "started" in first.out and endpoint in first.out
        pids.append(started_pid(first.out))
        assert port_open(port)
        assert (tmp_path / "state" / "etcd" / "data").is_dir()

        second = env.run("etcd", "start")
        assert second.code == 0, second.err
        assert "already running" in second.out
        assert started_pid(second.out) == pids[0]

        assert env.run("register", "kept", "img").code == 0

        stopped = env.run("etcd", "stop")
        assert stopped.code == 0, stopped.err
        assert "stopped" in stopped.out
        assert gone(pids[0])
        down = env.run("tools", timeout=30)
        assert down.code == 1 and endpoint in down.err

        again = env.run("etcd", "start")
        assert again.code == 0, again.err
        pids.append(started_pid(again.out))
        tools = json.loads(env.run("tools", "--json").out)
        assert [t["name"] for t in tools] == ["kept"]

        final = env.run("etcd", "stop")
        assert final.code == 0 and gone(pids[-1])
        assert not port_open(port)
        nothing = env.run("etcd", "stop")
        assert nothing.code == 0 and "no local etcd" in nothing.err
    finally:
        env.run("etcd", "stop")
        for pid in pids:  # only the etcd processes this test started
            if not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_start_refuses_a_non_loopback_endpoint(tmp_path: Path, prefix: str) -> None:
    env = make_env(tmp_path, "192.0.2.1:2379", prefix)
    result = env.run("etcd", "start")
    assert result.code == 2
    assert "loopback" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "etcd" / "etcd.pid").exists()


def test_start_refuses_a_busy_port(tmp_path: Path, prefix: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        endpoint = f"127.0.0.1:{busy.getsockname()[1]}"
        env = make_env(tmp_path, endpoint, prefix)
        result = env.run("etcd", "start")
    assert result.code == 2
    assert "already listens" in result.err and endpoint in result.err
