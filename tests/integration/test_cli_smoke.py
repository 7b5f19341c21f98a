"""End to end: the `maomao` program (a subprocess) against a real etcd and a private
dockerd, a few calls per command group. The logic behind each command is tested
in-process (tests/cli/); these check that the real wiring reaches the real services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, Env, Result
from servers import EtcdCluster

pytestmark = pytest.mark.etcd


def ok(result: Result) -> Result:
    assert (result.code, result.err) == (0, ""), (result.code, result.err)
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).out)


def test_registry_datasets_schedules_spikes_and_status(
    env: Env, etcd: EtcdCluster, prefix: str
) -> None:
    assert "registered" in ok(env.run("register", "dummy", "img")).out
    assert [t["name"] for t in as_json(env.run("tools", "--json"))] == ["dummy"]

    assert "added" in ok(env.run("dataset", "add", "obs", "git://h/obs")).out
    assert [d["name"] for d in as_json(env.run("dataset", "list", "--json"))] == ["obs"]

    scheduled = env.run("run", "dummy", "--daily")
    assert scheduled.code == 0, scheduled.err
    assert "scheduled" in scheduled.out and "next:" in scheduled.out
    [schedule] = as_json(env.run("schedule", "list", "--json"))
    assert (schedule["name"], schedule["cron"], schedule["next_fire"] is not None) == (
        "dummy", "0 0 * * *", True,
    )  # fmt: skip

    assert as_json(env.run("spikes", "--tool", "dummy", "--json")) == []
    assert as_json(env.run("members", "--json")) == []

    status = as_json(env.run("status", "--json"))
    assert status["etcd"]["reachable"] is True
    assert status["etcd"]["endpoint"] in etcd.endpoints.split(",")
    assert status["etcd"]["version"].startswith("3.")
    assert status["prefix"] == prefix
    assert (status["tools"], status["datasets"], status["schedules"]) == (1, 1, 1)

    missing = env.run("unregister", "nosuchtool")
    assert (missing.code, missing.out) == (2, "")
    assert missing.err.startswith("error: ") and "nosuchtool" in missing.err


@pytest.mark.docker
def test_run_of_the_dummy_image_then_runs_and_logs(docker_env: Env) -> None:
    ok(docker_env.run("register", "dummy", DUMMY_IMAGE))

    result = docker_env.run("run", "dummy")

    assert result.code == 0, result.err
    assert "dummy-tool: run 1 starting" in result.out  # the container's output, streamed
    assert "dummy succeeded (exit 0)" in result.out
    data = Path(docker_env.vars["MAOMAO_CONFIG"]).parent / "data" / "tools" / "dummy"
    assert len(list(data.glob("control-*.csv"))) == 1
    [record] = as_json(docker_env.run("runs", "--tool", "dummy", "--json"))
    assert (record["status"], record["exit_code"], record["member"]) == (
        "succeeded", 0, "member-a",
    )  # fmt: skip
    assert record["image_digest"].startswith("sha256:")
    assert "dummy-tool: wrote control-" in ok(docker_env.run("logs", record["id"])).out
