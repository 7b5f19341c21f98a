"""`maomao dataset ...`: the shared registry of git datasets."""

from __future__ import annotations

import typer

from . import output
from .state import ctx

app = typer.Typer(help="Git datasets shared by the collaboration.", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name."),
    url: str = typer.Argument(
        ..., help="Git URL: https://, ssh://, git://, file://, user@host:path or a path."
    ),
    branch: str | None = typer.Option(
        None, "--branch", "-b", help="Branch to follow (default: the remote's HEAD)."
    ),
    push: bool = typer.Option(
        False, "--push/--no-push", help="Push each run's commit to the remote."
    ),
    depth: int | None = typer.Option(None, "--depth", help="Clone only this many recent commits."),
) -> None:
    """Add a dataset (or update it)."""
    dataset, created = ctx().registry.add_dataset(name, url, branch=branch, push=push, depth=depth)
    output.success(
        f"{'added' if created else 'updated'} dataset [bold]{dataset.name}[/bold] → {dataset.url}"
    )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """List the datasets."""
    found = sorted(ctx().registry.datasets(), key=lambda d: d.name)
    if as_json:
        output.print_json([d.to_dict() for d in found])
        return
    if not found:
        output.note("no datasets; add one with `maomao dataset add NAME URL`")
        return
    output.console().print(
        output.table(
            "Datasets",
            ["name", "url", "branch", "push", "depth"],
            (
                (
                    d.name,
                    d.url,
                    d.branch or "(default)",
                    "yes" if d.push else "no",
                    d.depth or "full",
                )
                for d in found
            ),
        )
    )


@app.command("show")
def show(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one dataset."""
    dataset = ctx().registry.get_dataset(name)
    if as_json:
        output.print_json(dataset.to_dict())
        return
    for key, value in dataset.to_dict().items():
        output.console().print(f"[bold]{key}[/bold]: {value}", markup=True)


@app.command("rm")
def rm(name: str = typer.Argument(...)) -> None:
    """Remove a dataset from the registry (local clones stay)."""
    dataset = ctx().registry.remove_dataset(name)
    output.success(f"removed dataset [bold]{dataset.name}[/bold]")
