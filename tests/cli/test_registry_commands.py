"""`register`, `unregister`, `tools`, `dataset`, `status`, `config` and the CLI's error
paths, in-process on the memory store (the end-to-end path: tests/integration/test_cli_smoke.py)."""

from __future__ import annotations

import pytest

from cli_harness import PREFIX, Cli, MakeCli, Outcome


def one_error_line(result: Outcome) -> str:
    lines = result.err_lines
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err + result.out
    assert lines[0].startswith("error: ")
    return lines[0]


def succeeded(result: Outcome) -> Outcome:
    assert (result.code, result.err) == (0, ""), result
    return result


def test_register_list_update_unregister(cli: Cli) -> None:
    first = succeeded(cli.invoke("register", "dummy", "img"))
    assert "registered" in first.out

    tools = succeeded(cli.invoke("tools", "--json")).json()
    assert [(t["name"], t["image"]) for t in tools] == [("dummy", "img")]

    again = succeeded(
        cli.invoke("register", "dummy", "alpine:3.19", "--author", "ana", "-e", "A=1")
    )
    assert "updated" in again.out
    (tool,) = cli.invoke("tools", "--json").json()
    assert (tool["image"], tool["author"], tool["env"]) == ("alpine:3.19", "ana", {"A": "1"})

    table = succeeded(cli.invoke("tools"))
    assert "dummy" in table.out and "alpine:3.19" in table.out

    succeeded(cli.invoke("unregister", "dummy"))
    assert succeeded(cli.invoke("tools", "--json")).json() == []
    assert cli.records() == []

    missing = cli.invoke("unregister", "dummy")
    assert (missing.code, missing.out) == (2, "")
    assert "dummy" in one_error_line(missing)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("register", "Bad/Name", "img"), "tool name"),
        (("register", "ok", "NOT A REF!!"), "image"),
        (("register", "ok", "img", "--env", "NOEQ"), "environment variable"),
        (("register", "ok", "img", "--memory", "1k"), "memory"),
        (("register", "ok", "img", "--network", "host"), "network"),
        (("register", "ok", "img", "--dataset", "absent"), "absent"),
        (("register", "ok", "img", "--spike-method", "zscore"), "spike method"),
        (("register", "ok", "img", "--sensitivity", "0"), "sensitivity"),
        (("register", "ok", "img", "--min-history", "2"), "min history"),
        (("dataset", "add", "d", "ext::sh -c id"), "url"),
        (("dataset", "add", "d", "file://relative"), "url"),
        (("dataset", "add", "Bad/Name", "git://h/data"), "dataset name"),
        (("dataset", "add", "d", "git://h/data", "--branch", "a..b"), "branch"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    cli: Cli, args: tuple[str, ...], field: str
) -> None:
    result = cli.invoke(*args)
    assert (result.code, result.out) == (2, "")
    assert field in one_error_line(result)
    assert cli.records() == []


def test_unreachable_endpoint_names_it(cli: Cli) -> None:
    # Nothing injected: the real etcd client, on a closed port.
    result = cli.invoke_unwired("tools")
    assert (result.code, result.out) == (1, "")
    line = one_error_line(result)
    assert cli.closed_endpoint in line
    assert "hint" in line


def test_unreachable_with_json_prints_one_json_error(cli: Cli) -> None:
    result = cli.invoke_unwired("status", "--json")
    assert (result.code, result.err) == (1, "")
    assert result.json()["error"]["code"] == "unavailable"


