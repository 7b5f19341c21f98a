"""`maomao etcd ...`: the local etcd, and the collaboration's cluster."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import ExitStatus, Unhealthy
from . import output
from .state import CliState, use

if TYPE_CHECKING:
    from ..services.cluster.status import ClusterStatus

app = typer.Typer(
    help="Run a local etcd; found, join, leave and inspect the collaboration's cluster.",
    no_args_is_help=True,
)


@app.command("start")
def start(
    ctx: typer.Context,
) -> None:
    """Start this machine's etcd: its cluster member if it has one, else a local
    single-node etcd (data kept under the state dir)."""
    state = use(ctx)
    from ..services import localetcd

    settings = state.services.settings
    cluster = state.services.cluster
    if cluster.has_member():
        member, pid, started = cluster.start_member()
        verb = "started" if started else "already running"
        state.out.success(f"cluster member {member.name} {verb} on {member.endpoint} (pid {pid})")
        return
    local, started = localetcd.start(settings)
    if started:
        state.out.success(
            f"etcd started on {local.endpoint} (pid {local.pid}, data in {local.data_dir})"
        )
    else:
        state.out.success(f"etcd already running on {local.endpoint} (pid {local.pid})")


@app.command("stop")
def stop(
    ctx: typer.Context,
) -> None:
    """Stop this machine's etcd (its data and its membership stay)."""
    state = use(ctx)
    from ..services import localetcd

    settings = state.services.settings
    cluster = state.services.cluster
    if cluster.has_member():
        member, pid = cluster.stop_member()
        if pid is None:
            state.out.note(f"cluster member {member.name} is not running here")
        else:
            state.out.success(
                f"cluster member {member.name} stopped (pid {pid}); "
                "`maomao etcd start` brings it back"
            )
        return
    stopped = localetcd.stop(settings)
    if stopped is None:
        state.out.note("no local etcd is running")
    else:
        state.out.success(f"etcd stopped (pid {stopped.pid}); data kept in {stopped.data_dir}")


def _print_worker_config(state: CliState, snippet: str, endpoints_file: Path) -> None:
    state.out.print(
        f"Workers on this machine: put this in config.toml ({endpoints_file} lists every member):",
        markup=False,
    )
    state.out.print(snippet, markup=False)


