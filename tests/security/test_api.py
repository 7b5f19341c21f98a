"""`maomao serve` against a hostile web page and a greedy client: the Host header (DNS
rebinding), the token (always one), the run and stream limits, the schema refusing what
the services refuse, and another member's strings escaped in every response.

In-process (TestClient, or ASGI in the test's loop for event streams) on a memory store
and a scripted runner; one real `maomao serve` at the end for the Host header and the
token file.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.conftest import AUTH, TOKEN, Api, guarded, make_services, open_client
from api.streams import EventStream, events_until
from conftest import make_env
from fakes.git import FakeGit
from maomao_cli import config
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.api.app import create_app
from maomao_cli.api.guard import LOOPBACK_NAMES, allowed_hosts, guard, host_of
from maomao_cli.api.token import kept_token, token_path
from maomao_cli.cli.app import app as cli_app
from maomao_cli.composition import Services
from maomao_cli.errors import BadInput, ConfigError
from maomao_cli.models import Member, Run, Tool
from maomao_cli.services.registry import ToolSpec
from maomao_cli.store.memory import MemoryStore
from servers import free_port, port_open, wait_for

HOSTILE = "\x1b]0;owned\x07\x9b2J\u202egnp.exe\r\x7f"
RAW_BYTES = (b"\x1b", b"\x07", b"\r", b"\x7f", "\x9b".encode(), "\u202e".encode())


def services_with(tmp_path: Path, runner: ScriptedRunner, **changes: Any) -> Services:
    """The tests' services with [worker] and [serve] settings changed."""
    services = make_services(tmp_path, MemoryStore(), runner)
    settings = services.settings
    worker = replace(settings.worker, **{k: v for k, v in changes.items() if k == "max_parallel"})
    serve = replace(settings.serve, **{k: v for k, v in changes.items() if k != "max_parallel"})
    return Services(
        replace(settings, worker=worker, serve=serve),
        store=services.store,
        runner=runner,
        git=services.git,
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store, runner = MemoryStore(), ScriptedRunner()
    services = make_services(tmp_path, store, runner)
    with open_client(services) as client:
        assert isinstance(services.git, FakeGit)
        yield Api(services, store, runner, services.git, client)


# The Host header: DNS rebinding -------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8080",
        "LOCALHOST:1",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]",
        "[::1]:80",
    ],
)
def test_a_loopback_name_is_served(api: Api, host: str) -> None:
    response = api.client.get("/v1/tools", headers={"Host": host})
    assert response.status_code == 200, (host, response.text)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.nip.io",
        "localhost.evil.example",
        "0.0.0.0:8080",  # browsers send it for http://0.0.0.0, which reaches loopback
        "127.0.0.2",
        "localhost:abc",
        "[::1",
        "",
    ],
)
def test_another_host_is_refused_before_anything_else(api: Api, host: str) -> None:
    for path in ("/v1/tools", "/register", "/openapi.json", "/nothing-here"):
        response = api.client.post(path, headers={"Host": host, **AUTH}, json={"name": "x"})
        assert response.status_code == 421, (host, path, response.text)
        assert response.json()["error"]["code"] == "bad-host"
        assert "allowed_hosts" in response.json()["error"]["hint"]
        # Refused before the token too: a page that rebinds DNS has none to send.
        anonymous = api.client.get(path, headers={"Host": host, "Authorization": ""})
        assert anonymous.status_code == 421
    assert api.store.count("/") == 0


def test_exactly_one_host_header(tmp_path: Path) -> None:
    app = guarded(make_services(tmp_path, MemoryStore(), ScriptedRunner()))
    for hosts in ([], [b"localhost", b"evil.example"], [b"localhost", b"localhost"]):
        status, body = asyncio.run(asgi_get(app, [(b"host", h) for h in hosts]))
        assert status == 400 and body["error"]["code"] == "bad-host", (hosts, body)


