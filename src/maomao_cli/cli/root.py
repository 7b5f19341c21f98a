"""The root of the command line: its options, and the table of its commands.

The table names each command's module instead of importing it: one invocation imports
only the module of the command it runs (cli/main.py), and root help is drawn from the
summaries here. tests/cli/test_app_for.py holds the summaries to the docstrings and every
outcome to the whole app's (cli/app.py)."""

from __future__ import annotations

import sys
from importlib import import_module
from typing import NamedTuple

import typer

from .. import __version__
from ._compat import install_plain_coercion
from .boundary import Boundary
from .state import use

install_plain_coercion()


class Command(NamedTuple):
    module: str  # in maomao_cli.cli
    attribute: str  # the command's function, or the group's Typer app
    group: bool
    summary: str  # the first paragraph of its help, on one line


# In the order `maomao --help` lists them (Typer lists commands before groups).
COMMANDS: dict[str, Command] = {
    "register": Command(
        "registry",
        "register",
        False,
        "Register a tool (a dockerized collector), or update it if it exists.",
    ),
    "unregister": Command(
        "registry",
        "unregister",
        False,
        "Remove a tool from the registry (its data and runs stay).",
    ),
    "tools": Command("registry", "tools", False, "List the registered tools."),
    "run": Command(
        "runs",
        "run",
        False,
        "Run a tool now, or schedule it with --daily/--weekly/--hourly/--cron.",
    ),
    "logs": Command(
        "runs",
        "logs",
        False,
        "Print the stored output tail of a run (control characters shown escaped); --full"
        " prints every line, kept by the member that ran it.",
    ),
    "coverage": Command(
        "coverage",
        "coverage",
        False,
        "Expected firings per schedule against what happened: gaps and a per-day strip.",
    ),
    "worker": Command(
        "worker",
        "worker",
        False,
        "Run the worker: follow schedules, claim due firings, run tools, detect spikes.",
    ),
    "members": Command(
        "worker", "members", False, "List the live members (workers) of the collaboration."
    ),
    "spikes": Command(
        "spikes",
        "spikes",
        False,
        "Spikes in a tool's control metric: list what workers found, follow, or detect anew.",
    ),
    "audit": Command(
        "audit",
        "audit",
        False,
        "Compare the members' snapshots of one --everywhere firing: which members agree,"
        " the majority, the odd ones out, the files that differ; a control value off the"
        " majority's by more than the tool's --audit-tolerance is stored as a divergence.",
    ),
    "status": Command(
        "status",
        "status",
        False,
        "Is etcd reachable, its storage (size, quota, revision, compaction, alarms), and what"
        " the collaboration holds. Exits 1 on an etcd alarm, 3 when the cluster has no quorum.",
    ),
    "config": Command(
        "status",
        "show_config",
        False,
        "Print the effective settings (flags > environment > file > defaults), secrets masked.",
    ),
    "serve": Command(
        "serve",
        "serve",
        False,
        "Serve the HTTP API (the 2019 routes and /v1/) until interrupted.",
    ),
    "runs": Command(
        "runs",
        "runs_app",
        True,
        "List run records, newest first; `runs show RUN` shows one.",
    ),
    "schedule": Command(
        "schedules",
        "app",
        True,
        "Schedules: list, show, pause, resume, trigger, backfill, rm.",
    ),
    "dataset": Command("datasets", "app", True, "Git datasets shared by the collaboration."),
    "etcd": Command(
        "cluster",
        "app",
        True,
        "Run a local etcd; found, join, leave and inspect the collaboration's cluster.",
    ),
}


def wire(target: typer.Typer, name: str, command: Command) -> None:
    """Import `command`'s module and add it to `target` under `name`."""
    found = getattr(import_module(f"{__package__}.{command.module}"), command.attribute)
    if command.group:
        target.add_typer(found, name=name)
    else:
        target.command(name)(found)


app = typer.Typer(
    name="maomao",
    help="MAO-MAO: collaborative periodic data collection with dockerized tools.",
    cls=Boundary,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(ctx: typer.Context, value: bool) -> None:
    if value:
        use(ctx).out.text(f"maomao {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Config file (default: $MAOMAO_CONFIG or ~/.config/maomao/config.toml).",
        metavar="PATH",
    ),
    etcd: str | None = typer.Option(
        None,
        "--etcd",
        help="etcd endpoints host:port[,host:port] (overrides MAOMAO_ETCD_ENDPOINTS).",
        metavar="ENDPOINTS",
    ),
    prefix: str | None = typer.Option(
        None, "--prefix", help="Key prefix in etcd (default /maomao)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    traceback: bool = typer.Option(
        False, "--traceback", help="On an internal error, show its stack (or MAOMAO_TRACEBACK=1)."
    ),
) -> None:
    from ..composition import Services

    _setup_logging()
    state = use(ctx)
    if state.injected is None:
        state.built = Services.from_options(config, etcd, prefix)


def _setup_logging() -> None:
    import logging

    from .output import safe

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{record.levelname.lower()}: {safe(record.getMessage())}"

    logger = logging.getLogger("maomao")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLine())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
