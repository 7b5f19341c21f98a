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
    # No emoji codes: maomao writes none, a name from etcd must print as it is, and their
    # table costs every command 5 ms to import.
    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, emoji=False)

    @cached_property
    def err_console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, emoji=False)

    @staticmethod
    def prepare() -> None:
        """Import what printing needs (on a thread that waits for something else)."""
        import rich.console
        import rich.markup  # noqa: F401

    def fit(self, wide: bool) -> int | None:
        """The width tables fit (None with --wide: every column, wrapped as needed)."""
        return None if wide else self.console.width

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

    def print_table(self, grid: Table, *, wide: bool = False) -> None:
        """A table fitted to the terminal, or with --wide at its natural width (the
        terminal wraps its lines, no cell is folded)."""
        if not wide:
            self.console.print(grid)
            return
        natural = self.console.measure(grid, options=self.console.options.update_width(10_000))
        width = self.console.width
        self.console.width = max(width, natural.maximum)  # print(width=) cannot go wider
        try:
            self.console.print(grid, crop=False)
        finally:
            self.console.width = width

    def success(self, message: str) -> None:
        """A line in markup: a string from etcd inside it goes through `safe_markup`."""
        self.console.print(f"[green]✓[/green] {safe(message)}")

    def note(self, message: str) -> None:
        self.err_console.print(safe(message), style="dim", markup=False)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    whole: Sequence[str] = (),
    clip: Sequence[str] = (),
    optional: Sequence[str] = (),
    width: int | None = None,
) -> Table:
    """A table whose cells are shown as they are: escaped by `safe`, never read as markup
    (a cell in a style is a `styled()` one).

    Fitting a terminal: a column in `whole` (ids, times) never wraps, so an id can be
    copied; one in `clip` stays on one line, cut with an ellipsis; the `optional` ones are
    left out, in that order, while the table would not fit `width` (the title says which;
    width None keeps every column: `--wide`). The rest fold."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [
        [
            cell if isinstance(cell, Text) else Text(safe("" if cell is None else str(cell)))
            for cell in row
        ]
        for row in rows
    ]
    shown = list(range(len(columns)))
    left_out: list[str] = []
    if width is not None:
        for name in optional:
            if _least_width(columns, cells, shown, whole, clip) <= width:
                break
            shown.remove(columns.index(name))
            left_out.append(name)
    if left_out and title is not None:
        title = f"{title} (--wide adds: {', '.join(left_out)})"
    grid = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    clip_width = _clip_width(columns, cells, shown, whole, clip, width)
    for index in shown:
        name = columns[index]
        if name in whole:
            grid.add_column(name, no_wrap=True, min_width=_widest(name, cells, index))
        elif name in clip:
            grid.add_column(name, no_wrap=True, overflow="ellipsis", max_width=clip_width)
        else:
            grid.add_column(name, overflow="fold")
    for row in cells:
        grid.add_row(*(row[index] for index in shown))
    return grid


def _widest(name: str, cells: list[list[Text]], index: int) -> int:
    return max([len(name), *(row[index].cell_len for row in cells)])


def _clip_width(
    columns: Sequence[str],
    cells: list[list[Text]],
    shown: list[int],
    whole: Sequence[str],
    clip: Sequence[str],
    width: int | None,
) -> int | None:
    """What each clipped column may take of the width the others leave (Rich would
    otherwise squeeze every column alike, whole ones too)."""
    clipped = [i for i in shown if columns[i] in clip]
    if width is None or not clipped:
        return None
    others = [i for i in shown if columns[i] not in clip]
    least = _least_width(columns, cells, others, whole, clip) if others else 0
    spare = width - least - 3 * len(clipped)
    return max(8, spare // len(clipped))


def _least_width(
    columns: Sequence[str],
    cells: list[list[Text]],
    shown: list[int],
    whole: Sequence[str],
    clip: Sequence[str],
) -> int:
    """About the narrowest the shown columns can be drawn without wrapping a whole one
    or squeezing the others below a readable width."""
    total = 0
    for index in shown:
        name = columns[index]
        widest = _widest(name, cells, index)
        total += widest if name in whole else min(widest, 16 if name in clip else 10)
    return total + 3 * (len(shown) - 1)  # padding and the space between columns


def more_note(shown: int, total: int) -> str | None:
    """What a cut listing says about the rest."""
    if total <= shown:
        return None
    return f"{total - shown} more, use -n {total} to see them all"


def when(epoch: float | None) -> str:
    """A time in a table: UTC, to the second, marked as UTC."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_times(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    """A record's dict with its epoch fields as ISO 8601 (JSON output: one time format)."""
    return {
        key: iso(value) if key in fields and isinstance(value, int | float) else value
        for key, value in record.items()
    }


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
