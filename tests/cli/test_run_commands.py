"""`maomao run`, `runs`, `logs` in-process: the memory store and a scripted runner stand
in for etcd and Docker (what Docker itself does is the runner contract's:
tests/contract/test_runner_contract.py; one real run: tests/integration/test_cli_smoke.py)."""

from __future__ import annotations

import gc
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from cli_harness import Cli, MakeCli
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.composition import Services
from maomao_cli.ports import ContainerResult

# docker-py leaves the socket of a failed connection to a missing unix socket unclosed.
NO_SOCKET_LEAK_WARNING = pytest.mark.filterwarnings(
    "ignore:unclosed <socket.socket:ResourceWarning"
)
DIGEST = "sha256:" + "ab" * 32
OUTPUT = ["dummy-tool: run 1 starting", "dummy-tool: wrote control-1.csv = 100"]


def runs_json(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli.invoke("runs", *args, "--json")
    assert (result.code, result.err) == (0, ""), result.err
    data: list[dict[str, Any]] = result.json()
    return data


def data_dir(cli: Cli, tool: str) -> Path:
    return cli.importdir / "tools" / tool


def test_run_succeeds_writes_control_file_and_is_listed(make_cli: MakeCli) -> None:
    runner = ScriptedRunner(output=OUTPUT, files={"control-{n}.csv": "100\n"}, digest=DIGEST)
    cli = make_cli(runner=runner)
    assert cli.invoke("register", "dummy", "img").code == 0

    result = cli.invoke("run", "dummy")

    assert (result.code, result.err) == (0, ""), result.err
    assert "dummy-tool: run 1 starting" in result.out  # the container's output, streamed
    assert "dummy succeeded (exit 0)" in result.out
    controls = sorted(data_dir(cli, "dummy").glob("control-*.csv"))
    assert len(controls) == 1
    assert 95 <= float(controls[0].read_text()) <= 105
    [record] = runs_json(cli, "--tool", "dummy")
    assert record["status"] == "succeeded"
    assert record["exit_code"] == 0
    assert record["member"] == "member-a"
    assert record["trigger"] == "manual"
    assert record["started"] and record["finished"]
    assert record["image_digest"] == DIGEST
    logs = cli.invoke("logs", record["id"])
    assert (logs.code, logs.err) == (0, "")
    assert "dummy-tool: wrote control-" in logs.out
    [spec] = runner.specs
    assert spec.data_dir == data_dir(cli, "dummy").resolve()
    assert spec.labels["maomao.tool"] == "dummy" and spec.labels["maomao.run"] == record["id"]


def test_failing_tool_is_recorded_failed_with_its_exit_code(make_cli: MakeCli) -> None:
    cli = make_cli(
        runner=ScriptedRunner([ContainerResult(3, "failed", error="exited with code 3")])
    )
    cli.invoke("register", "broken", "img", "--env", "EXIT_CODE=3")

    result = cli.invoke("run", "broken")

    assert (result.code, result.out) == (1, "")
    assert "exited with code 3" in result.err
    [record] = runs_json(cli, "--tool", "broken")
    assert record["status"] == "failed"
    assert record["exit_code"] == 3


def test_tool_outliving_its_timeout_is_stopped(make_cli: MakeCli) -> None:
    runner = ScriptedRunner(block=True)  # runs until its spec's timeout
    cli = make_cli(runner=runner)
    cli.invoke("register", "slow", "img", "--timeout", "0.2")

    result = cli.invoke("run", "slow")

    assert result.code == 1
    assert "timed-out" in result.err
    [record] = runs_json(cli, "--tool", "slow")
    assert record["status"] == "timed-out"
    assert "timeout" in record["error"]
    assert runner.specs[0].timeout == 0.2


def test_unknown_tool_is_one_line_and_exit_2(cli: Cli) -> None:
    result = cli.invoke("run", "nosuchtool")

    assert (result.code, result.out) == (2, "")
    assert len(result.err_lines) == 1
    assert "nosuchtool" in result.err
    assert runs_json(cli) == []


def test_unpullable_image_gives_one_line_and_a_failed_record(make_cli: MakeCli) -> None:
    image = "127.0.0.1:1/nosuch/image:1"
    refused = f"cannot pull image {image}: connection refused"
    cli = make_cli(runner=ScriptedRunner(image_error=refused))
    cli.invoke("register", "ghost", image)

    result = cli.invoke("run", "ghost")

    assert (result.code, result.out) == (1, "")
    assert len(result.err_lines) == 1
    assert f"cannot pull image {image}" in result.err
    [record] = runs_json(cli, "--tool", "ghost")
    assert record["status"] == "failed"
    assert "cannot pull image" in record["error"]


def test_ctrl_c_stops_and_records_interrupted(make_cli: MakeCli) -> None:
    runner = ScriptedRunner(block=True)
    cli = make_cli(runner=runner)
    cli.invoke("register", "sleepy", "img", "--env", "SLEEP=300")
    main = threading.main_thread().ident
    assert main is not None

    def press_ctrl_c() -> None:
        # `run` installs its Ctrl-C handler before the container starts.
        if runner.started.wait(30):
            signal.pthread_kill(main, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    result = cli.invoke("run", "sleepy")
    presser.join()

    assert result.code == 130, result
    assert "interrupted" in result.err
    assert "stopping the container" in result.err
    [record] = runs_json(cli, "--tool", "sleepy")
    assert record["status"] == "failed"
    assert record["error"] == "interrupted"


def test_old_records_are_pruned_beyond_runs_kept(make_cli: MakeCli) -> None:
    results = [ContainerResult(0, "succeeded", DIGEST, [f"run {n} starting"]) for n in (1, 2, 3)]
    cli = make_cli(
        runner=ScriptedRunner(results, files={"control-{n}.csv": "100\n"}),
        config_text='[data]\nimportdir = "{importdir}"\n[docker]\nnetwork = "none"\n'
        "[worker]\nruns_kept = 2\n",
    )
    cli.invoke("register", "kept", "img")
    for _ in range(3):
        assert cli.invoke("run", "kept").code == 0

    records = runs_json(cli, "--tool", "kept")

    assert len(records) == 2
    assert len(list(data_dir(cli, "kept").glob("control-*.csv"))) == 3
    logs = [cli.invoke("logs", r["id"]).out for r in records]
    assert "run 3 starting" in logs[0] and "run 2 starting" in logs[1]  # newest first


@NO_SOCKET_LEAK_WARNING
def test_unreachable_docker_is_one_line_and_a_failed_record(make_cli: MakeCli) -> None:
    cli = make_cli()
    cli.env["MAOMAO_DOCKER_HOST"] = f"unix://{cli.root}/no-such-docker.sock"
    cli.invoke("register", "dummy", "img")
    real_docker = Services(cli.settings, store=cli.store)  # the real runner, on no socket

    try:
        result = cli.invoke("run", "dummy", services=real_docker)
    finally:
        real_docker.close()

    assert (result.code, result.out) == (1, "")
    assert len(result.err_lines) == 1
    assert "cannot reach Docker at unix://" in result.err
    [record] = runs_json(cli, "--tool", "dummy")
    assert record["status"] == "failed"
    assert "cannot reach Docker" in record["error"]
    gc.collect()  # docker-py's leaked socket: collected here, under the filter above
