"""The app of one invocation: only the command it names, or the help-only root, and the
same outcome as the whole app for every argument list (help, usage errors, root options)."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from maomao_cli.adapters.containers import NullRunner
from maomao_cli.cli.app import app
from maomao_cli.cli.main import app_for, invoked_command
from maomao_cli.cli.root import COMMANDS
from maomao_cli.composition import Services
from maomao_cli.config import Settings
from maomao_cli.store.memory import MemoryStore


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["tools"], "tools"),
        (["tools", "--json"], "tools"),
        (["--etcd", "h:1", "--prefix", "/p", "runs", "-n", "2"], "runs"),
        (["--config=/x.toml", "--traceback", "schedule", "list"], "schedule"),
        (["-c", "/x.toml", "status"], "status"),
        (["-c/x.toml", "status"], "status"),
        (["--prefix=/p", "spikes", "--tool", "t"], "spikes"),
        ([], None),
        (["--help"], None),
        (["--version"], None),
        (["--bogus", "tools"], None),
        (["--", "tools"], None),
        (["--etcd"], None),  # the value is missing: Typer says so
    ],
)
def test_the_invoked_command_is_read_past_the_root_options(
    argv: list[str], name: str | None
) -> None:
    assert invoked_command(argv) == name


def test_one_command_is_wired_or_the_help_only_root() -> None:
    one = app_for(["--traceback", "tools"])
    assert [c.name for c in one.registered_commands] == ["tools"] and not one.registered_groups
    group = app_for(["schedule", "list"])
    assert [g.name for g in group.registered_groups] == ["schedule"]
    assert group.registered_commands == []
    for help_only in (["--help"], ["tool"], []):
        names = [c.name for c in app_for(help_only).registered_commands]
        assert names == list(COMMANDS), "every command is listed, none is imported"
    assert app_for(["--", "tools"]) is app
    assert len(app.registered_commands) > 10, "the app itself is left whole"


def test_each_summary_is_the_first_paragraph_of_its_commands_help() -> None:
    whole = typer.main.get_command(app)
    assert isinstance(whole, typer.core.TyperGroup)
    assert list(whole.commands) == list(COMMANDS), "the table is the app's order"
    for name, command in COMMANDS.items():
        first = (whole.commands[name].help or "").split("\n\n")[0]
        assert " ".join(first.split()) == command.summary, name


@pytest.mark.parametrize(
    "argv",
    [
        ["tools"],
        ["--traceback", "tools", "--json"],
        ["--prefix", "/other", "runs", "-n", "2"],
        ["runs", "-n", "0"],
        ["schedule"],
        ["schedule", "list", "--json"],
        ["schedule", "nope"],
        ["tools", "--bogus"],
        ["tool"],
        ["tools", "--help"],
        ["schedule", "list", "--help"],
        ["status", "--json"],
        ["spikes"],
        ["run"],
        [],
        ["--help"],
        ["-h"],
        ["--version"],
        ["--bogus", "tools"],
        ["--", "tools"],
        ["--etcd"],
        ["--prefix", "/p", "tool"],
        ["--traceback", "--help"],
    ],
)
@pytest.mark.parametrize("columns", ["80", "50"])  # help text wraps and summaries shorten
def test_the_outcome_is_the_whole_apps(argv: list[str], columns: str) -> None:
    store = MemoryStore()

    def invoke(target: object) -> tuple[int, str, str]:
        services = Services(Settings(), store=store, runner=NullRunner())
        result = CliRunner().invoke(
            target,  # type: ignore[arg-type]
            argv,
            obj=services,
            env={"COLUMNS": columns},
        )
        return result.exit_code, result.stdout, result.stderr

    assert invoke(app_for(argv)) == invoke(app)
