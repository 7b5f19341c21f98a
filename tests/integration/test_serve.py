"""`maomao serve` against a real etcd: the 2019 curl commands, the v1 API, the guards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Env, make_env
from gitservers import git_daemon, git_http, git_root, seed_repo  # noqa: F401  (fixtures)
from maomao_cli.config import EtcdSettings, parse_endpoints
from maomao_cli.keys import Keys
from maomao_cli.models import FINAL_STATUSES, Run, Schedule, Spike, Tool
from maomao_cli.store.etcd import EtcdStore
from servers import EtcdCluster, free_port, port_open, wait_for

pytestmark = pytest.mark.etcd

NO_DOCKER = "unix:///nonexistent/maomao-test-docker.sock"  # so runs fail fast, with no engine


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.stdout.read() if self.proc.stdout else ""


def start_server(env: Env, *args: str) -> Server:
    port = free_port()
    env.vars.setdefault("MAOMAO_DOCKER_HOST", NO_DOCKER)
    proc = env.popen("serve", "--port", str(port), *args)
    server = Server(f"http://127.0.0.1:{port}", proc)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"maomao serve exited {proc.returncode}: {server.stop()}")
        return port_open(port)

    wait_for(ready, 30, "maomao serve")
    return server


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    started = start_server(env)
    yield started
    started.stop()


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
    json_header = ("-H", "Content-Type: application/json")

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

    for frequency, cron in (("daily", "0 0 * * *"), ("weekly", "0 0 * * 0")):
        status, body = curl(
            "-X", "POST", *json_header,
            "-d", f'{{"name": "dummy", "dataset": "dummy", "cron": true, "frequency": "{frequency}"}}',
            f"{server.url}/run",
        )  # fmt: skip
        assert status == 200, body
        assert body["schedule"]["cron"] == cron
        result = cli_env.run("run", "dummy", f"--{frequency}")
        assert result.code == 0, result.err
        http_schedule = Schedule.from_json(store.get(keys.schedule("dummy")).value)  # type: ignore[union-attr]
        cli_schedule = Schedule.from_json(store.get(cli_keys.schedule("dummy")).value)  # type: ignore[union-attr]
        assert http_schedule.cron == cron
        assert without(http_schedule.to_dict(), "created") == without(
            cli_schedule.to_dict(), "created"
        )

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

    status, tools = curl(f"{server.url}/regtools")
    assert status == 200 and [t["name"] for t in tools] == ["dummy"]
    store.delete_prefix(cli_prefix + "/")


def test_v1_round_trip(server: Server, store: EtcdStore, prefix: str) -> None:
    keys = Keys(prefix)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        made = client.post("/v1/tools", json={"name": "probe", "image": "alpine:3.19"})
        assert made.status_code == 201, made.text
        assert client.get("/v1/tools/probe").json()["image"] == "alpine:3.19"
        scheduled = client.post(
            "/v1/schedules",
            json={"tool": "probe", "cron": "*/5 * * * *", "timezone": "Europe/Paris"},
        )
        assert scheduled.status_code == 201, scheduled.text
        shown = client.get("/v1/schedules/probe").json()
        assert shown["timezone"] == "Europe/Paris" and len(shown["next_fires"]) == 5
        spike = Spike(
            tool="probe", sortable="2024-01-02", value=9.0, baseline=1.0, deviation=8.0,
            deviation_pct=800.0, score=5.0, direction="up",
        )  # fmt: skip
        store.put(keys.spike("probe", "2024-01-02"), spike.to_json())
        assert client.get("/v1/spikes", params={"tool": "probe"}).json()[0]["value"] == 9.0
        assert client.get("/v1/spikes/probe/2024-01-02").json()["score"] == 5.0
        assert client.get("/v1/members").status_code == 200
        missing = client.get("/v1/runs/nope")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
        assert client.delete("/v1/schedules/probe").status_code == 200
        assert store.get(keys.schedule("probe")) is None
        assert client.delete("/v1/tools/probe").status_code == 200
        assert client.get("/v1/tools/probe").status_code == 404


def test_bad_requests_get_4xx_with_a_message_and_write_nothing(
    server: Server, store: EtcdStore, prefix: str
) -> None:
    oversized = json.dumps({"name": "big", "url": "x" * 2_000_000})
    cases: list[tuple[str, str, bytes | str, int]] = [
        ("POST", "/register", '{"name": "dummy", "url": ', 400),  # malformed JSON
        ("POST", "/register", "[1, 2]", 422),
        ("POST", "/register", '{"name": 5, "url": "img"}', 422),  # wrong type
        ("POST", "/register", '{"name": "dummy"}', 422),  # missing field
        ("POST", "/register", '{"name": "Bad Name", "url": "img"}', 400),  # service rule
        ("POST", "/register", '{"name": "dummy", "url": "NOT AN IMAGE"}', 400),
        ("POST", "/run", '{"name": "dummy", "cron": "yes"}', 422),
        ("POST", "/run", '{"name": "ghost", "cron": true, "frequency": "daily"}', 404),
        ("POST", "/run", '{"name": "dummy", "cron": true, "frequency": "monthly"}', 422),
        ("POST", "/regdata", '{"name": "d", "url": "not a url"}', 400),
        ("POST", "/v1/tools", '{"name": "dummy", "image": "img", "pids": "12"}', 422),
        ("POST", "/v1/tools", '{"name": "dummy", "image": "img", "surprise": 1}', 422),
        ("POST", "/v1/schedules", '{"tool": "dummy", "cron": "61 * * * *"}', 400),
        ("POST", "/v1/datasets", '{"name": "d", "url": "https://x/y", "depth": 0}', 400),
        ("POST", "/register", oversized, 413),
        ("GET", "/v1/runs?limit=0", b"", 422),
        ("GET", "/no/such/route", b"", 404),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path, body, expected in cases:
            response = client.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == expected, (path, body[:80], response.text)
            error = response.json()["error"]
            assert error["message"] and "Traceback" not in response.text, response.text
    assert store.count(prefix + "/") == 0


def test_non_loopback_needs_a_token_and_every_route_checks_it(env: Env) -> None:
    refused = env.run("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.code == 2
    assert len(refused.err.strip().splitlines()) == 1 and "token" in refused.err

    token = "s3cret-token-for-tests"
    env.vars["MAOMAO_SERVE_TOKEN"] = token
    server = start_server(env, "--host", "0.0.0.0")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            authed = {"Authorization": f"Bearer {token}"}
            schema = client.get("/openapi.json", headers=authed).json()
            routes = [
                (method.upper(), path.replace("{name}", "x").replace("{run_id}", "x")
                 .replace("{tool}", "x").replace("{sortable}", "x"))
                for path, ops in schema["paths"].items()
                for method in ops
            ] + [("GET", "/openapi.json"), ("GET", "/nothing-here")]  # fmt: skip
            assert len(routes) > 20
            for method, path in routes:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                    response = client.request(method, path, headers=headers, json={"name": "x"})
                    assert response.status_code == 401, (method, path, headers)
                    assert response.json()["error"]["code"] == "unauthorized"
            assert client.get("/v1/tools", headers=authed).status_code == 200
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_events_stream_run_changes_and_spikes(
    server: Server, store: EtcdStore, prefix: str
) -> None:
    keys = Keys(prefix)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/register", json={"name": "dummy", "url": "img"}).status_code == 200
        with client.stream("GET", "/v1/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines).startswith(":")  # the stream is open: the watches are set
            started = client.post("/v1/runs", json={"tool": "dummy"})
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            spike = Spike(
                tool="dummy", sortable="2024-05-01", value=3.0, baseline=1.0, deviation=2.0,
                deviation_pct=200.0, score=4.0, direction="up", run_id=run_id,
            )  # fmt: skip
            store.put(keys.spike("dummy", "2024-05-01"), spike.to_json())
            seen: list[tuple[str, dict[str, Any]]] = []
            kind = ""
            for line in lines:
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((kind, json.loads(line.removeprefix("data: "))))
                statuses = [d["status"] for k, d in seen if k == "run" and d["id"] == run_id]
                if "failed" in statuses and any(k == "spike" for k, _ in seen):
                    break
    assert statuses == ["running", "failed"]  # one event per status change
    assert [d["sortable"] for k, d in seen if k == "spike"] == ["2024-05-01"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_schema_break(
    server: Server, store: EtcdStore, tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    proc = subprocess.run(
        [
            str(st), "run", f"{server.url}/openapi.json",
            "--max-examples", "50",
            "--seed", "7",
            "--request-timeout", "20",
            "--checks", "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            # Run-now starts containers and the event stream never ends: both tested above.
            "--exclude-path", "/run",
            "--exclude-path", "/v1/events",
            "--exclude-operation-id", "create_run_v1_runs_post",
            "--continue-on-failure",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,
    )  # fmt: skip
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report[-4000:]
    assert " passed" in report and "failed" not in report.split("SUMMARY")[-1], report[-2000:]


def test_retrieve_clones_the_dataset_once(
    server: Server, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seed = request.getfixturevalue("seed_repo")
    datasets = tmp_path / "data" / "datasets"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        added = client.post("/regdata", json={"name": "census", "url": seed.urls["git"]})
        assert added.status_code == 200, added.text

        cloned = client.post("/retrieve", json={"name": "census"})
        assert cloned.status_code == 200, cloned.text
        assert cloned.json() == {
            "status": "cloned",
            "name": "census",
            "path": str(datasets / "census"),
        }
        assert (datasets / "census" / "README.md").read_text() == "seed dataset\n"

        again = client.post("/retrieve", json={"name": "census"})
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "already-cloned"

        assert client.post("/retrieve", json={"name": "ghost"}).status_code == 404
        bad = client.post("/retrieve", json={"name": "../x"})
        assert bad.status_code in (400, 422), bad.text

        closed = f"git://127.0.0.1:{free_port()}/nothing.git"
        assert client.post("/regdata", json={"name": "gone", "url": closed}).status_code == 200
        failed = client.post("/retrieve", json={"name": "gone"})
        assert failed.status_code == 502, failed.text
        assert "connection refused" in failed.json()["error"]["message"]
    assert sorted(p.name for p in datasets.iterdir()) == ["census"]
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
