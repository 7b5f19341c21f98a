"""Per-tool limits (issue 15): every tool option is checked when the tool is registered,
alike through the CLI and the API; every container gets Docker's log rotation and a /tmp
in memory with a size cap; a tool's data directory has a size limit held before, during
and after each run, and a run refused by it starts no container and is not retried.

The first half runs in-process (memory store, scripted runner); the second against the
private dockerd and etcd of tests/conftest.py, with a tool that runs a shell script."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; httpx (a test extra) still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from conftest import Env, make_env
from fakes.git import FakeGit
from maomao_cli import config
from maomao_cli.adapters.container_defaults import host_config
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.api.app import create_app
from maomao_cli.api.guard import guard
from maomao_cli.cli.app import app as cli_app
from maomao_cli.composition import Services
from maomao_cli.config import DataSettings, DockerSettings, EtcdSettings, Settings, WorkerSettings
from maomao_cli.errors import BadInput, ConfigError
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Tool
from maomao_cli.ports import ContainerResult, ContainerSpec
from maomao_cli.services import datalimit
from maomao_cli.services.runs import RunService
from maomao_cli.store.memory import MemoryStore
from servers import DockerDaemon, EtcdCluster

KIB = 1024
LIMIT = 64 * KIB  # the small data limit of these tests
BIG = 200 * KIB  # what the tools write: more than LIMIT
REFUSED = "run refused before its container started"


# Every tool option, at register time, CLI and API alike ------------------------------


def in_process(tmp_path: Path) -> tuple[Services, MemoryStore]:
    store = MemoryStore()
    settings = Settings(
        etcd=EtcdSettings(prefix="/limits"),
        data=DataSettings(importdir=str(tmp_path / "data")),
        docker=DockerSettings(network="none"),
        worker=WorkerSettings(member="member-a"),
    )
    return Services(settings, store=store, runner=ScriptedRunner(), git=FakeGit()), store


def cli(services: Services, *args: str) -> tuple[int, str, str]:
    # The CLI's callback points the "maomao" logger at the runner's captured stderr.
    logger = logging.getLogger("maomao")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    try:
        result = CliRunner().invoke(cli_app, list(args), obj=services)
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    return result.exit_code, result.stdout, result.stderr


USER_RULE = "expected uid[:gid] (numbers 0 to 2147483646) or name[:group] matching"
PIDS_RULE = "must be a whole number from 1 to 32768"
TIMEOUT_RULE = "must be a number of seconds above 0 and at most 604800 (7 days)"
SIZE_RULE = "expected a size of at least 1 B, in bytes or with a unit b, k, m or g"

# (CLI option, its value, the API's field and value, the start of the one-line refusal)
BAD_OPTIONS: list[tuple[str, str, str, Any, str]] = [
    ("--user", "$(id)", "user", "$(id)", f"invalid user '$(id)': {USER_RULE}"),
    ("--user", "root\nid", "user", "root\nid", f"invalid user 'root\\nid': {USER_RULE}"),
    ("--user", "", "user", "", f"invalid user '': {USER_RULE}"),
    ("--user", "0:-1", "user", "0:-1", f"invalid user '0:-1': {USER_RULE}"),
    ("--memory", "99999999g", "memory", "99999999g", "invalid memory '99999999g': must be at most the host's memory"),
    ("--memory", "5m", "memory", "5m", "invalid memory '5m': Docker needs at least 6m"),
    ("--pids", str(10**15), "pids", 10**15, f"invalid pids {10**15}: {PIDS_RULE}"),
    ("--pids", "0", "pids", 0, f"invalid pids 0: {PIDS_RULE}"),
    ("--timeout", "1e300", "timeout", 1e300, f"invalid timeout 1e+300: {TIMEOUT_RULE}"),
    ("--timeout", "604801", "timeout", 604801.0, f"invalid timeout 604801.0: {TIMEOUT_RULE}"),
    ("--timeout", "0", "timeout", 0.0, f"invalid timeout 0.0: {TIMEOUT_RULE}"),
    ("--max-data", "0", "max_data", "0", f"invalid max data '0': {SIZE_RULE}"),
    ("--max-data", "lots", "max_data", "lots", f"invalid max data 'lots': {SIZE_RULE}"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("option", "text", "field", "value", "message"),
    BAD_OPTIONS,
    ids=[f"{option}={text!r}" for option, text, *_ in BAD_OPTIONS],
)
def test_a_bad_tool_option_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, option: str, text: str, field: str, value: Any, message: str
) -> None:
    services, store = in_process(tmp_path)

    code, out, err = cli(services, "register", "probe", "img", option, text)

    assert code == 2, (out, err)
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {message}")
    assert list(store.scan("/")) == []

    app = guard(
        create_app(services),
        max_body=services.settings.serve.max_body,
        token="t0ken",
        hosts=frozenset({"testserver"}),  # TestClient's Host
    )
    with TestClient(app, headers={"Authorization": "Bearer t0ken"}) as client:
        refused = client.post("/v1/tools", json={"name": "probe", "image": "img", field: value})
    assert refused.status_code == 400, refused.text
    assert line == f"error: {refused.json()['error']['message']}"
    assert list(store.scan("/")) == []


def test_good_options_are_stored_as_given(tmp_path: Path) -> None:
    services, _ = in_process(tmp_path)
    args = ["--user", "nobody:nogroup", "--memory", "64m", "--pids", "32768"]
    code, _, err = cli(services, "register", "probe", "img", *args, "--max-data", "500m")
    assert code == 0, err
    tool = services.registry.get_tool("probe")
    assert (tool.user, tool.memory, tool.pids, tool.max_data) == (
        "nobody:nogroup",
        "64m",
        32768,
        500 * 1024**2,
    )


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("[docker]\nlog_max_files = 0\n", ConfigError, "[docker] log_max_files must be at least 1"),
        ('[docker]\nlog_max_size = "lots"\n', BadInput, "invalid [docker] log_max_size 'lots'"),
        ('[docker]\nlog_max_size = "512b"\n', BadInput, "invalid [docker] log_max_size '512b'"),
        ("[docker]\nlog_max_size = 10\n", ConfigError, "[docker] log_max_size must be a string"),
        ("[data]\nmax_tool_bytes = -1\n", ConfigError, "[data] max_tool_bytes must be a whole"),
        ('[data]\nmax_tool_bytes = "1g"\n', ConfigError, "[data] max_tool_bytes must be a whole"),
    ],
)
def test_the_limits_config_is_checked_at_load(
    tmp_path: Path, text: str, error: type[Exception], message: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(error) as caught:
        config.load(str(path), env={})
    assert str(getattr(caught.value, "message", caught.value)).startswith(message)


def test_the_limits_config_defaults_and_overrides(tmp_path: Path) -> None:
    defaults = config.load(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert defaults.data.max_tool_bytes == 1024**3
    assert (defaults.docker.log_max_size, defaults.docker.log_max_files) == ("10m", 3)
    path = tmp_path / "config.toml"
    path.write_text(
        '[data]\nmax_tool_bytes = 0\n[docker]\nlog_max_size = "1k"\nlog_max_files = 1\n'
    )
    chosen = config.load(str(path), env={})
    assert (chosen.data.max_tool_bytes, chosen.docker.log_max_size) == (0, "1k")


# Every container: rotated logs and a capped /tmp -------------------------------------


def test_the_host_config_has_log_rotation_and_a_capped_tmp(tmp_path: Path) -> None:
    spec = ContainerSpec(image="img", name="n", env={}, data_dir=tmp_path, memory="64m")

    host = host_config(spec)

    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }
    assert host["Tmpfs"] == {"/tmp": f"rw,exec,nosuid,nodev,mode=1777,size={64 * 1024**2}"}
    assert host["Binds"] == [f"{tmp_path}:/usr/src/app/data:rw"]  # still the one bind mount


def test_the_run_service_passes_the_rotation_settings(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    service = run_service(tmp_path, runner, log_max_size="1m", log_max_files=5)
    service.execute(Tool(name="t", image="img"))
    [spec] = runner.specs
    assert (spec.log_max_size, spec.log_max_files) == ("1m", 5)


# The data directory's size limit, in-process -----------------------------------------


def run_service(
    tmp_path: Path,
    runner: ScriptedRunner,
    *,
    max_tool_bytes: int = LIMIT,
    interval: float = 5.0,
    **docker: Any,
) -> RunService:
    settings = Settings(
        data=DataSettings(importdir=str(tmp_path / "data"), max_tool_bytes=max_tool_bytes),
        docker=DockerSettings(network="none", **docker),
    )
    return RunService(
        MemoryStore(), Keys("/t"), settings, runner, "member-a", data_watch_interval=interval
    )


def test_over_the_limit_fails_the_run_and_refuses_the_next_without_a_container(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner(files={"big.bin": "x" * BIG})
    service = run_service(tmp_path, runner)
    hooked: list[str] = []

    def hook(tool: Tool, run: Run, data_dir: Path) -> None:
        hooked.append(run.id)

    service.add_hook(hook)
    tool = Tool(name="t", image="img")
    data_dir = service.data_dir_for(tool)

    first = service.execute(tool)

    assert first.status == "failed" and first.exit_code == 0
    held = datalimit.tree_bytes(data_dir)
    assert first.error == (
        f"data limit: data directory {data_dir} holds {held / KIB:.1f} KiB, over its limit "
        "of 64.0 KiB; its next runs are refused until it is under"
    )
    assert hooked == []  # no commit, no push of what it wrote
    assert not datalimit.retryable(first.error)

    second = service.execute(tool)

    assert len(runner.specs) == 1  # no container for the second run
    assert second.status == "failed" and second.exit_code is None
    assert second.error is not None and "\n" not in second.error
    assert second.error.startswith(f"data limit: data directory {data_dir} holds ")
    assert second.error.endswith(f"over its limit of 64.0 KiB; {REFUSED}")
    assert service.get(second.id) == second
    assert not datalimit.retryable(second.error)

    (data_dir / "big.bin").unlink()
    runner.files.clear()
    third = service.execute(tool)
    assert third.status == "succeeded" and len(runner.specs) == 2
    assert hooked == [third.id]


def test_a_failing_tool_over_the_limit_keeps_both_reasons(tmp_path: Path) -> None:
    failing = ContainerResult(3, "failed", error="exited with code 3")
    runner = ScriptedRunner([failing], files={"big.bin": "x" * BIG})
    run = run_service(tmp_path, runner).execute(Tool(name="t", image="img"))
    assert (run.status, run.exit_code) == ("failed", 3)
    assert run.error is not None and run.error.startswith("data limit: data directory ")
    assert run.error.endswith("its next runs are refused until it is under; exited with code 3")


def test_the_tool_may_lower_the_members_limit_never_raise_it(tmp_path: Path) -> None:
    assert datalimit.effective_limit(LIMIT, None) == LIMIT
    assert datalimit.effective_limit(LIMIT, 10 * KIB) == 10 * KIB
    assert datalimit.effective_limit(LIMIT, 10 * LIMIT) == LIMIT
    assert datalimit.effective_limit(0, 10 * KIB) == 10 * KIB
    assert datalimit.effective_limit(0, None) is None

    runner = ScriptedRunner(files={"big.bin": "x" * BIG})
    generous = Tool(name="t", image="img", max_data=1024**3)
    assert run_service(tmp_path, runner).execute(generous).status == "failed"
    unlimited = run_service(tmp_path / "unlimited", runner, max_tool_bytes=0)
    assert unlimited.execute(Tool(name="t", image="img")).status == "succeeded"
    strict = replace(generous, max_data=10 * KIB)
    assert unlimited.execute(strict).status == "failed"


def test_a_container_writing_past_the_limit_is_stopped_while_it_runs(tmp_path: Path) -> None:
    runner = ScriptedRunner(block=True, files={"big.bin": "x" * BIG})
    service = run_service(tmp_path, runner, interval=0.05)
    # Should the watch not trip, the run ends (succeeded) instead of hanging the test.
    safety = threading.Timer(30, runner.release)
    safety.start()
    try:
        run = service.execute(Tool(name="t", image="img"))
    finally:
        safety.cancel()
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("data limit: data directory ")
    assert run.error.endswith("the container was stopped; its next runs are refused")


def test_a_cancel_still_reaches_a_watched_container(tmp_path: Path) -> None:
    runner = ScriptedRunner(block=True)
    service = run_service(tmp_path, runner)
    cancel = threading.Event()

    def press_ctrl_c() -> None:
        runner.started.wait(10)
        cancel.set()

    threading.Thread(target=press_ctrl_c).start()
    safety = threading.Timer(30, runner.release)
    safety.start()
    try:
        run = service.execute(Tool(name="t", image="img"), cancel=cancel)
    finally:
        safety.cancel()
    assert (run.status, run.error) == ("failed", "interrupted")
    assert datalimit.retryable(run.error)


def test_measuring_never_follows_links_and_counts_what_the_disk_holds(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a").write_bytes(b"x" * 10_000)
    os.link(root / "sub" / "a", root / "hard")  # counted again: the walk sees two names
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_bytes(b"y" * 1_000_000)
    (root / "to-file").symlink_to(host / "secret")
    (root / "to-dir").symlink_to(host)
    (root / "to-root").symlink_to("/")
    os.mkfifo(root / "fifo")  # never opened: no hang
    with open(root / "sparse", "wb") as sparse:
        sparse.truncate(5_000_000)  # holds no block, counts whole
    small = root / "small"
    small.write_bytes(b"z")  # counts by its block

    held = datalimit.tree_bytes(root)

    block = os.stat(small).st_blocks * 512
    assert held == 2 * max(10_000, os.stat(root / "hard").st_blocks * 512) + 5_000_000 + block
    assert datalimit.excess(root, held) is None
    assert datalimit.excess(root, held - 1) == datalimit.Excess(root, held, held - 1)


def test_a_directory_swapped_for_a_link_is_not_entered(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "d").mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        [entry] = list(os.scandir(fd))
        (root / "d").rmdir()
        (root / "d").symlink_to(tmp_path)  # the container's swap, after the listing
        assert datalimit._enter(fd, entry) is None
    finally:
        os.close(fd)


def test_an_unmeasurable_tree_counts_as_over_the_limit(tmp_path: Path) -> None:
    deep = tmp_path / "data"
    path = deep
    for _ in range(datalimit.MAX_DEPTH + 1):
        path = path / "d"
    path.mkdir(parents=True)
    found = datalimit.excess(deep, LIMIT)
    assert found is not None and found.held is None
    assert found.describe(REFUSED) == (
        f"data limit: data directory {deep} cannot be measured ({deep} is more than "
        f"{datalimit.MAX_DEPTH} directories deep), over its limit of 64.0 KiB; {REFUSED}"
    )
    (tmp_path / "link").symlink_to(deep)
    linked = datalimit.excess(tmp_path / "link", LIMIT)
    assert linked is not None and linked.held is None


# Against the real dockerd ------------------------------------------------------------

DATA = "/usr/src/app/data"


def limits_env(tmp_path: Path, etcd: EtcdCluster, prefix: str, docker: DockerDaemon) -> Env:
    (tmp_path / "config.toml").write_text(
        f'[data]\nimportdir = "{tmp_path / "data"}"\nmax_tool_bytes = {LIMIT}\n'
        '[docker]\nnetwork = "none"\nlog_max_size = "1k"\nlog_max_files = 2\n'
        "[worker]\nbackoff = 0.2\nbackoff_max = 0.5\n"
    )
    return make_env(tmp_path, etcd.endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)


@pytest.fixture
def lenv(tmp_path: Path, etcd: EtcdCluster, prefix: str, docker: DockerDaemon) -> Env:
    return limits_env(tmp_path, etcd, prefix, docker)


def api_of(docker: DockerDaemon) -> Any:
    import docker as docker_py

    return docker_py.APIClient(base_url=docker.host, timeout=30)


def created(docker: DockerDaemon, tool: str, since: float) -> int:
    """Containers the engine created for the tool since then (removed ones included)."""
    client = api_of(docker)
    try:
        events = client.events(
            since=int(since),
            until=int(time.time()) + 1,
            filters={"type": "container", "event": "create", "label": f"maomao.tool={tool}"},
            decode=True,
        )
        return sum(1 for _ in events)
    finally:
        client.close()


def running_container(docker: DockerDaemon, tool: str, proc: subprocess.Popen[str]) -> str:
    client = api_of(docker)
    try:
        while True:  # the test's timeout bounds the wait
            found = client.containers(filters={"label": f"maomao.tool={tool}", "status": "running"})
            if found:
                return str(found[0]["Id"])
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
    finally:
        client.close()


def runs_of(env: Env, tool: str) -> list[dict[str, Any]]:
    result = env.run("runs", "--json", "--limit", "1000", "--tool", tool)
    assert result.code == 0, result.err
    records: list[dict[str, Any]] = json.loads(result.out)
    return records


def register(env: Env, tool: str, image: str, script: str, *options: str) -> None:
    result = env.run("register", tool, image, "--env", f"SCRIPT={script}", *options)
    assert result.code == 0, result.err


ONE_LINE = re.compile(
    r"^error: .*: data limit: data directory (\S+) holds ([0-9.]+) KiB, over its limit of "
    r"(\S+ \S+); (.*)$"
)


@pytest.mark.docker
@pytest.mark.etcd
def test_containers_get_rotated_logs_and_a_capped_tmp(
    lenv: Env, docker: DockerDaemon, script_image: str
) -> None:
    chatty = (
        'i=0; while [ $i -lt 400 ]; do echo "line $i of a chatty tool"; i=$((i+1)); done; sleep 300'
    )
    register(lenv, "chatty", script_image, chatty, "--memory", "32m")
    proc = lenv.popen("run", "chatty")
    try:
        container = running_container(docker, "chatty", proc)
        client = api_of(docker)
        info = client.inspect_container(container)
        client.close()
        log_path = Path(info["LogPath"])
        deadline = time.monotonic() + 30
        while not Path(f"{log_path}.1").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # until the 400 lines have rotated the log once
        logs = sorted(log_path.parent.glob(f"{log_path.name}*"))
        sizes = [p.stat().st_size for p in logs]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)

    host = info["HostConfig"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "2"}}
    assert host["Tmpfs"] == {"/tmp": f"rw,exec,nosuid,nodev,mode=1777,size={32 * 1024**2}"}
    # 400 lines are about 30 KiB of JSON: Docker kept two files of about 1 KiB.
    assert len(logs) == 2 and all(size < 2 * KIB for size in sizes), (logs, sizes)


@pytest.mark.docker
@pytest.mark.etcd
def test_tmp_is_in_memory_and_capped(lenv: Env, script_image: str) -> None:
    script = "df -k /tmp; dd if=/dev/zero of=/tmp/scratch bs=1k count=64 && echo wrote-tmp"
    register(lenv, "scratch", script_image, script, "--memory", "16m", "--user", "1000:1000")
    result = lenv.run("run", "scratch")
    assert result.code == 0, result.err
    lines = [line.strip() for line in result.out.splitlines()]  # the tool's output
    tmpfs = [line.split() for line in lines if line.endswith("/tmp")]
    assert tmpfs and tmpfs[0][0] == "tmpfs" and tmpfs[0][1] == "16384", lines
    assert "wrote-tmp" in lines  # a non-root user may write it (mode 1777)


@pytest.mark.docker
@pytest.mark.etcd
@pytest.mark.parametrize("where", ["member", "tool"])
def test_a_tool_over_its_data_limit_is_failed_then_refused_without_a_container(
    tmp_path: Path,
    etcd: EtcdCluster,
    prefix: str,
    docker: DockerDaemon,
    script_image: str,
    where: str,
) -> None:
    env = limits_env(tmp_path, etcd, prefix, docker)
    if where == "tool":  # the member allows 1 GiB; the tool asks for 64k itself
        config_file = tmp_path / "config.toml"
        config_file.write_text(config_file.read_text().replace(f"= {LIMIT}", f"= {1024**3}"))
    options = ["--max-data", "64k"] if where == "tool" else []
    fill = f"dd if=/dev/zero of={DATA}/big bs=1k count={BIG // KIB} && echo filled"
    register(env, "filler", script_image, fill, *options)
    began = time.time() - 1

    first = env.run("run", "filler")

    assert first.code == 1, first.out + first.err
    [line] = first.err.strip().splitlines()
    match = ONE_LINE.match(line)
    assert match is not None, line
    data_dir, held, limit, consequence = match.groups()
    assert float(held) >= BIG / KIB and limit == "64.0 KiB"
    assert consequence == "its next runs are refused until it is under"
    assert (Path(data_dir) / "big").stat().st_size == BIG  # what it wrote stays
    assert created(docker, "filler", began) == 1
    between = time.time()

    second = env.run("run", "filler")

    assert second.code == 1, second.out + second.err
    [line] = second.err.strip().splitlines()
    match = ONE_LINE.match(line)
    assert match is not None, line
    assert match.group(1) == data_dir and match.group(4) == REFUSED
    assert created(docker, "filler", between) == 0
    assert created(docker, "filler", began) == 1
    records = runs_of(env, "filler")
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert records[0]["error"].endswith(REFUSED) and records[0]["exit_code"] is None


@pytest.mark.docker
@pytest.mark.etcd
def test_a_container_filling_its_data_dir_is_stopped_while_it_runs(
    lenv: Env, docker: DockerDaemon, script_image: str
) -> None:
    fill = f"dd if=/dev/zero of={DATA}/big bs=1k count={BIG // KIB}; echo filled; sleep 300"
    register(lenv, "hog", script_image, fill)
    began = time.monotonic()

    result = lenv.run("run", "hog", timeout=90)

    assert result.code == 1, result.out + result.err
    assert "the container was stopped; its next runs are refused" in result.err
    assert time.monotonic() - began < 60  # the watch measures every 5 s, not after 300 s
    client = api_of(docker)
    assert client.containers(all=True, filters={"label": "maomao.tool=hog"}) == []
    client.close()


@pytest.mark.docker
@pytest.mark.etcd
def test_the_worker_does_not_retry_a_run_refused_by_its_data_limit(
    lenv: Env, docker: DockerDaemon, script_image: str
) -> None:
    fill = f"dd if=/dev/zero of={DATA}/big bs=1k count={BIG // KIB}"
    register(lenv, "filled", script_image, fill)
    began = time.time() - 1
    assert lenv.run("run", "filled").code == 1  # over its limit from now on
    scheduled = lenv.run("run", "filled", "--cron", "* * * * * *", "--retries", "2")
    assert scheduled.code == 0, scheduled.err

    worker = subprocess.Popen(
        [sys.executable, "-m", "maomao_cli", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=lenv.vars,
    )
    try:
        for _ in wait_for_runs(lenv, "filled", 4, worker):
            pass
        time.sleep(1.5)  # a retry would come 0.2 s after a refusal
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output

    records = runs_of(lenv, "filled")
    # Firings the worker could not start in time are recorded skipped: not runs.
    ran = [r for r in records if r["trigger"] != "manual" and r["status"] != "skipped"]
    assert len(ran) >= 2, output
    assert "retry" not in {r["trigger"] for r in ran}, records  # schedule, catch-up
    assert {r["status"] for r in ran} == {"failed"}
    assert all(r["error"].endswith(REFUSED) for r in ran)
    assert created(docker, "filled", began) == 1  # the manual run's only


def wait_for_runs(env: Env, tool: str, count: int, worker: subprocess.Popen[str]) -> Iterator[int]:
    """Until the tool has `count` records; the test's timeout bounds the wait."""
    while (found := len(runs_of(env, tool))) < count:
        assert worker.poll() is None, worker.communicate()[0]
        yield found
        time.sleep(0.2)
