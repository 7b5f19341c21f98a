"""Collector health is data too: what a successful run's data directory says about it.

A run that exits 0 should leave one new control file holding one number (docs/tools.md).
After such a run:

- `bad-control`: it wrote a control file that is not one number (or a link, a fifo...);
- `missing-control`: it changed files, but wrote no control file;
- `no-new-data`: it created, changed or removed nothing at all.

What the run wrote is what changed since the snapshot taken after the tool's previous
check on this member; after a restart, what the kernel's file times put after the run's
start (ctime cannot be set back from user space, so a tool that copies old timestamps
still shows what it wrote). Reads metadata only (lstat), never follows a link, and stops
counting at MAX_ENTRIES.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import field
from pathlib import Path
from typing import Literal

from ..detect.series import CONTROL_PREFIX, CONTROL_SUFFIX, SeriesRead
from ..frozen import frozen

WarningKind = Literal["missing-control", "bad-control", "no-new-data"]
# File times lag the clock by up to a kernel tick (a few ms): what changed this close
# before the run's start counts as the run's.
SLACK = 0.05
# A data directory this large is assumed to have changed rather than walked to its end.
MAX_ENTRIES = 50_000


@frozen
class DataWarning:
    kind: WarningKind
    message: str

    @property
    def line(self) -> str:
        return f"{self.kind}: {self.message}"


@frozen
class Assessment:
    warning: DataWarning | None = None
    # The control entries of this run that were skipped, with why: reported once.
    skipped: list[tuple[str, str]] = field(default_factory=list)


State = tuple[int, int, int, int]  # inode, size, mtime and ctime (ns) of one entry


@frozen
class Snapshot:
    """What a data directory held after a check: compared with the next run's."""

    control: dict[str, State]
    tree: str | None  # a digest of every entry's state; None when too large to tell


def snapshot(data_dir: Path) -> Snapshot:
    entries = _walk(data_dir)
    control = {
        name: state
        for name, state in (entries or {}).items()
        if "/" not in name and _is_control(name)
    }
    if entries is None:
        return Snapshot(_control_states(data_dir), None)
    digest = hashlib.blake2b(repr(sorted(entries.items())).encode(), digest_size=16)
    return Snapshot(control, digest.hexdigest())


def assess(
    data_dir: Path,
    series: SeriesRead,
    started: float | None,
    before: Snapshot | None = None,
) -> tuple[Assessment, Snapshot]:
    """The data warning of a successful run, and the directory's snapshot after it.

    What the run wrote is told by `before`, the snapshot after the tool's previous
    check on this member; without one, by the file times against `started`; without
    that either, no warning is given and only broken control files named after the
    newest good one are reported (as before data warnings existed)."""
    after = snapshot(data_dir)
    if before is not None:
        fresh = {n for n, state in after.control.items() if before.control.get(n) != state}
        changed = after.tree is None or after.tree != before.tree
    elif started is not None:
        since = started - SLACK
        fresh = {n for n, state in after.control.items() if _changed(state, since)}
        changed = _changed_since(data_dir, since)
    else:
        newest = _control_name(series.points[-1].sortable) if series.points else ""
        return Assessment(None, [(n, r) for n, r in series.skipped if n > newest]), after
    return _judge(series, fresh, changed), after


def _judge(series: SeriesRead, fresh: set[str], changed: bool) -> Assessment:
    skipped = [(name, reason) for name, reason in series.skipped if name in fresh]
    if skipped:
        name, reason = skipped[0]
        return Assessment(DataWarning("bad-control", f"{name} was skipped ({reason})"), skipped)
    if fresh:
        return Assessment()
    if not changed:
        return Assessment(
            DataWarning("no-new-data", "the run exited 0 but created or changed no file")
        )
    return Assessment(
        DataWarning(
            "missing-control",
            f"the run exited 0 but wrote no {_control_name('<sortable>')} file",
        )
    )


def _control_name(sortable: str) -> str:
    return f"{CONTROL_PREFIX}{sortable}{CONTROL_SUFFIX}"


def _is_control(name: str) -> bool:
    return name.startswith(CONTROL_PREFIX) and name.endswith(CONTROL_SUFFIX)


def _state(info: os.stat_result) -> State:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _changed(state: State, since: float) -> bool:
    return max(state[2], state[3]) >= since * 1e9


def _control_states(data_dir: Path) -> dict[str, State]:
    states: dict[str, State] = {}
    try:
        with os.scandir(data_dir) as entries:
            for entry in entries:
                if _is_control(entry.name):
                    try:
                        states[entry.name] = _state(entry.stat(follow_symlinks=False))
                    except OSError:
                        continue
    except OSError:
        pass
    return states


def _walk(data_dir: Path) -> dict[str, State] | None:
    """Every entry below data_dir (relative name: state), the folder itself as "."
    (a removal changes it); None when it cannot be read whole or is too large."""
    found: dict[str, State] = {}
    pending = [""]
    try:
        found["."] = _state(os.lstat(data_dir))
        while pending:
            relative = pending.pop()
            with os.scandir(data_dir / relative if relative else data_dir) as entries:
                for entry in entries:
                    if entry.name == ".git":  # git's own writes are not the tool's data
                        continue
                    name = f"{relative}/{entry.name}" if relative else entry.name
                    found[name] = _state(entry.stat(follow_symlinks=False))
                    if len(found) > MAX_ENTRIES:
                        return None
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(name)
    except OSError:
        return None
    return found


def _changed_since(data_dir: Path, since: float) -> bool:
    """Was anything in data_dir created or changed since `since`? True when it cannot tell."""
    entries = _walk(data_dir)
    return entries is None or any(_changed(state, since) for state in entries.values())
