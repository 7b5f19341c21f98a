"""Wires the Typer groups; each command lives in the module of its group."""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..context import Context
from ..errors import ExitStatus, MaomaoError
from . import cluster, datasets, output, registry, runs, schedules, spikes, state, status, worker
from . import serve as serve_cmd
from ._compat import UsageError

app = typer.Typer(
    name="maomao",
    help="MAO-MAO: collaborative periodic data collection with dockerized tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"maomao {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
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
) -> None:
    _setup_logging()
    state.set_context(Context(config, etcd, prefix))


app.command("register")(registry.register)
app.command("unregister")(registry.unregister)
app.command("tools")(registry.tools)
app.command("run")(runs.run)
app.command("runs")(runs.runs)
app.command("logs")(runs.logs)
app.add_typer(schedules.app, name="schedule")
app.command("worker")(worker.worker)
app.command("members")(worker.members)
app.command("spikes")(spikes.spikes)
app.add_typer(datasets.app, name="dataset")
app.add_typer(cluster.app, name="etcd")
app.command("status")(status.status)
app.command("config")(status.show_config)
app.command("serve")(serve_cmd.serve)


def _setup_logging() -> None:
    import logging

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{record.levelname.lower()}: {record.getMessage()}"

    logger = logging.getLogger("maomao")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLine())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main() -> None:
    """Entry point: the one place that turns errors into messages and exit statuses."""
    output.json_mode = "--json" in sys.argv
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.ctx.get_help() if exc.ctx else "")
            raise SystemExit(int(ExitStatus.BAD_INPUT)) from None
        command = exc.ctx.command_path if exc.ctx else "maomao"
        output.fail(ExitStatus.BAD_INPUT, exc.format_message(), f"see `{command} --help`")
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        output.fail(ExitStatus.INTERRUPTED, "interrupted")
    except KeyboardInterrupt:
        output.fail(ExitStatus.INTERRUPTED, "interrupted")
    except MaomaoError as exc:
        output.fail_with(exc)
    finally:
        state.ctx().close()
    raise SystemExit(code if isinstance(code, int) else 0)
