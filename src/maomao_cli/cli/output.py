"""Rendering: Rich tables on a terminal, JSON with --json, and the one error path.

Every string another member can write (a tool's author, a run's error, a container's
output...) is untrusted: `safe()` shows its control characters escaped, so no escape
sequence reaches the terminal. Every line and table cell below goes through it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


@cache
def _unsafe(newlines: bool) -> re.Pattern[str]:
    """Control characters (validation.CONTROL_CHARACTERS: ESC, CSI, OSC, BEL, C1, CR, bidi
    overrides...) and lone surrogates (bytes that were not UTF-8, which cannot even be
    written to a UTF-8 stream); newlines too when asked. Built on first use, so that
    `maomao --help` compiles no pattern it does not need."""
    from ..validation import CONTROL_CHARACTERS, SURROGATES

    newline = "\n" if newlines else ""
    return re.compile(f"[{CONTROL_CHARACTERS}{SURROGATES}{newline}]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """`text` as one line with every control character shown escaped (ESC as `\\x1b`)."""
    return _unsafe(True).sub(_escaped, text)


def safe_lines(text: str) -> str:
    """Like `safe`, but newlines stay: for text of several lines."""
    return _unsafe(False).sub(_escaped, text)


def safe_markup(text: str) -> str:
    """`safe(text)` for a Rich markup string: `[` cannot open a tag (or an OSC 8 link)."""
    from rich.markup import escape

    return escape(safe(text))


def styled(text: str, style: str) -> Text:
    """A table cell in a style, its text shown as it is (escaped, never markup)."""
    from rich.text import Text

    return Text(safe(text), style=style)


def safe_formatter(fmt: str, datefmt: str | None = None) -> logging.Formatter:
    """A log formatter that escapes the message: a run's error or a name from etcd cannot
    write escape sequences to a terminal, nor a fake second line to a journal (a
    traceback keeps its lines)."""
    return _safe_formatter_class()(fmt, datefmt)


@cache
def _safe_formatter_class() -> type[logging.Formatter]:
    import logging  # only commands that log need it

    class SafeFormatter(logging.Formatter):
        def formatMessage(self, record: logging.LogRecord) -> str:
            record.message = safe(record.message)
            return super().formatMessage(record)

    return SafeFormatter


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
        self.err_console.print(safe(text), markup=False, soft_wrap=True)

    def text(self, line: str) -> None:
        """Plain text on stdout, as it is (no markup, no wrapping), control characters
        escaped."""
        sys.stdout.write(safe_lines(line) + "\n")
        sys.stdout.flush()

    def print(self, renderable: Any, **options: Any) -> None:
        """A Rich renderable; a string is escaped first. Markup in it is interpreted unless
        markup=False, so a string from etcd inside markup goes through `safe_markup`."""
        if isinstance(renderable, str):
            renderable = safe_lines(renderable)
        self.console.print(renderable, **options)

    def success(self, message: str) -> None:
        """A line in markup: a string from etcd inside it goes through `safe_markup`."""
        self.console.print(f"[green]✓[/green] {safe(message)}")

    def note(self, message: str) -> None:
        self.err_console.print(safe(message), style="dim", markup=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table whose cells are shown as they are: escaped by `safe`, never read as markup
    (a cell in a style is a `styled()` one)."""
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(
            *(
                cell if isinstance(cell, Text) else Text(safe("" if cell is None else str(cell)))
                for cell in row
            )
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
