"""Rendering: Rich tables on a terminal, JSON with --json, and the one error path."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ExitStatus, MaomaoError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


# Rich is imported on first output, not at start-up: `maomao --help` must stay fast.
@cache
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


# Set by commands that were given --json, so errors come out as JSON as well.
json_mode = False


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def fail(
    code: int | ExitStatus, message: str, hint: str | None = None, kind: str = "error"
) -> NoReturn:
    """Print one error (one line, plus a hint line when there is one) and exit."""
    if json_mode:
        print_json({"error": {"code": kind, "message": message, "hint": hint}})
    else:
        # One line, so scripts and people see the whole story at once.
        text = f"error: {message}" + (f" (hint: {hint})" if hint else "")
        err_console().print(text, markup=False, soft_wrap=True)
    raise SystemExit(int(code))


def fail_with(exc: MaomaoError) -> NoReturn:
    fail(exc.exit_status, exc.message, exc.hint, exc.code)


def success(message: str) -> None:
    console().print(f"[green]✓[/green] {message}")


def note(message: str) -> None:
    err_console().print(message, style="dim", markup=False)


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
