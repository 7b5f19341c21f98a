"""The CLI against a real etcd: registry, datasets, status, config, and its error paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Env, Result, make_env
from maomao_cli.config import EtcdSettings, parse_endpoints
from maomao_cli.store.etcd import EtcdStore
from servers import EtcdCluster, free_port

pytestmark = pytest.mark.etcd


@pytest.fixture
def store(etcd: EtcdCluster) -> Iterator[EtcdStore]:
    direct = EtcdStore(EtcdSettings(endpoints=parse_endpoints(etcd.endpoints)))
    yield direct
    direct.close()


def keys_under(store: EtcdStore, prefix: str) -> list[str]:
    return [entry.key for entry in store.scan(prefix + "/")]


def one_error_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err + result.out
    assert lines[0].startswith("error: ")
    return lines[0]


def test_register_list_update_unregister(env: Env, store: EtcdStore, prefix: str) -> None:
    first = env.run("register", "dummy", "img")
    assert first.code == 0, first.err
    assert "registered" in first.out

    listed = env.run("tools", "--json")
    assert listed.code == 0, listed.err
    tools = json.loads(listed.out)
    assert [(t["name"], t["image"]) for t in tools] == [("dummy", "img")]

    again = env.run("register", "dummy", "alpine:3.19", "--author", "ana", "-e", "A=1")
    assert again.code == 0, again.err
    assert "updated" in again.out
    (tool,) = json.loads(env.run("tools", "--json").out)
    assert (tool["image"], tool["author"], tool["env"]) == ("alpine:3.19", "ana", {"A": "1"})

    table = env.run("tools")
    assert table.code == 0 and "dummy" in table.out and "alpine:3.19" in table.out

    removed = env.run("unregister", "dummy")
    assert removed.code == 0, removed.err
    assert json.loads(env.run("tools", "--json").out) == []
    assert keys_under(store, prefix) == []

    missing = env.run("unregister", "dummy")
    assert missing.code == 2
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
        (("dataset", "add", "d", "ext::sh -c id"), "url"),
        (("dataset", "add", "d", "file://relative"), "url"),
        (("dataset", "add", "Bad/Name", "git://h/data"), "dataset name"),
        (("dataset", "add", "d", "git://h/data", "--branch", "a..b"), "branch"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    env: Env, store: EtcdStore, prefix: str, args: tuple[str, ...], field: str
) -> None:
    result = env.run(*args)
    assert result.code == 2
    line = one_error_line(result)
    assert field in line
    assert keys_under(store, prefix) == []


def test_unreachable_endpoint_names_it(tmp_path: Path, prefix: str) -> None:
    closed = f"127.0.0.1:{free_port()}"
    unreachable = make_env(tmp_path, closed, prefix)
    result = unreachable.run("tools", timeout=30)
    assert result.code == 1
    line = one_error_line(result)
    assert closed in line
    assert "hint" in line


def test_unreachable_with_json_prints_one_json_error(tmp_path: Path, prefix: str) -> None:
    unreachable = make_env(tmp_path, f"127.0.0.1:{free_port()}", prefix)
    result = unreachable.run("status", "--json", timeout=30)
    assert result.code == 1
    assert "Traceback" not in result.err
    assert json.loads(result.out)["error"]["code"] == "unavailable"


def test_datasets(env: Env, store: EtcdStore, prefix: str, tmp_path: Path) -> None:
    url = "https://git.example.org/lab/obs.git"
    added = env.run("dataset", "add", "obs", url, "--branch", "main", "--depth", "3")
    assert added.code == 0, added.err
    assert "added" in added.out

    listed = json.loads(env.run("dataset", "list", "--json").out)
    assert [(d["name"], d["url"], d["branch"], d["depth"]) for d in listed] == [
        ("obs", url, "main", 3)
    ]
    shown = env.run("dataset", "show", "obs", "--json")
    assert shown.code == 0 and json.loads(shown.out)["url"] == url
    assert "obs" in env.run("dataset", "list").out

    assert "updated" in env.run("dataset", "add", "obs", url, "--push").out
    assert json.loads(env.run("dataset", "show", "obs", "--json").out)["push"] is True

    # A dataset in use by a tool is not removed from under it.
    assert env.run("register", "weather", "img", "--dataset", "obs").code == 0
    in_use = env.run("dataset", "rm", "obs")
    assert in_use.code == 2 and "weather" in one_error_line(in_use)
    assert env.run("unregister", "weather").code == 0

    removed = env.run("dataset", "rm", "obs")
    assert removed.code == 0, removed.err
    assert json.loads(env.run("dataset", "list", "--json").out) == []
    assert keys_under(store, prefix) == []
    assert env.run("dataset", "show", "obs").code == 2


def test_status(env: Env, etcd: EtcdCluster, prefix: str) -> None:
    assert env.run("register", "dummy", "img").code == 0
    assert env.run("dataset", "add", "obs", "git://h/obs").code == 0
    result = env.run("status", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["etcd"]["reachable"] is True
    assert data["etcd"]["endpoint"] in etcd.endpoints.split(",")
    assert data["etcd"]["version"].startswith("3.")
    assert data["prefix"] == prefix
    assert (data["tools"], data["datasets"], data["members"]) == (1, 1, 0)
    table = env.run("status")
    assert table.code == 0 and "reachable" in table.out


def test_config_masks_secrets_without_contacting_etcd(tmp_path: Path, prefix: str) -> None:
    # A closed port: `config` must not need etcd at all.
    closed = f"127.0.0.1:{free_port()}"
    masked = make_env(
        tmp_path, closed, prefix, MAOMAO_ETCD_USER="alice", MAOMAO_ETCD_PASSWORD="hunter2-secret"
    )
    result = masked.run("config", "--json")
    assert result.code == 0, result.err
    assert "hunter2-secret" not in result.out + result.err
    data = json.loads(result.out)
    assert data["etcd"]["password"] == "********"
    assert data["etcd"]["user"] == "alice"
    assert data["etcd"]["endpoints"] == [closed]
    assert data["etcd"]["prefix"] == prefix
    assert data["data"]["importdir"] == str(tmp_path / "data")
    assert data["worker"]["member"] == "member-a"
    text = masked.run("config")
    assert text.code == 0 and "hunter2-secret" not in text.out
    assert 'password = "********"' in text.out


def test_password_without_user_is_one_line(tmp_path: Path, prefix: str) -> None:
    env = make_env(tmp_path, f"127.0.0.1:{free_port()}", prefix, MAOMAO_ETCD_PASSWORD="pw")
    for args in (("config",), ("tools",)):
        result = env.run(*args)
        assert result.code == 2
        assert "user and password" in one_error_line(result)


def test_help_lists_the_commands(env: Env) -> None:
    result = env.run("--help")
    assert result.code == 0
    for command in ("register", "run", "schedule", "worker", "spikes", "tools", "dataset"):
        assert f"  {command} " in result.out, command


@pytest.mark.parametrize(
    "args", [("tools", "--bogus"), ("--bogus",), ("register",), ("nosuchcommand",)]
)
def test_usage_errors_exit_2_with_one_line(env: Env, args: tuple[str, ...]) -> None:
    result = env.run(*args)
    assert result.code == 2
    one_error_line(result)


def test_corrupt_record_is_skipped_with_one_warning(
    env: Env, store: EtcdStore, prefix: str
) -> None:
    assert env.run("register", "good", "img").code == 0
    store.put(f"{prefix}/tools/x", b"\x00garbage{")
    for args in (("tools", "--json"), ("tools",)):
        result = env.run(*args)
        assert result.code == 0, result.err
        assert "good" in result.out
        warnings = result.err.strip().splitlines()
        assert len(warnings) == 1, result.err
        assert f"{prefix}/tools/x" in warnings[0]
        assert warnings[0].startswith("warning:")
    assert [t["name"] for t in json.loads(env.run("tools", "--json").out)] == ["good"]
