"""The console entry: it imports only what the invocation needs.

Typer turns every command's parameters into Click's at each start (about 15 ms for all
of them) and the command modules import their services; one command needs only its own.
Root help is drawn from the summaries in cli/root.py without importing any command.
Anything else (shell completion, an argument list this cannot read) gets the whole app,
so what a user sees is the same either way (tests/cli/test_app_for.py)."""

from __future__ import annotations

import copy
import os
import sys

import typer

from . import root

# The root options that take a value (the next argument, or after "=") and the flag.
_VALUED = ("--config", "-c", "--etcd", "--prefix")
_FLAG = "--traceback"


def _root_option_width(arg: str) -> int:
    """How many arguments a root option at `arg` takes up; 0 when it is none of them."""
    if arg in _VALUED:
        return 2
    attached = arg.startswith(("--config=", "--etcd=", "--prefix=")) or (
        arg.startswith("-c") and not arg.startswith("--")  # -cPATH
    )
    return 1 if attached or arg == _FLAG else 0


def invoked_command(argv: list[str]) -> str | None:
    """The command `argv` invokes (after the root options), or None when that takes
    more than reading its name: root help or version, an option unknown here, "--"."""
    i = 0
    while i < len(argv):
        if width := _root_option_width(argv[i]):
            i += width
        elif argv[i].startswith("-"):
            return None
        else:
            return argv[i]
    return None


def _whole() -> typer.Typer:
    from .app import app

    return app


def _only(name: str) -> typer.Typer:
    one = copy.copy(root.app)
    one.registered_commands, one.registered_groups = [], []
    root.wire(one, name, root.COMMANDS[name])
    return one


def _help_only() -> typer.Typer:
    """The root with each command's summary and nothing behind it: what root help, the
    version, a misspelt command and a root usage error need."""

    def never_run() -> None:
        raise RuntimeError("a command of the help-only app was invoked")

    one = copy.copy(root.app)
    one.registered_commands, one.registered_groups = [], []
    for name, command in root.COMMANDS.items():
        one.command(name, help=command.summary)(never_run)
    return one


def app_for(argv: list[str]) -> typer.Typer:
    """The app to run `argv` with: the invoked command alone, the help-only root, or
    (shell completion, "--" before the command) the whole app."""
    if any(key.endswith("_COMPLETE") for key in os.environ):
        return _whole()
    name = invoked_command(argv)
    if name in root.COMMANDS:
        return _only(name)
    if name is None and "--" in argv:
        return _whole()
    return _help_only()


def main() -> None:
    """Entry point; `Boundary` maps every outcome to an exit status."""
    app_for(sys.argv[1:])()
