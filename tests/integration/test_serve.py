"""`maomao serve` end to end: the process on a real etcd, called as the 2019 README does.

Everything else about the API runs in-process, in tests/api/."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import Env, make_env
from maomao_cli.config import EtcdSettings, parse_endpoints
from maomao_cli.keys import Keys
from maomao_cli.models import FINAL_STATUSES, Run, Schedule, Tool
from maomao_cli.store.etcd import EtcdStore
from servers import EtcdCluster, free_port, port_open, wait_for

pytestmark = pytest.mark.etcd

NO_DOCKER = "unix:///nonexistent/maomao-test-docker.sock"  # so runs fail fast, with no engine


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    token_file: Path

    @property
    def auth(self) -> tuple[str, str]:
        """curl's arguments for the token `maomao serve` made at its first start."""
        return ("-H", f"Authorization: Bearer {self.token_file.read_text().strip()}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is None:
            return ""
        with self.proc.stdout:
            return self.proc.stdout.read()


@pytest.fixture
def server(env: Env, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env.vars.setdefault("MAOMAO_DOCKER_HOST", NO_DOCKER)
    proc = env.popen("serve", "--port", str(port))
    started = Server(f"http://127.0.0.1:{port}", proc, tmp_path / "state" / "api-token")

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"maomao serve exited {proc.returncode}: {started.stop()}")
        return port_open(port)

    wait_for(ready, 30, "maomao serve")
    yield started
    output = started.stop()
    assert "Traceback" not in output, output


@pytest.fixture
def store(etcd: EtcdCluster, prefix: str) -> Iterator[EtcdStore]:
    opened = EtcdStore(EtcdSettings(endpoints=parse_endpoints(etcd.endpoints), prefix=prefix))
    yield opened
    opened.delete_prefix(prefix + "/")
    opened.close()


def curl(*args: str) -> tuple[int, Any]:
    """Run curl as the 2019 README does; returns (HTTP status, decoded JSON body)."""
    proc = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), json.loads(body)


def wait_final(store: EtcdStore, keys: Keys, run_id: str) -> Run:
    found: list[Run] = []

    def final() -> bool:
        entry = store.get(keys.run(run_id))
        if entry is None:
            return False
        run = Run.from_json(entry.value)
        found[:] = [run]
        return run.status in FINAL_STATUSES

    wait_for(final, 90, f"run {run_id}")
    return found[0]


def without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_2019_curl_commands_have_the_cli_effect(
    env: Env, server: Server, store: EtcdStore, prefix: str, tmp_path: Path, etcd: EtcdCluster
) -> None:
    keys = Keys(prefix)
    cli_prefix = prefix + "-cli"
    cli_env = make_env(tmp_path, etcd.endpoints, cli_prefix)
    cli_keys = Keys(cli_prefix)
    json_header = ("-H", "Content-Type: application/json", *server.auth)

    status, body = curl(
        "-X",
        "POST",
        *json_header,
        "-d",
        '{"name": "dummy", "url": "img"}',
        f"{server.url}/register",
    )
    assert (status, body["status"]) == (200, "registered"), body
    assert cli_env.run("register", "dummy", "img").code == 0
    http_tool = Tool.from_json(store.get(keys.tool("dummy")).value)  # type: ignore[union-attr]
    cli_tool = Tool.from_json(store.get(cli_keys.tool("dummy")).value)  # type: ignore[union-attr]
    assert without(http_tool.to_dict(), "created", "updated") == without(
        cli_tool.to_dict(), "created", "updated"
    )

    status, body = curl(
        "-X", "POST", *json_header,
        "-d", '{"name": "dummy", "dataset": "dummy", "cron": true, "frequency": "daily"}',
        f"{server.url}/run",
    )  # fmt: skip
    assert status == 200, body
    assert body["schedule"]["cron"] == "0 0 * * *"
    result = cli_env.run("run", "dummy", "--daily")
    assert result.code == 0, result.err
    http_schedule = Schedule.from_json(store.get(keys.schedule("dummy")).value)  # type: ignore[union-attr]
    cli_schedule = Schedule.from_json(store.get(cli_keys.schedule("dummy")).value)  # type: ignore[union-attr]
    assert without(http_schedule.to_dict(), "created") == without(cli_schedule.to_dict(), "created")

    status, body = curl(
        "-X", "POST", *json_header,
        "-d", '{"name": "dummy", "dataset": "dummy", "cron": false}',
        f"{server.url}/run",
    )  # fmt: skip
    assert status == 202, body
    run = wait_final(store, keys, body["run_id"])
    assert run.status == "failed"  # no Docker engine here: the image cannot be pulled
    assert run.tool == "dummy" and run.trigger == "manual"
    assert "Docker" in (run.error or "")

    status, tools = curl(*server.auth, f"{server.url}/regtools")
    assert status == 200 and [t["name"] for t in tools] == ["dummy"]
    status, tools = curl(*server.auth, f"{server.url}/v1/tools")
    assert status == 200 and [t["name"] for t in tools] == ["dummy"]
    store.delete_prefix(cli_prefix + "/")