def test_datasets(cli: Cli) -> None:
    url = "https://git.example.org/lab/obs.git"
    added = succeeded(cli.invoke("dataset", "add", "obs", url, "--branch", "main", "--depth", "3"))
    assert "added" in added.out

    listed = succeeded(cli.invoke("dataset", "list", "--json")).json()
    assert [(d["name"], d["url"], d["branch"], d["depth"]) for d in listed] == [
        ("obs", url, "main", 3)
    ]
    assert succeeded(cli.invoke("dataset", "show", "obs", "--json")).json()["url"] == url
    assert "obs" in succeeded(cli.invoke("dataset", "list")).out

    assert "updated" in succeeded(cli.invoke("dataset", "add", "obs", url, "--push")).out
    assert cli.invoke("dataset", "show", "obs", "--json").json()["push"] is True

    # A dataset in use by a tool is not removed from under it.
    succeeded(cli.invoke("register", "weather", "img", "--dataset", "obs"))
    in_use = cli.invoke("dataset", "rm", "obs")
    assert in_use.code == 2 and "weather" in one_error_line(in_use)
    succeeded(cli.invoke("unregister", "weather"))

    succeeded(cli.invoke("dataset", "rm", "obs"))
    assert cli.invoke("dataset", "list", "--json").json() == []
    assert cli.records() == []
    assert cli.invoke("dataset", "show", "obs").code == 2


def test_status(cli: Cli) -> None:
    succeeded(cli.invoke("register", "dummy", "img"))
    succeeded(cli.invoke("dataset", "add", "obs", "git://h/obs"))
    data = succeeded(cli.invoke("status", "--json")).json()
    etcd = data["etcd"]
    assert (etcd["reachable"], etcd["endpoint"], etcd["version"]) == (True, "memory", "memory")
    assert etcd["alarms"] == [] and data["warnings"] == []
    assert data["prefix"] == PREFIX
    assert (data["tools"], data["datasets"], data["members"]) == (1, 1, 0)
    assert "reachable" in succeeded(cli.invoke("status")).out


def test_config_masks_secrets_without_contacting_etcd(make_cli: MakeCli) -> None:
    # The endpoint is a closed port: `config` must not need etcd at all.
    masked = make_cli(env={"MAOMAO_ETCD_USER": "alice", "MAOMAO_ETCD_PASSWORD": "hunter2-secret"})
    result = succeeded(masked.invoke_unwired("config", "--json"))
    assert "hunter2-secret" not in result.out
    data = result.json()
    assert data["etcd"]["password"] == "********"
    assert data["etcd"]["user"] == "alice"
    assert data["etcd"]["endpoints"] == [masked.closed_endpoint]
    assert data["etcd"]["prefix"] == PREFIX
    assert data["data"]["importdir"] == str(masked.importdir)
    assert data["worker"]["member"] == "member-a"
    text = succeeded(masked.invoke_unwired("config"))
    assert "hunter2-secret" not in text.out
    assert 'password = "********"' in text.out


def test_password_without_user_is_one_line(make_cli: MakeCli) -> None:
    cli = make_cli(env={"MAOMAO_ETCD_PASSWORD": "pw"})
    for args in (("config",), ("tools",)):
        result = cli.invoke_unwired(*args)
        assert (result.code, result.out) == (2, "")
        assert "user and password" in one_error_line(result)


def test_help_lists_the_commands(cli: Cli) -> None:
    result = succeeded(cli.invoke("--help"))
    for command in ("register", "run", "schedule", "worker", "spikes", "tools", "dataset"):
        assert f"  {command} " in result.out, command


@pytest.mark.parametrize(
    "args", [("tools", "--bogus"), ("--bogus",), ("register",), ("nosuchcommand",)]
)
def test_usage_errors_exit_2_with_one_line(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli.invoke(*args)
    assert (result.code, result.out) == (2, "")
    one_error_line(result)


def test_corrupt_record_is_skipped_with_one_warning(cli: Cli) -> None:
    succeeded(cli.invoke("register", "good", "img"))
    cli.store.put(f"{PREFIX}/tools/x", b"\x00garbage{")
    for args in (("tools", "--json"), ("tools",)):
        result = cli.invoke(*args)
        assert result.code == 0, result.err
        assert "good" in result.out
        warnings = result.err_lines
        assert len(warnings) == 1, result.err
        assert f"{PREFIX}/tools/x" in warnings[0]
        assert warnings[0].startswith("warning:")
    assert [t["name"] for t in cli.invoke("tools", "--json").json()] == ["good"]