@app.command("init")
def init(
    ctx: typer.Context,
    listen: str = typer.Option(
        ..., "--listen", help="This machine's IP address the other members reach."
    ),
    client_port: int = typer.Option(2379, "--client-port", min=1, max=65535, help="Client port."),
    peer_port: int = typer.Option(2380, "--peer-port", min=1, max=65535, help="Peer port."),
    name: str | None = typer.Option(
        None, "--name", help="Member name (default: [worker] member or the host name)."
    ),
    ca_cert: Path | None = typer.Option(
        None, "--ca-cert", help="Use this CA certificate (default: create a CA)."
    ),
    ca_key: Path | None = typer.Option(None, "--ca-key", help="The key of --ca-cert."),
    no_tls: bool = typer.Option(
        False, "--no-tls", help="Plain HTTP between members and clients (trusted networks only)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Found a collaboration: start a one-member etcd cluster that others can join."""
    state = use(ctx)
    founded = state.services.cluster.init(
        listen=listen,
        client_port=client_port,
        peer_port=peer_port,
        name=name,
        ca_cert=ca_cert,
        ca_key=ca_key,
        tls=not no_tls,
    )
    member = founded.member
    if as_json:
        state.out.print_json(
            {
                "name": member.name,
                "member_id": f"{member.member_id:x}",
                "endpoint": member.endpoint,
                "peer_url": member.peer_url,
                "pid": founded.pid,
                "tls": member.tls,
                "created_ca": founded.created_ca,
                "token_file": str(founded.token_file),
                "endpoints_file": str(founded.endpoints_file),
                "config": founded.config_snippet(),
            }
        )
        return
    state.out.success(
        f"cluster founded: member {member.name} ({member.member_id:x}) on {member.endpoint}, "
        f"pid {founded.pid}" + (", new CA created" if founded.created_ca else "")
    )
    state.out.print(
        f"To join, copy {founded.token_file} (secret: it holds the CA key) to the new machine "
        f"and run there:\n  maomao etcd join {member.endpoint} --token join-token.json",
        markup=False,
    )
    _print_worker_config(state, founded.config_snippet(), founded.endpoints_file)


@app.command("join")
def join(
    ctx: typer.Context,
    endpoint: str = typer.Argument(..., help="A member's client endpoint host:port."),
    token: Path | None = typer.Option(
        None, "--token", help="The join token written by `maomao etcd init`."
    ),
    ca_cert: Path | None = typer.Option(
        None, "--ca-cert", help="The collaboration's CA certificate (instead of --token)."
    ),
    ca_key: Path | None = typer.Option(None, "--ca-key", help="The key of --ca-cert."),
    listen: str | None = typer.Option(
        None, "--listen", help="This machine's IP (default: the address that reaches ENDPOINT)."
    ),
    client_port: int = typer.Option(2379, "--client-port", min=1, max=65535, help="Client port."),
    peer_port: int = typer.Option(2380, "--peer-port", min=1, max=65535, help="Peer port."),
    name: str | None = typer.Option(
        None, "--name", help="Member name (default: [worker] member or the host name)."
    ),
    no_tls: bool = typer.Option(False, "--no-tls", help="The cluster runs without TLS."),
    force: bool = typer.Option(
        False, "--force", help="Join even when the cluster could not tolerate a failure meanwhile."
    ),
    wait: float = typer.Option(120.0, "--wait", min=1, help="Seconds to wait for catching up."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Join the cluster at ENDPOINT: add this machine as a learner, start its etcd,
    wait until it has caught up, promote it to a voting member."""
    state = use(ctx)
    cluster = state.services.cluster
    joined = cluster.join(
        endpoint,
        token=token,
        ca_cert=ca_cert,
        ca_key=ca_key,
        listen=listen,
        client_port=client_port,
        peer_port=peer_port,
        name=name,
        tls=not no_tls,
        force=force,
        wait=wait,
        progress=state.out.note,
    )
    member = joined.member
    snippet = cluster.worker_config(member)
    from ..services.cluster import rules

    warning = rules.tolerance_warning(len(joined.members))
    if as_json:
        state.out.print_json(
            {
                "name": member.name,
                "member_id": f"{member.member_id:x}",
                "endpoint": member.endpoint,
                "pid": joined.pid,
                "members": joined.members,
                "endpoints_file": str(joined.endpoints_file),
                "config": snippet,
                "warning": warning,
            }
        )
        return
    state.out.success(
        f"joined as voting member {member.name} ({member.member_id:x}) on {member.endpoint}; "
        f"members: {output.safe_markup(', '.join(joined.members))}"
    )
    if warning is not None:
        state.out.print(f"[yellow]warning[/yellow]: {warning}")
    _print_worker_config(state, snippet, joined.endpoints_file)


@app.command("leave")
def leave(
    ctx: typer.Context,
    force: bool = typer.Option(
        False, "--force", help="Leave even when the cluster would lose its quorum."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove this machine's member from the cluster and stop its etcd."""
    state = use(ctx)
    left = state.services.cluster.leave(force=force)
    if as_json:
        state.out.print_json(
            {
                "name": left.name,
                "member_id": f"{left.member_id:x}",
                "remaining": left.remaining,
                "stopped_pid": left.stopped_pid,
                "removed_files": left.removed_files,
            }
        )
        return
    state.out.success(
        f"member {output.safe_markup(left.name)} left the cluster; "
        f"remaining: {output.safe_markup(', '.join(left.remaining)) or 'none'}"
    )
    for removed in left.removed_files:
        state.out.note(f"removed {removed} (the cluster's secrets stay with its members)")


def _size(size: int | None) -> str:
    return "" if size is None else f"{size / 1024:.0f} KiB"


@app.command("status")
def status(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Show the cluster: members, leader, health, versions, raft index, fault tolerance.

    Exits 0 when every voting member is healthy, 1 when the quorum holds but a voting
    member is down, 3 when the quorum is lost (docs/cluster.md)."""
    state = use(ctx)
    from ..services import localetcd

    settings = state.services.settings
    cluster = state.services.cluster
    view = cluster.status()
    if view.this_member is None:
        local = localetcd.inspect(settings)
        local_info: dict[str, Any] = {
            "running": local.running,
            "pid": local.pid,
            "data_dir": str(local.data_dir),
        }
    else:
        local_info = {
            "running": view.local_pid is not None,
            "pid": view.local_pid,
            "data_dir": str(cluster.paths.data),
            "member": view.this_member,
        }
    from ..services.cluster import rules

    first = next((m for m in view.members if m.reachable), None)
    data = {
        "local": local_info,
        "endpoint": (first.client_urls[0] if first and first.client_urls else None),
        "version": first.version if first else None,
        "raft_index": first.raft_index if first else None,
        "db_size": first.db_size if first else None,
        "health": rules.health(view.voters, view.healthy_voters),
        **view.as_dict(),
    }
    if as_json:
        state.out.print_json(data)
    else:
        _render_status(state, view)
    _exit_for_health(str(data["health"]), view.healthy_voters, view.voters)


def _exit_for_health(health: str, healthy: int, voters: int) -> None:
    """The status a script reads; the view above already said why."""
    if health == "no-quorum":
        raise Unhealthy(
            f"the cluster has no quorum: {healthy} of {voters} voting members healthy",
            exit_status=ExitStatus.NO_QUORUM,
            reported=True,
        )
    if health == "degraded":
        raise Unhealthy(f"{voters - healthy} of {voters} voting members down", reported=True)


def _render_status(state: CliState, view: ClusterStatus) -> None:
    rows = []
    for m in view.members:
        role = "learner" if m.is_learner else ("leader" if m.is_leader else "voter")
        health = "healthy" if m.healthy else (m.problem or "unhealthy")
        name = m.name or "(not started)"
        if m.name and m.name == view.this_member:
            name += " (here)"
        rows.append(
            [
                name,
                f"{m.id:x}",
                role,
                health,
                ", ".join(m.client_urls),
                m.version or "",
                m.raft_index if m.raft_index is not None else "",
                _size(m.db_size),
            ]
        )
    console = state.out.console
    console.print(
        output.table(
            "etcd members",
            ["name", "id", "role", "health", "client URLs", "version", "raft index", "db size"],
            rows,
        )
    )
    if view.fault_tolerance < 0:
        summary = (
            f"[red]quorum lost[/red]: {view.healthy_voters} of {view.voters} voting members "
            f"healthy, {view.quorum} needed"
        )
    else:
        summary = (
            f"{view.healthy_voters} of {view.voters} voting members healthy; quorum {view.quorum}; "
            f"fault tolerance {view.fault_tolerance}"
        )
    console.print(summary)
