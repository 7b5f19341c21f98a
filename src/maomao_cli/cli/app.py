"""Wires the Typer groups; each command lives in the module of its group."""

from __future__ import annotations

import copy
import os
import sys

import typer

from .. import __version__
from . import audit, cluster, coverage, datasets, registry, runs, schedules, spikes, status, worker
from . import serve as serve_cmd
from ._compat import install_plain_coercion
from .boundary import Boundary
from .state import use

install_plain_coercion()

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


app.command("register")(registry.register)
app.command("unregister")(registry.unregister)
app.command("tools")(registry.tools)
app.command("run")(runs.run)
app.add_typer(runs.runs_app, name="runs")
app.command("logs")(runs.logs)
app.add_typer(schedules.app, name="schedule")
app.command("coverage")(coverage.coverage)
app.command("worker")(worker.worker)
app.command("members")(worker.members)
app.command("spikes")(spikes.spikes)
app.command("audit")(audit.audit)
app.add_typer(datasets.app, name="dataset")
app.add_typer(cluster.app, name="etcd")
app.command("status")(status.status)
app.command("config")(status.show_config)
app.command("serve")(serve_cmd.serve)


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


def app_for(argv: list[str]) -> typer.Typer:
    """The app with only the command `argv` invokes: Typer turns every command's
    parameters into Click's at each start (about 15 ms for all of them), and one command
    needs only its own. Anything else (root help, a misspelt command, shell completion)
    gets the whole app, so what a user sees is the same either way."""
    name = invoked_command(argv)
    if name is None or any(key.endswith("_COMPLETE") for key in os.environ):
        return app
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    one = copy.copy(app)
    one.registered_commands, one.registered_groups = commands, groups
    return one


def main() -> None:
    """Entry point; `Boundary` maps every outcome to an exit status."""
    app_for(sys.argv[1:])()