async def asgi_get(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/v1/tools", "raw_path": b"/v1/tools", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80),
        "headers": [*headers, (b"authorization", f"Bearer {TOKEN}".encode())],
    }  # fmt: skip
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_allowed_hosts_follow_the_address_served() -> None:
    assert allowed_hosts("127.0.0.1") == LOOPBACK_NAMES
    assert allowed_hosts("127.0.0.5") == LOOPBACK_NAMES | {"127.0.0.5"}
    assert allowed_hosts("::1") == LOOPBACK_NAMES
    assert allowed_hosts("0.0.0.0", ["Maomao.Example.org"]) == LOOPBACK_NAMES | {
        "maomao.example.org"
    }
    assert allowed_hosts("192.0.2.7") == {"192.0.2.7"}
    assert allowed_hosts("2001:db8::7") == {"[2001:db8::7]"}
    assert allowed_hosts("maomao.example.org", ["alias.example.org"]) == {
        "maomao.example.org",
        "alias.example.org",
    }
    assert [host_of(h) for h in ("a:1", "[::1]:2", "a:", "A", "a:x", "[::1]x", ":1")] == [
        "a", "[::1]", "a", "a", None, None, None,
    ]  # fmt: skip


def test_allowed_hosts_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[serve]\nallowed_hosts = ["maomao.example.org"]\nmax_streams = 3\n')
    settings = config.load(str(path), env={})
    assert settings.serve.allowed_hosts == ("maomao.example.org",)
    assert settings.serve.max_streams == 3
    for bad in ('"maomao.example.org"', '["a b"]', '["a/b"]', '[""]', "[1]"):
        path.write_text(f"[serve]\nallowed_hosts = {bad}\n")
        with pytest.raises(ConfigError, match=r"\[serve\] allowed_hosts"):
            config.load(str(path), env={})
    path.write_text("[serve]\nmax_streams = 0\n")
    with pytest.raises(ConfigError, match="max_streams must be at least 1"):
        config.load(str(path), env={})


# The token: always one ----------------------------------------------------------------


def test_the_api_cannot_be_served_without_a_token(tmp_path: Path) -> None:
    app = create_app(make_services(tmp_path, MemoryStore(), ScriptedRunner()))
    with pytest.raises(ValueError, match="needs a token"):
        guard(app, max_body=10, token="", hosts=LOOPBACK_NAMES)


def test_the_2019_routes_need_the_token(tmp_path: Path) -> None:
    services = make_services(tmp_path, MemoryStore(), ScriptedRunner())
    with open_client(services, token=TOKEN) as client:
        for method, path in [
            ("POST", "/register"), ("POST", "/run"), ("POST", "/regdata"),
            ("POST", "/retrieve"), ("GET", "/regtools"), ("GET", "/datasets"),
        ]:  # fmt: skip
            response = client.request(method, path, json={"name": "x", "url": "img"})
            assert response.status_code == 401, (path, response.text)
            authed = client.request(method, path, json={"name": "x"}, headers=AUTH)
            assert authed.status_code != 401, path
    assert services.store.count("/") == 0


def test_a_token_is_made_once_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = kept_token(state)
    assert first.created and first.path == state / "api-token"
    info = first.path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    assert first.path.read_text() == first.token + "\n" and len(first.token) >= 40
    again = kept_token(state)
    assert (again.token, again.created) == (first.token, False)


def sentinel(tmp_path: Path) -> Path:
    target = tmp_path / "sentinel"
    target.write_text("host secret\n")
    target.chmod(0o600)
    return target


def test_a_link_at_the_token_path_is_not_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    target = sentinel(tmp_path)
    token_path(state).symlink_to(target)
    with pytest.raises(BadInput, match="cannot be read"):
        kept_token(state)
    assert target.read_text() == "host secret\n"  # neither read as a token nor written
    dangling = tmp_path / "state2"
    dangling.mkdir()
    token_path(dangling).symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(BadInput):
        kept_token(dangling)
    assert not (tmp_path / "created-through-the-link").exists()


