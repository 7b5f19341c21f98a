"""Reading control series in plain Python: listing spikes never pays for scipy or numpy.

A tool writes `control-<sortable>.csv` per run, holding one number; the sortable part
(an ISO date or time) orders the series. A file that does not parse is skipped and
reported by name: one broken run never stops detection over the others.

A series can also come from one CSV file with a header and the columns timestamp,value.
"""

from __future__ import annotations

import csv
import errno
import io
import itertools
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import field
from datetime import datetime
from pathlib import Path

from ..frozen import frozen

CONTROL_PREFIX = "control-"
CONTROL_SUFFIX = ".csv"
# A control file holds one number; anything bigger is not one and is not read whole.
MAX_CONTROL_BYTES = 64 * 1024
TIMESTAMP_COLUMN = "timestamp"
VALUE_COLUMN = "value"


class SeriesError(ValueError):
    """A series that cannot be read at all: a missing folder, a CSV without its columns."""


@frozen
class Point:
    sortable: str
    value: float


@frozen
class SeriesRead:
    points: list[Point] = field(default_factory=list)
    # (file name, or "<file>:<line>" for a CSV row; the reason it was skipped)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _finite_number(text: str) -> tuple[float | None, str]:
    """The number in `text`, or None and the reason it is not a usable one."""
    cell = text.strip().strip('"').strip()
    if not cell:
        return None, "empty value"
    try:
        value = float(cell)
    except ValueError:
        return None, f"not a number: {_shorten(cell)!r}"
    if not math.isfinite(value):
        return None, f"not a finite number: {_shorten(cell)!r}"
    return value, ""


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_control_text(text: str) -> tuple[float | None, str]:
    """The one number of a control file, or None and why not.

    Tolerated: blank lines, surrounding whitespace, CRLF, and one header line above the
    number (a header that is itself a number would make two numbers: rejected).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None, "empty file"
    if len(lines) > 2:
        return None, f"expected one number, found {len(lines)} lines"
    value, reason = _finite_number(lines[-1])
    if value is None:
        return None, reason
    if len(lines) == 2 and _finite_number(lines[0])[0] is not None:
        return None, "expected one number, found two"
    return value, ""


def read_control_dir(directory: Path, root: Path | None = None) -> SeriesRead:
    """The control series of a data directory, ordered by the sortable part of the names.

    A container wrote what is in there, and this runs on the host (as root on some
    members), so nothing here follows a link or blocks: the folder is opened without
    following a link in any component below `root` (the trusted folder it must be in,
    e.g. the importdir), each control file by its name in that folder with O_NOFOLLOW and
    O_NONBLOCK, and read only when fstat says it is a regular file of at most
    MAX_CONTROL_BYTES. A link, a fifo or a device where a control file should be is
    skipped and reported by name like a file that does not parse.
    """
    folder = _open_folder(directory, root)
    try:
        named: list[tuple[str, str]] = []
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(CONTROL_PREFIX) and name.endswith(CONTROL_SUFFIX):
                    sortable = name[len(CONTROL_PREFIX) : -len(CONTROL_SUFFIX)]
                    if sortable and not entry.is_dir(follow_symlinks=False):
                        named.append((sortable, name))
        named.sort()
        points: list[Point] = []
        skipped: list[tuple[str, str]] = []
        for sortable, name in named:
            value, reason = _read_control_file(folder, name)
            if value is None:
                skipped.append((name, reason))
            else:
                points.append(Point(sortable, value))
        return SeriesRead(points, skipped)
    finally:
        os.close(folder)


def _open_folder(directory: Path, root: Path | None) -> int:
    """A descriptor of directory, reached without following a link below root (root
    itself, or a directory the user named, is trusted: it may be a link)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    parts: tuple[str, ...] = ()
    if root is None:
        start = directory
    else:
        relative = os.path.relpath(os.path.normpath(directory), os.path.normpath(root))
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            raise SeriesError(f"{directory} is not inside {root}")
        start = root
        parts = () if relative == os.curdir else tuple(Path(relative).parts)
    try:
        fd = os.open(start, flags)
        flags |= os.O_NOFOLLOW
    except FileNotFoundError:
        raise SeriesError(f"no data directory at {directory}") from None
    except OSError as exc:
        raise SeriesError(_folder_refusal(directory, exc)) from None
    for part in parts:
        try:
            child = os.open(part, flags, dir_fd=fd)
        except FileNotFoundError:
            raise SeriesError(f"no data directory at {directory}") from None
        except OSError as exc:
            raise SeriesError(_folder_refusal(directory, exc)) from None
        finally:
            os.close(fd)
        fd = child
    return fd


