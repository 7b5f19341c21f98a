"""`maomao etcd ...`: the local etcd, and the collaboration's cluster."""

from __future__ import annotations

import typer

from . import output
from .state import ctx

app = typer.Typer(help="Run a local etcd, and inspect the cluster.", no_args_is_help=True)


@app.command("start")
def start() -> None:
    """Start a local single-node etcd in the background (data kept under the state dir)."""
    from ..services import localetcd

    local, started = localetcd.start(ctx().settings)
    if started:
        output.success(
            f"etcd started on {local.endpoint} (pid {local.pid}, data in {local.data_dir})"
        )
    else:
        output.success(f"etcd already running on {local.endpoint} (pid {local.pid})")


@app.command("stop")
def stop() -> None:
    """Stop the local etcd started with `maomao etcd start` (its data stays)."""
    from ..services import localetcd

    stopped = localetcd.stop(ctx().settings)
    if stopped is None:
        output.note("no local etcd is running")
    else:
        output.success(f"etcd stopped (pid {stopped.pid}); data kept in {stopped.data_dir}")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the local etcd process and the cluster it serves."""
    from ..services import localetcd

    context = ctx()
    local = localetcd.inspect(context.settings)
    cluster = context.store.status()
    data = {
        "local": {"running": local.running, "pid": local.pid, "data_dir": str(local.data_dir)},
        "endpoint": cluster.endpoint,
        "version": cluster.version,
        "leader": f"{cluster.leader:x}",
        "raft_index": cluster.raft_index,
        "db_size": cluster.db_size,
    }
    if as_json:
        output.print_json(data)
        return
    output.console().print(
        output.table(
            "etcd",
            ["endpoint", "version", "leader", "raft index", "db size", "local process"],
            [
                [
                    cluster.endpoint,
                    cluster.version,
                    data["leader"],
                    cluster.raft_index,
                    f"{cluster.db_size / 1024:.0f} KiB",
                    f"pid {local.pid}" if local.running else "not started here",
                ]
            ],
        )
    )