def test_a_token_file_others_can_read_or_no_file_is_refused(tmp_path: Path) -> None:
    def readable(path: Path) -> None:
        path.write_text("tok\n")
        path.chmod(0o644)

    def empty(path: Path) -> None:
        path.write_text("")
        path.chmod(0o600)

    def fifo(path: Path) -> None:
        os.mkfifo(path, 0o600)  # a plain open would block: it must not

    cases: dict[str, Callable[[Path], None]] = {
        "readable": readable,
        "empty": empty,
        "directory": Path.mkdir,
        "fifo": fifo,
    }
    for name, make in cases.items():
        state = tmp_path / name
        state.mkdir()
        make(token_path(state))
        with pytest.raises(BadInput) as caught:
            kept_token(state)
        assert "api-token" in caught.value.message and caught.value.hint, name


def test_serve_refuses_to_start_on_a_planted_token_link(tmp_path: Path) -> None:
    services = make_services(tmp_path, MemoryStore(), ScriptedRunner())
    state = services.settings.data.state_path
    state.mkdir(parents=True)
    token_path(state).symlink_to(sentinel(tmp_path))
    result = CliRunner().invoke(cli_app, ["serve", "--port", "0"], obj=services)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "api-token" in result.stderr


# Runs and streams: bounded --------------------------------------------------------------


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[tuple[Services, ScriptedRunner]]:
    runner = ScriptedRunner(block=True)
    services = services_with(tmp_path, runner, max_parallel=3)
    services.registry.register_tool(ToolSpec(name="probe", image="img"))
    yield services, runner
    runner.release()


def test_runs_beyond_max_parallel_get_429(blocked: tuple[Services, ScriptedRunner]) -> None:
    services, runner = blocked
    with open_client(services) as client:

        def start(i: int) -> Any:
            if i % 2:
                return client.post("/v1/runs", json={"tool": "probe"})
            return client.post("/run", json={"name": "probe", "cron": False})

        with ThreadPoolExecutor(8) as pool:  # 40 at once, as in the attack
            answers = list(pool.map(start, range(40)))
        accepted = [a for a in answers if a.status_code == 202]
        refused = [a for a in answers if a.status_code == 429]
        assert len(accepted) == 3 and len(refused) == 37, [a.status_code for a in answers]
        for answer in refused:
            assert answer.headers["retry-after"] == "10"
            error = answer.json()["error"]
            assert error["code"] == "too-many-runs" and "max_parallel (3)" in error["message"]
        assert runner.running == 3 and runner.max_running == 3
        runner.release()
        wait_for(lambda: runner.running == 0, 30, "the runs")
        wait_for(
            lambda: client.post("/v1/runs", json={"tool": "probe"}).status_code == 202,
            30,
            "a free slot",
        )


def test_runs_share_the_limit_with_the_members_worker(
    blocked: tuple[Services, ScriptedRunner],
) -> None:
    services, _ = blocked
    worker = Member(name="member-a", host="h", version="1", started=1.0, running=2)
    services.store.put(services.keys.member("member-a"), worker.to_json())
    other = Member(name="member-b", host="h", version="1", started=1.0, running=9)
    services.store.put(services.keys.member("member-b"), other.to_json())  # not this member
    with open_client(services) as client:
        assert client.post("/v1/runs", json={"tool": "probe"}).status_code == 202
        busy = client.post("/v1/runs", json={"tool": "probe"})
        assert busy.status_code == 429, busy.text
        assert "3 runs are running on member 'member-a'" in busy.json()["error"]["message"]


def test_event_streams_are_capped_and_a_slot_comes_back(tmp_path: Path) -> None:
    services = services_with(tmp_path, ScriptedRunner(), max_streams=2)
    app = create_app(services)
    slots = app.state.stream_slots

    async def scenario() -> None:
        first, second = EventStream(app), EventStream(app)
        assert (await first.start())["status"] == 200
        assert (await second.start())["status"] == 200
        third = EventStream(app)
        refused = await third.start()
        assert refused["status"] == 503
        assert dict(refused["headers"])[b"retry-after"] == b"10"
        error = json.loads(await third.body())["error"]
        assert error["code"] == "too-many-streams" and "max_streams" in error["message"]
        await first.close()  # the client goes away: its slot comes back at once
        assert slots.open == 1
        fourth = EventStream(app)
        assert (await fourth.start())["status"] == 200
        await second.close()
        await fourth.close()
        await third.close()

    asyncio.run(scenario())
    assert slots.open == 0


