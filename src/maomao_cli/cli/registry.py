"""`maomao register`, `unregister`, `tools`."""

from __future__ import annotations

import typer

from . import completion, output
from .state import use


def register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Tool name: [a-z0-9][a-z0-9._-]{0,62}."),
    image: str = typer.Argument(
        ..., help="Docker image reference, e.g. ghcr.io/group/collector:1.2."
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Dataset the tool writes into.",
        autocompletion=completion.datasets,
    ),
    author: str | None = typer.Option(None, "--author", help="Who maintains the tool."),
    description: str | None = typer.Option(None, "--description", help="What the tool collects."),
    env: list[str] = typer.Option(
        [], "--env", "-e", help="Environment variable KEY=VALUE (repeatable)."
    ),
    network: str | None = typer.Option(
        None, "--network", help="Container network: bridge (default) or none."
    ),
    memory: str | None = typer.Option(None, "--memory", help="Memory limit, e.g. 256m."),
    pids: int | None = typer.Option(None, "--pids", help="Process limit."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Run timeout in seconds (default 3600)."
    ),
    user: str | None = typer.Option(
        None, "--user", help="User to run as inside the container, e.g. 1000:1000."
    ),
    data_subdir: str | None = typer.Option(
        None, "--data-subdir", help="Folder inside the dataset to write into."
    ),
    spike_method: str | None = typer.Option(
        None,
        "--spike-method",
        metavar="robust|seed",
        help="Spike detection for this tool (default: [spikes] method).",
    ),
    sensitivity: float | None = typer.Option(
        None,
        "--sensitivity",
        help="Higher finds more spikes in this tool's data (default: [spikes] sensitivity).",
    ),
    min_history: int | None = typer.Option(
        None,
        "--min-history",
        metavar="POINTS",
        help="Points before the statistical rule takes over from the 2019 rule "
        "(default: [spikes] min_history).",
    ),
    max_data: str | None = typer.Option(
        None,
        "--max-data",
        metavar="SIZE",
        help="Most its data directory may hold, e.g. 500m or 2g (each member keeps the "
        "lower of this and its own [data] max_tool_bytes).",
    ),
    member_folders: bool | None = typer.Option(
        None,
        "--member-folders/--shared-folder",
        help="Dataset tools: each member writes into <data-subdir>/<member>/ (the default "
        "when it is scheduled --everywhere), or all into <data-subdir>/.",
    ),
    audit_tolerance: float | None = typer.Option(
        None,
        "--audit-tolerance",
        help="`maomao audit`: how far a member's control value may be from the majority's "
        "(default 0).",
    ),
) -> None:
    """Register a tool (a dockerized collector), or update it if it exists."""
    from ..services.registry import ToolSpec

    spec = ToolSpec(
        name=name,
        image=image,
        dataset=dataset,
        author=author,
        description=description,
        env=tuple(env) or None,  # no --env keeps the registered tool's
        network=network,
        memory=memory,
        pids=pids,
        timeout=timeout,
        user=user,
        data_subdir=data_subdir,
        spike_method=spike_method,
        sensitivity=sensitivity,
        min_history=min_history,
        max_data=max_data,
        member_folders=member_folders,
        audit_tolerance=audit_tolerance,
    )
    state = use(ctx)
    tool, created = state.services.registry.register_tool(spec)
    verb = "registered" if created else "updated"
    name, image = output.safe_markup(tool.name), output.safe_markup(tool.image)
    state.out.success(f"{verb} tool [bold]{name}[/bold] → {image}")


def unregister(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Tool name.", autocompletion=completion.tools),
) -> None:
    """Remove a tool from the registry (its data and runs stay)."""
    state = use(ctx)
    tool = state.services.registry.unregister_tool(name)
    state.out.success(f"unregistered tool [bold]{output.safe_markup(tool.name)}[/bold]")


def tools(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
    wide: bool = typer.Option(False, "--wide", help="Every column, however wide the terminal."),
) -> None:
    """List the registered tools."""
    state = use(ctx)
    found = sorted(state.services.registry.tools(), key=lambda t: t.name)
    if as_json:
        state.out.print_json([output.iso_times(t.to_dict(), "created", "updated") for t in found])
        return
    if not found:
        state.out.note("no tools registered; add one with `maomao register NAME IMAGE`")
        return
    state.out.print_table(
        output.table(
            "Tools",
            ["name", "image", "dataset", "author", "description", "updated"],
            (
                (
                    t.name,
                    t.image,
                    t.dataset or "-",
                    t.author or "-",
                    t.description or "",
                    output.when(t.updated),
                )
                for t in found
            ),
            whole=("name", "updated"),
            clip=("description", "image"),
            optional=("description", "author", "updated", "dataset"),
            width=state.out.fit(wide),
        ),
        wide=wide,
    )
