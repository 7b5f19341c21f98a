"""`maomao status` and `maomao config`."""

from __future__ import annotations

import typer

from .. import __version__
from . import output
from .state import use


def status(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Is etcd reachable, which version, and what the collaboration holds."""
    state = use(ctx)
    context = state.services
    keys = context.keys
    # An unreachable etcd raises here; main() prints the one error (JSON with --json).
    store = context.store
    cluster = store.status()
    data = {
        "maomao": __version__,
        "etcd": {"reachable": True, "endpoint": cluster.endpoint, "version": cluster.version},
        "prefix": keys.prefix,
        "tools": store.count(keys.tools()),
        "datasets": store.count(keys.datasets()),
        "schedules": store.count(keys.schedules()),
        "members": store.count(keys.members()),
        "runs": store.count(keys.runs()),
    }
    if as_json:
        state.out.print_json(data)
        return
    version, endpoint = output.safe_markup(cluster.version), output.safe_markup(cluster.endpoint)
    state.out.print(
        f"[green]●[/green] etcd {version} reachable at {endpoint} (prefix {output.safe_markup(keys.prefix)})"
    )
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