def test_a_client_gone_before_its_stream_started_gives_its_slot_back(tmp_path: Path) -> None:
    services = services_with(tmp_path, ScriptedRunner(), max_streams=1)
    app = create_app(services)

    async def scenario() -> None:
        for _ in range(3):
            stream = EventStream(app)
            await stream.close()  # gone at once: the stream ends whenever it began

    asyncio.run(scenario())
    assert app.state.stream_slots.open == 0


# The schema says what the services accept -------------------------------------------------


def test_empty_image_or_url_is_refused_by_the_schema(api: Api) -> None:
    for path, body, field in [
        ("/register", {"name": "x", "url": ""}, "url"),
        ("/regdata", {"name": "x", "url": ""}, "url"),
        ("/v1/tools", {"name": "x", "image": ""}, "image"),
        ("/v1/datasets", {"name": "x", "url": ""}, "url"),
    ]:
        response = api.client.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["message"].startswith(f"{field}: String should have")
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    for model, field in [
        ("LegacyRegister", "url"), ("LegacyDataset", "url"),
        ("ToolCreate", "image"), ("DatasetCreate", "url"),
    ]:  # fmt: skip
        assert schemas[model]["properties"][field]["minLength"] == 1, model
    assert api.store.count("/") == 0


def test_a_schedule_needs_exactly_one_of_cron_and_every(api: Api) -> None:
    api.services.registry.register_tool(ToolSpec(name="probe", image="img"))
    before = api.store.count("/")
    for body in (
        {"tool": "probe"},
        {"tool": "probe", "cron": None, "every": None},
        {"tool": "probe", "cron": "0 0 * * *", "every": "daily"},
    ):
        response = api.client.post("/v1/schedules", json=body)
        assert response.status_code == 422, (body, response.text)
        assert "exactly one of cron and every" in response.json()["error"]["message"]
    assert api.store.count("/") == before
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["ScheduleCreate"]
    assert [one["required"] for one in schema["oneOf"]] == [["cron"], ["every"]]
    assert (
        api.client.post("/v1/schedules", json={"tool": "probe", "every": "daily"}).status_code
        == 201
    )


def test_every_405_says_what_is_allowed(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert len(paths) > 10
    for path, operations in paths.items():
        concrete = path.replace("{run_id}", "x").replace("{sortable}", "x")
        concrete = concrete.replace("{name}", "x").replace("{tool}", "x")
        response = api.client.request("PATCH", concrete)
        assert response.status_code == 405, (path, response.text)
        assert response.json()["error"]["code"] == "method-not-allowed"
        allowed = set(response.headers["allow"].split(", "))
        assert allowed == {method.upper() for method in operations}, path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/v1/tools/%FF", "not valid UTF-8"),
        ("/v1/tools/a%C3", "not valid UTF-8"),
        ("/v1/tools/a%1Bb", "U+001B"),
        ("/v1/datasets/a%07", "U+0007"),
        ("/v1/runs/%E2%80%AEx", "U+202E"),
        ("/v1/spikes/probe/2024%0D", "U+000D"),
        ("/v1/members/%C2%9B", "U+009B"),
        ("/no/such/%00", "U+0000"),
    ],
)
def test_a_bad_path_is_bad_input(api: Api, path: str, why: str) -> None:
    for method in ("GET", "DELETE"):
        response = api.client.request(method, path)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "bad-input" and why in error["message"], error
        assert "\x1b" not in response.text
    assert api.store.count("/") == 0


# Another member's strings, escaped in every response ------------------------------------


