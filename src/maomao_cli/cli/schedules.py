"""`maomao schedule ...` (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Schedules: list, show, pause, resume, rm.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List schedules."""
