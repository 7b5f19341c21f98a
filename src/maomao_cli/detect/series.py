"""Reading control series without scipy or numpy: `maomao spikes` listing never pays for them.

A tool writes `control-<sortable>.csv` per run, holding one number; the sortable part
(an ISO date or time) orders the series. Files that do not parse are reported by name
and skipped; they never stop detection.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

CONTROL_FILE = re.compile(r"control-(.+)\.csv")


class SeriesError(ValueError):
    """A series that cannot be read at all (missing folder, CSV without its columns)."""


@dataclass(frozen=True)
class Point:
    sortable: str
    value: float


@dataclass
class SeriesRead:
    points: list[Point] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or row, reason)


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_control_text(text: str) -> float | None:
    """The one number of a control file; a header line and blank lines are tolerated."""
    lines = [line.strip().strip(",") for line in text.replace("\r", "\n").split("\n") if line.strip()]
    if not lines:
        return None
    value = _number(lines[-1].split(",")[-1])
    if value is None or len(lines) > 2:
        return None
    if len(lines) == 2 and _number(lines[0].split(",")[-1]) is not None:
        return None  # two numbers: not a control file
    return value


def read_control_dir(directory: Path) -> SeriesRead:
    if not directory.is_dir():
        raise SeriesError(f"no data folder at {directory}: the tool has not run here yet")
    result = SeriesRead()
    files = []
    for path in directory.iterdir():
        match = CONTROL_FILE.fullmatch(path.name)
        if match and path.is_file():
            files.append((match.group(1), path))
    for sortable, path in sorted(files):
        try:
            value = parse_control_text(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            result.skipped.append((path.name, f"unreadable: {exc}"))
            continue
        if value is None:
            result.skipped.append((path.name, "does not hold one finite number"))
            continue
        result.points.append(Point(sortable, value))
    return result


def read_csv_series(path: Path) -> SeriesRead:
    """A CSV with a header and columns timestamp,value (any order, other columns ignored)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SeriesError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SeriesError(f"cannot read {path}: {exc}") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise SeriesError(f"{path} is empty: expected a header with timestamp,value")
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("timestamp", "value") if c not in names]
    if missing:
        raise SeriesError(f"{path} has no {' and no '.join(missing)} column: expected a header with timestamp,value")
    ts_col, value_col = names.index("timestamp"), names.index("value")
    result = SeriesRead()
    for number, row in enumerate(rows):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) <= max(ts_col, value_col):
            result.skipped.append((f"row {number}", "too few columns"))
            continue
        value = _number(row[value_col])
        if value is None:
            result.skipped.append((f"row {number}", f"value {row[value_col]!r} is not a finite number"))
            continue
        result.points.append(Point(row[ts_col], value))
    return result