def _folder_refusal(directory: Path, exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return f"{directory} is not a directory (or a link in its path): not read"
    return f"cannot read {directory}: {exc.strerror or exc}"


def _read_control_file(folder: int, name: str) -> tuple[float | None, str]:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0), dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "a symbolic link, not a regular file: not read"
        return None, f"unreadable: {exc.strerror or exc}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file (a fifo, socket or device): not read"
        if info.st_size > MAX_CONTROL_BYTES:
            return None, f"larger than {MAX_CONTROL_BYTES} bytes"
        raw = os.read(fd, MAX_CONTROL_BYTES + 1)
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    finally:
        os.close(fd)
    if len(raw) > MAX_CONTROL_BYTES:
        return None, f"larger than {MAX_CONTROL_BYTES} bytes"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    return parse_control_text(text)


def read_csv_series(path: Path) -> SeriesRead:
    """A series from a CSV with a header holding the columns timestamp and value.

    Header names are case-insensitive, the columns may come in any order and other
    columns are ignored. Timestamps (ISO 8601, or `YYYY-MM-DD HH:MM:SS`) are kept as
    written; rows are taken in file order, and sorted by time only when the file is not.
    Rows whose value or timestamp does not parse are skipped and reported by line.
    """
    reader = csv.reader(io.StringIO(_csv_text(path), newline=""))
    points: list[Point] = []
    times: list[datetime] = []
    skipped: list[tuple[str, str]] = []
    try:
        timestamp_col, value_col = _columns(path, reader)
        width = max(timestamp_col, value_col) + 1
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            parsed = _csv_row(row, width, timestamp_col, value_col)
            if isinstance(parsed, str):
                skipped.append((f"{path.name}:{reader.line_num}", parsed))
            else:
                points.append(parsed[0])
                times.append(parsed[1])
    except csv.Error as exc:
        raise SeriesError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    return SeriesRead(_in_time_order(path, points, times), skipped)


def _csv_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SeriesError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise SeriesError(f"{path} is a directory, expected a CSV file") from None
    except OSError as exc:
        raise SeriesError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SeriesError(f"{path} is not UTF-8 text") from None


def _columns(path: Path, reader: Iterator[list[str]]) -> tuple[int, int]:
    """(timestamp column, value column) from the first non-blank row, the header."""
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        raise SeriesError(f"{path} is empty: expected a header with timestamp,value")
    names = [cell.strip().strip('"').strip().lower() for cell in header]
    columns = []
    for wanted in (TIMESTAMP_COLUMN, VALUE_COLUMN):
        if wanted not in names:
            raise SeriesError(
                f"{path} has no {wanted!r} column (header: {_shorten(','.join(header), 60)})"
            )
        if names.count(wanted) > 1:
            raise SeriesError(f"{path} has the column {wanted!r} more than once")
        columns.append(names.index(wanted))
    return columns[0], columns[1]


def _csv_row(
    row: list[str], width: int, timestamp_col: int, value_col: int
) -> tuple[Point, datetime] | str:
    """The point of a data row and its time, or why the row is skipped."""
    if len(row) < width:
        return f"expected at least {width} columns, found {len(row)}"
    stamp = row[timestamp_col].strip()
    try:
        # Parsed only to check it and to order the rows; the text is kept.
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return f"not a timestamp: {_shorten(stamp)!r}"
    value, reason = _finite_number(row[value_col])
    if value is None:
        return reason
    return Point(stamp, value), when


def _in_time_order(path: Path, points: list[Point], times: list[datetime]) -> list[Point]:
    """The points in time order: file order when it already is (the usual case)."""
    try:
        if all(a <= b for a, b in itertools.pairwise(times)):
            return points
        order = sorted(range(len(points)), key=times.__getitem__)
    except TypeError:
        raise SeriesError(
            f"{path} mixes timestamps with and without a time zone: they cannot be ordered"
        ) from None
    return [points[i] for i in order]
