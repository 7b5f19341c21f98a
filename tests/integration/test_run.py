"""`maomao run`, `runs`, `logs` against a real etcd and a private dockerd."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, Env, make_env
from servers import DockerDaemon

pytestmark = [pytest.mark.docker, pytest.mark.etcd]


def runs_json(env: Env, *args: str) -> list[dict[str, Any]]:
    result = env.run("runs", *args, "--json")
    assert result.code == 0, result.err
    data: list[dict[str, Any]] = json.loads(result.out)
    return data


def data_dir(env: Env, tool: str) -> Path:
    return Path(env.vars["MAOMAO_CONFIG"]).parent / "data" / "tools" / tool


def api(docker: DockerDaemon) -> Any:
    import docker as docker_py

    return docker_py.APIClient(base_url=docker.host, timeout=30)


def containers_of(docker: DockerDaemon, tool: str) -> list[dict[str, Any]]:
    client = api(docker)
    try:
        found: list[dict[str, Any]] = client.containers(
            all=True, filters={"label": f"maomao.tool={tool}"}
        )
        return found
    finally:
        client.close()


def wait_for_container(docker: DockerDaemon, tool: str, proc: subprocess.Popen[str]) -> str:
    for _ in range(600):
        found = [c for c in containers_of(docker, tool) if c["State"] == "running"]
        if found:
            return str(found[0]["Id"])
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.05)
    raise AssertionError(f"no running container of {tool} appeared")


def test_run_succeeds_writes_control_file_and_is_listed(
    docker_env: Env, docker: DockerDaemon
) -> None:
    assert docker_env.run("register", "dummy", DUMMY_IMAGE).code == 0

    result = docker_env.run("run", "dummy")

    assert result.code == 0, result.err
    assert "dummy-tool: run 1 starting" in result.out  # the container's output, streamed
    assert "dummy succeeded (exit 0)" in result.out
    controls = sorted(data_dir(docker_env, "dummy").glob("control-*.csv"))
    assert len(controls) == 1
    assert 95 <= float(controls[0].read_text()) <= 105
    [record] = runs_json(docker_env, "--tool", "dummy")
    assert record["status"] == "succeeded"
    assert record["exit_code"] == 0
    assert record["member"] == "member-a"
    assert record["trigger"] == "manual"
    assert record["started"] and record["finished"]
    assert record["image_digest"].startswith("sha256:")
    logs = docker_env.run("logs", record["id"])
    assert logs.code == 0
    assert "dummy-tool: wrote control-" in logs.out
    assert containers_of(docker, "dummy") == []


def test_failing_tool_is_recorded_failed_with_its_exit_code(
    docker_env: Env, docker: DockerDaemon
) -> None:
    docker_env.run("register", "broken", DUMMY_IMAGE, "--env", "EXIT_CODE=3")

    result = docker_env.run("run", "broken")

    assert result.code == 1
    assert "exited with code 3" in result.err
    [record] = runs_json(docker_env, "--tool", "broken")
    assert record["status"] == "failed"
    assert record["exit_code"] == 3
    assert containers_of(docker, "broken") == []


def test_tool_outliving_its_timeout_is_stopped_and_removed(
    docker_env: Env, docker: DockerDaemon
) -> None:
    docker_env.run("register", "slow", DUMMY_IMAGE, "--env", "SLEEP=300", "--timeout", "1")

    result = docker_env.run("run", "slow")

    assert result.code == 1
    assert "timed-out" in result.err
    [record] = runs_json(docker_env, "--tool", "slow")
    assert record["status"] == "timed-out"
    assert "timeout" in record["error"]
    assert containers_of(docker, "slow") == []


def test_unknown_tool_is_one_line_and_exit_2(docker_env: Env) -> None:
    result = docker_env.run("run", "nosuchtool")

    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "nosuchtool" in result.err
    assert runs_json(docker_env) == []


def test_unpullable_image_gives_one_line_and_a_failed_record(docker_env: Env) -> None:
    # Port 1 on loopback: the pull is refused at once, no registry needed.
    docker_env.run("register", "ghost", "127.0.0.1:1/nosuch/image:1")

    result = docker_env.run("run", "ghost")

    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert "cannot pull image 127.0.0.1:1/nosuch/image:1" in result.err
    [record] = runs_json(docker_env, "--tool", "ghost")
    assert record["status"] == "failed"
    assert "cannot pull image" in record["error"]


def test_running_container_is_locked_down(docker_env: Env, docker: DockerDaemon) -> None:
    docker_env.run(
        "register", "locked", DUMMY_IMAGE, "--env", "SLEEP=300", "--memory", "64m",
        "--pids", "32", "--timeout", "120",
    )  # fmt: skip
    proc = docker_env.popen("run", "locked")
    try:
        container_id = wait_for_container(docker, "locked", proc)
        client = api(docker)
        info = client.inspect_container(container_id)
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)

    host = info["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"])
    assert host["Memory"] == 64 * 1024**2
    assert host["PidsLimit"] == 32
    assert host["NetworkMode"] == "none"
    [mount] = info["Mounts"]
    assert mount["Type"] == "bind"
    assert mount["Source"] == str(data_dir(docker_env, "locked"))
    assert mount["Destination"] == "/usr/src/app/data"
    assert mount["RW"] is True
    labels = info["Config"]["Labels"]
    assert labels["maomao.tool"] == "locked"
    assert labels["maomao.member"] == "member-a"
    assert labels["maomao.run"]


def test_ctrl_c_stops_removes_and_records_interrupted(
    docker_env: Env, docker: DockerDaemon
) -> None:
    docker_env.run("register", "sleepy", DUMMY_IMAGE, "--env", "SLEEP=300")
    proc = docker_env.popen("run", "sleepy")
    wait_for_container(docker, "sleepy", proc)

    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert containers_of(docker, "sleepy") == []
    [record] = runs_json(docker_env, "--tool", "sleepy")
    assert record["status"] == "failed"
    assert record["error"] == "interrupted"


def test_old_records_are_pruned_beyond_runs_kept(
    tmp_path: Path, etcd: Any, prefix: str, docker: DockerDaemon
) -> None:
    (tmp_path / "config.toml").write_text(
        f'[data]\nimportdir = "{tmp_path / "data"}"\n'
        '[docker]\nnetwork = "none"\n[worker]\nruns_kept = 2\n'
    )
    env = make_env(tmp_path, etcd.endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)
    env.run("register", "kept", DUMMY_IMAGE)
    for _ in range(3):
        assert env.run("run", "kept").code == 0

    records = runs_json(env, "--tool", "kept")

    assert len(records) == 2
    assert len(list((tmp_path / "data" / "tools" / "kept").glob("control-*.csv"))) == 3
    logs = [env.run("logs", r["id"]).out for r in records]
    assert "run 3 starting" in logs[0] and "run 2 starting" in logs[1]  # newest first


def test_unreachable_docker_is_one_line_and_a_failed_record(env: Env, tmp_path: Path) -> None:
    env.vars["MAOMAO_DOCKER_HOST"] = f"unix://{tmp_path}/no-such-docker.sock"
    env.run("register", "dummy", DUMMY_IMAGE)

    result = env.run("run", "dummy")

    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert "cannot reach Docker at unix://" in result.err
    [record] = runs_json(env, "--tool", "dummy")
    assert record["status"] == "failed"
    assert "cannot reach Docker" in record["error"]