def test_json_bodies_escape_what_a_terminal_acts_on(api: Api) -> None:
    tool = Tool(name="probe", image="img", author=HOSTILE, description="not utf-8 \udcff")
    api.store.put(api.keys.tool("probe"), tool.to_json())
    run = Run(
        id="r1", tool="probe", member=HOSTILE, status="failed", error=HOSTILE, log_tail=[HOSTILE]
    )
    api.store.put(api.keys.run("r1"), run.to_json())
    for path in ("/v1/tools", "/v1/tools/probe", "/regtools", "/v1/runs", "/v1/runs/r1"):
        response = api.client.get(path)
        assert response.status_code == 200, (path, response.text)
        for raw in RAW_BYTES:
            assert raw not in response.content, (path, raw)
    assert api.client.get("/v1/tools/probe").json()["author"] == HOSTILE  # the same string
    assert api.client.get("/v1/tools/probe").json()["description"] == "not utf-8 \udcff"
    assert api.client.get("/v1/runs/r1").json()["log_tail"] == [HOSTILE]


def test_the_event_stream_escapes_too(tmp_path: Path) -> None:
    services = make_services(tmp_path, MemoryStore(), ScriptedRunner())
    app = create_app(services)

    async def scenario() -> list[tuple[str, str, dict[str, Any]]]:
        stream = EventStream(app)
        await stream.start()
        run = Run(id="r1", tool="probe", member="m", status="failed", error=HOSTILE)
        services.store.put(services.keys.run("r1"), run.to_json())
        raw: list[str] = []

        async def record_lines() -> list[tuple[str, str, dict[str, Any]]]:
            original = stream.lines

            async def lines() -> Any:
                async for line in original():
                    raw.append(line)
                    yield line

            stream.lines = lines  # type: ignore[method-assign]
            return await events_until(stream, lambda seen: bool(seen))

        seen = await record_lines()
        await stream.close()
        for line in raw:
            for char in HOSTILE:
                if char.isprintable():
                    continue
                assert char not in line, (repr(char), line)
        return seen

    seen = asyncio.run(scenario())
    assert seen[0][2]["error"] == HOSTILE


# One real `maomao serve` ------------------------------------------------------------------


def request(port: int, path: str, host: str, token: str | None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host, **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def start_serve(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    # No etcd runs: the Host header and the token are checked before any route.
    env = make_env(tmp_path, "127.0.0.1:9", "/maomao-sec")
    proc = env.popen("serve", "--port", str(port))

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"maomao serve exited {proc.returncode}: {stop(proc)}")
        return port_open(port)

    wait_for(ready, 60, "maomao serve")
    return proc


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.stdout is not None
    with proc.stdout:
        return proc.stdout.read()


@pytest.mark.timeout(180)
def test_maomao_serve_checks_the_host_and_keeps_its_token_owner_only(tmp_path: Path) -> None:
    port = free_port()
    token_file = tmp_path / "state" / "api-token"
    proc = start_serve(tmp_path, port)
    try:
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        status, body = request(port, "/openapi.json", f"evil.example:{port}", token)
        assert (status, body["error"]["code"]) == (421, "bad-host")
        status, body = request(port, "/regtools", f"127.0.0.1:{port}", None)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        status, body = request(port, "/openapi.json", f"localhost:{port}", "wrong")
        assert status == 401
        status, body = request(port, "/openapi.json", f"localhost:{port}", token)
        assert status == 200 and body["info"]["title"] == "maomao"
    finally:
        output = stop(proc)
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "token" in line]
    assert lines == [
        f"maomao serve: bearer token created in {token_file} "
        f"(send Authorization: Bearer $(cat {token_file}))",
        f"maomao serve: http://127.0.0.1:{port} (bearer token required)",
    ], output

    proc = start_serve(tmp_path, port)  # the next start reads the same token
    try:
        status, _ = request(port, "/openapi.json", f"127.0.0.1:{port}", token)
        assert status == 200
    finally:
        output = stop(proc)
    assert f"bearer token read from {token_file}" in output, output
