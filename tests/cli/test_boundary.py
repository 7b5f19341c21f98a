"""The one error boundary, for every command that has --json: each kind of failure is one
JSON object on stdout with a code that says what it is, and the exit status scripts rely
on (usage and bad input 2, an unreachable service and an internal error 1, Ctrl-C 130).
Nothing on stdout is ever a traceback; the stack goes to stderr only when asked for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli_harness import Cli, FailingStore, MakeCli, Outcome
from maomao_cli.config import Settings
from maomao_cli.errors import Unavailable
from servers import free_port

# Every command with a --json option (`grep '"--json"' src/maomao_cli/cli`), with the
# arguments it needs to get as far as its service.
JSON_COMMANDS: dict[str, tuple[str, ...]] = {
    "tools": ("tools",),
    "runs": ("runs",),
    "schedule list": ("schedule", "list"),
    "schedule show": ("schedule", "show", "daily"),
    "dataset list": ("dataset", "list"),
    "dataset show": ("dataset", "show", "obs"),
    "dataset status": ("dataset", "status", "obs"),
    "spikes": ("spikes", "--all"),
    "members": ("members",),
    "status": ("status",),
    "config": ("config",),
    "etcd init": ("etcd", "init", "--listen", "127.0.0.1", "--no-tls"),
    "etcd join": ("etcd", "join", "127.0.0.1:1", "--no-tls", "--listen", "127.0.0.1"),
    "etcd leave": ("etcd", "leave"),
    "etcd status": ("etcd", "status"),
}

# The commands that read the collaboration's records through the store port.
STORE_COMMANDS = [
    name for name in JSON_COMMANDS if name != "config" and not name.startswith("etcd ")
]

# Input that fails validation before anything is read, written or started.
BAD_INPUT: dict[str, tuple[str, ...]] = {
    "runs": ("runs", "--tool", "Bad/Name"),
    "schedule show": ("schedule", "show", "Bad/Name"),
    "dataset show": ("dataset", "show", "Bad/Name"),
    "dataset status": ("dataset", "status", "Bad/Name"),
    "spikes": ("spikes", "--method", "bogus"),
    "etcd init": ("etcd", "init", "--listen", "not-an-address"),
    "etcd join": ("etcd", "join", "127.0.0.1:1", "--name", "Bad/Name"),
    "etcd leave": ("etcd", "leave"),  # this machine is no member: nothing to leave
}
assert set(BAD_INPUT) <= set(JSON_COMMANDS)


def one_json_error(result: Outcome) -> dict[str, Any]:
    """stdout is exactly one JSON object, an error, and no traceback anywhere on it."""
    assert "Traceback" not in result.out
    data = json.loads(result.out)
    assert isinstance(data, dict) and set(data) == {"error"}, data
    error: dict[str, Any] = data["error"]
    assert set(error) == {"code", "message", "hint"}
    assert isinstance(error["message"], str) and error["message"]
    assert "\n" not in error["message"]
    return error


def json_args(name: str, *extra: str) -> list[str]:
    return [*JSON_COMMANDS[name], "--json", *extra]


def failing_settings() -> Settings:
    raise RuntimeError("boom in the settings")


@pytest.mark.parametrize("name", list(JSON_COMMANDS))
def test_usage_error_is_json_code_usage_exit_2(cli: Cli, name: str) -> None:
    result = cli.invoke(*json_args(name, "--no-such-option"))
    assert result.code == 2, result
    error = one_json_error(result)
    assert error["code"] == "usage"
    assert "--no-such-option" in error["message"]
    assert result.err == ""


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_json_exit_2(cli: Cli, name: str) -> None:
    result = cli.invoke(*BAD_INPUT[name], "--json")
    assert result.code == 2, result
    assert one_json_error(result)["code"] in ("bad-input", "not-found")
    assert result.err == ""
    assert cli.records() == []


@pytest.mark.parametrize("name", list(JSON_COMMANDS))
def test_bad_config_is_json_bad_input_for_every_command(make_cli: MakeCli, name: str) -> None:
    cli = make_cli(config_text='[etcd]\nno_such_key = 1\n[data]\nimportdir = "{importdir}"\n')
    result = cli.invoke_unwired(*json_args(name))
    assert result.code == 2, result
    error = one_json_error(result)
    assert error["code"] == "config"
    assert "no_such_key" in error["message"]
    assert result.err == ""


@pytest.mark.parametrize("name", STORE_COMMANDS)
def test_unreachable_store_is_json_unavailable_exit_1(cli: Cli, name: str) -> None:
    down = FailingStore(lambda: Unavailable("etcd at 127.0.0.1:1 is unreachable", hint="start it"))
    result = cli.invoke(*json_args(name), services=cli.services(store=down.as_store()))
    assert result.code == 1, result
    error = one_json_error(result)
    assert (error["code"], error["hint"]) == ("unavailable", "start it")
    assert "127.0.0.1:1" in error["message"]
    assert result.err == ""


@pytest.mark.parametrize("name", ["etcd join", "etcd leave", "etcd status"])
def test_unreachable_cluster_is_json_unavailable_exit_1(cli: Cli, name: str) -> None:
    closed = cli.closed_endpoint
    args = json_args(name)
    if name == "etcd join":
        args[2] = closed
    if name == "etcd leave":  # a member whose cluster is gone
        host, port = closed.split(":")
        member = cli.settings.data.state_path / "cluster" / "member.json"
        member.parent.mkdir(parents=True)
        member.write_text(
            json.dumps(
                {"version": 1, "name": "m1", "host": host, "client_port": int(port),
                 "peer_port": free_port(), "tls": False, "initial_cluster": "",
                 "initial_state": "new", "cluster_token": "t", "member_id": 1}
            )
        )  # fmt: skip
    result = cli.invoke(*args)
    assert result.code == 1, result
    error = one_json_error(result)
    assert error["code"] == "unavailable"
    assert closed in error["message"]
    # `join` says what it is doing on stderr; the error itself is the JSON object.
    progress = ["checking the cluster at " + closed] if name == "etcd join" else []
    assert result.err_lines == progress


@pytest.mark.parametrize("name", STORE_COMMANDS)
def test_unexpected_exception_in_the_store_is_json_internal_exit_1(cli: Cli, name: str) -> None:
    broken = FailingStore(lambda: RuntimeError("boom in the store"))
    result = cli.invoke(*json_args(name), services=cli.services(store=broken.as_store()))
    assert result.code == 1, result
    error = one_json_error(result)
    assert error["code"] == "internal"
    assert error["message"] == "internal error: RuntimeError: boom in the store"
    assert "--traceback" in error["hint"]
    assert result.err == ""


@pytest.mark.parametrize("name", list(JSON_COMMANDS))
def test_unexpected_exception_is_json_internal_exit_1_for_every_command(
    cli: Cli, name: str
) -> None:
    result = cli.invoke(*json_args(name), services=cli.services(settings=failing_settings))
    assert result.code == 1, result
    error = one_json_error(result)
    assert error["code"] == "internal"
    assert error["message"].startswith("internal error:")
    assert "boom in the settings" in error["message"]
    assert "--traceback" in error["hint"]
    assert result.err == ""


@pytest.mark.parametrize("how", ["flag", "variable"])
@pytest.mark.parametrize("name", list(JSON_COMMANDS))
def test_traceback_goes_to_stderr_only_when_asked(cli: Cli, name: str, how: str) -> None:
    services = cli.services(settings=failing_settings)
    if how == "flag":
        result = cli.invoke("--traceback", *json_args(name), services=services)
    else:
        cli.env["MAOMAO_TRACEBACK"] = "1"
        result = cli.invoke(*json_args(name), services=services)
    assert result.code == 1, result
    assert one_json_error(result)["code"] == "internal"
    assert result.err.startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom in the settings" in result.err


@pytest.mark.parametrize("json_mode", [True, False])
def test_no_traceback_without_asking(cli: Cli, json_mode: bool) -> None:
    cli.env["MAOMAO_TRACEBACK"] = "0"
    broken = FailingStore(lambda: RuntimeError("boom"))
    args = ["tools", "--json"] if json_mode else ["tools"]
    result = cli.invoke(*args, services=cli.services(store=broken.as_store()))
    assert result.code == 1
    assert "Traceback" not in result.out + result.err
    if json_mode:
        assert one_json_error(result)["code"] == "internal"
    else:
        assert result.out == ""
        assert result.err_lines == [
            "error: internal error: RuntimeError: boom (hint: run with --traceback for details)"
        ]


@pytest.mark.parametrize("name", STORE_COMMANDS)
def test_ctrl_c_is_json_interrupted_exit_130(cli: Cli, name: str) -> None:
    pressed = FailingStore(KeyboardInterrupt)
    result = cli.invoke(*json_args(name), services=cli.services(store=pressed.as_store()))
    assert result.code == 130, result
    assert one_json_error(result)["code"] == "interrupted"
    assert result.err == ""


def test_ctrl_c_without_json_is_one_line(cli: Cli) -> None:
    pressed = FailingStore(KeyboardInterrupt)
    result = cli.invoke("tools", services=cli.services(store=pressed.as_store()))
    assert (result.code, result.out) == (130, "")
    assert result.err_lines == ["error: interrupted"]
