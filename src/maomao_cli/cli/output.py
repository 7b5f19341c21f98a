"""Rendering: Rich tables on a terminal, JSON with --json, and the one error path."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class Output:
    """Where a command's results and errors go: Rich on a terminal, JSON with --json.

    One per invocation, carried in the Typer context (see `state.py`), so nothing about
    the output mode lives in a module global."""

    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode

    # Rich is imported on first output, not at start-up: `maomao --help` must stay fast.
    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(highlight=False)

    @cached_property
    def err_console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    def print_json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        sys.stdout.flush()

    def error(self, code: str, message: str, hint: str | None = None) -> None:
        """One error: one line (with its hint) on stderr, or one JSON object on stdout."""
        if self.json_mode:
            self.print_json({"error": {"code": code, "message": message, "hint": hint}})
            return
        # One line, so scripts and people see the whole story at once.
        text = f"error: {message}" + (f" (hint: {hint})" if hint else "")
        self.err_console.print(text, markup=False, soft_wrap=True)

    def text(self, line: str) -> None:
        """Plain text on stdout, as it is (no markup, no wrapping)."""
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def print(self, renderable: Any, **options: Any) -> None:
        self.console.print(renderable, **options)

    def success(self, message: str) -> None:
        self.console.print(f"[green]✓[/green] {message}")

    def note(self, message: str) -> None:
        self.err_console.print(message, style="dim", markup=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    from rich.table import Table

    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(
            *("" if cell is None else cell if isinstance(cell, str) else str(cell) for cell in row)
        )
    return grid


def when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
