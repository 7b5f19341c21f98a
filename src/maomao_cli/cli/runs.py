"""`maomao run`, `runs`, `logs` (being built)."""

from __future__ import annotations

import typer

from . import output


def run(name: str = typer.Argument(..., help="Tool name.")) -> None:
    """Run a tool now, or schedule it with --daily/--weekly/--hourly/--cron."""
    output.fail(1, "not available yet")


def runs() -> None:
    """List run records, newest first."""
    output.fail(1, "not available yet")


def logs(run_id: str = typer.Argument(...)) -> None:
    """Print the stored output tail of a run."""
    output.fail(1, "not available yet")
