"""`maomao status` and `maomao config`."""

from __future__ import annotations

from typing import Any

import typer

from .. import __version__
from . import output
from .state import use


def status(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Is etcd reachable, its storage (size, quota, revision, compaction, alarms), and what
    the collaboration holds. Exits 1 on an etcd alarm, 3 when the cluster has no quorum."""
    from ..errors import Unhealthy
    from ..services import storehealth

    state = use(ctx)
    context = state.services
    keys = context.keys
    # An unreachable etcd (or one without quorum) raises here; the boundary prints it.
    store = context.store
    cluster = store.status()
    warnings = storehealth.warnings(cluster)
    data = {
        "maomao": __version__,
        "etcd": {
            "reachable": True,
            "endpoint": cluster.endpoint,
            "version": cluster.version,
            "revision": cluster.revision,
            "db_size": cluster.db_size,
            "quota": cluster.quota,
            "compaction": storehealth.compaction(cluster),
            "alarms": list(cluster.alarms),
        },
        "prefix": keys.prefix,
        "tools": store.count(keys.tools()),
        "datasets": store.count(keys.datasets()),
        "schedules": store.count(keys.schedules()),
        "members": store.count(keys.members()),
        "runs": store.count(keys.runs()),
        "warnings": warnings,
    }
    if as_json:
        state.out.print_json(data)
    else:
        _render(state, data, cluster, keys.prefix)
    if cluster.alarms:
        raise Unhealthy(warnings[0], reported=True)


def _render(state: Any, data: dict[str, Any], cluster: Any, prefix: str) -> None:
    version, endpoint = output.safe_markup(cluster.version), output.safe_markup(cluster.endpoint)
    mark = "[red]●[/red]" if data["warnings"] else "[green]●[/green]"
    state.out.print(
        f"{mark} etcd {version} reachable at {endpoint} (prefix {output.safe_markup(prefix)})"
    )
    quota = f" of {cluster.quota / 2**20:.0f} MiB quota" if cluster.quota else ""
    state.out.print(
        f"  db {cluster.db_size / 2**20:.1f} MiB{quota}; revision {cluster.revision}; "
        f"compaction {output.safe_markup(data['etcd']['compaction'])}"
    )
    for warning in data["warnings"]:
        state.out.print(f"  [yellow]warning[/yellow]: {output.safe_markup(warning)}")
    state.out.print(
        output.table(
            None,
            ["tools", "datasets", "schedules", "live members", "runs"],
            [[data["tools"], data["datasets"], data["schedules"], data["members"], data["runs"]]],
        )
    )


def show_config(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Print the effective settings (flags > environment > file > defaults), secrets masked."""
    state = use(ctx)
    from ..config import as_dict

    settings = as_dict(state.services.settings)
    if as_json:
        state.out.print_json(settings)
        return
    state.out.print(f"[dim]# config file: {settings.pop('source') or '(none: defaults)'}[/dim]")
    for section, table in settings.items():
        state.out.print(f"\n[{section}]", markup=False, style="bold")
        for key, value in table.items():
            # TOML has no null: an unset key is shown commented out, as in config.toml.
            line = f"# {key} = (unset)" if value is None else f"{key} = {_toml(value)}"
            state.out.print(line, markup=False)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)
