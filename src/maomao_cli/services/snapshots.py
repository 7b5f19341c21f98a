"""What one run produced: the files it wrote or changed in its data directory, by content
hash, and its control value. Kept on the run record, so members' runs of one firing can
be compared (`maomao audit`, services/audit.py) from etcd alone.

The data directory is the container's output: it is walked without following a link,
each file opened O_NOFOLLOW and checked to be a regular file before a byte is read.
Hidden entries (a tool's own state, such as a run counter per member) and insights.json
are not part of a snapshot: they differ between members by design.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from dataclasses import field
from pathlib import Path

from ..detect.series import CONTROL_PREFIX, CONTROL_SUFFIX, parse_control_text
from ..frozen import frozen
from . import insights

MAX_FILES = 100  # files per snapshot: a record stays small
MAX_CONTROL_BYTES = 4096

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)

Listing = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns)


@frozen
class Snapshot:
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 hex
    control: float | None = None
    truncated: bool = False  # more than MAX_FILES files: the rest is not listed


def listing(data_dir: Path) -> Listing:
    """Every regular file below data_dir (hidden entries skipped) with size and mtime."""
    out: Listing = {}
    with contextlib.suppress(OSError):
        fd = os.open(data_dir, _DIR)
        try:
            _walk(fd, "", out)
        finally:
            os.close(fd)
    return out


def _walk(folder: int, rel: str, out: Listing) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                try:
                    inner = os.open(entry.name, _DIR, dir_fd=folder)
                except OSError:
                    continue
                try:
                    _walk(inner, f"{rel}{entry.name}/", out)
                finally:
                    os.close(inner)
            elif stat.S_ISREG(st.st_mode):
                out[rel + entry.name] = (st.st_size, st.st_mtime_ns)


def produced(data_dir: Path, before: Listing) -> Snapshot:
    """The files new or changed since `before`, hashed, and the control value among them."""
    after = listing(data_dir)
    changed = sorted(p for p, seen in after.items() if before.get(p) != seen and p != insights.NAME)
    files: dict[str, str] = {}
    control: float | None = None
    for rel in changed[:MAX_FILES]:
        digest, raw = _hash(data_dir, rel)
        if digest is None:
            continue
        files[rel] = digest
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(CONTROL_PREFIX) and name.endswith(CONTROL_SUFFIX) and raw:
            with contextlib.suppress(UnicodeDecodeError):
                control = parse_control_text(raw.decode("utf-8-sig"))[0]
    return Snapshot(files, control, len(changed) > MAX_FILES)


def _hash(data_dir: Path, rel: str) -> tuple[str | None, bytes]:
    """The file's sha256 and, when it is small, its bytes; None when it is not a regular
    file or changed into a link."""
    parts = rel.split("/")
    try:
        folder = os.open(data_dir, _DIR)
    except OSError:
        return None, b""
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], _READ, dir_fd=folder)
    except OSError:
        os.close(folder)
        return None, b""
    os.close(folder)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, b""
        digest = hashlib.sha256()
        head = b""
        while chunk := os.read(fd, 1 << 20):
            if len(head) <= MAX_CONTROL_BYTES:
                head += chunk[: MAX_CONTROL_BYTES + 1]
            digest.update(chunk)
        return digest.hexdigest(), head if len(head) <= MAX_CONTROL_BYTES else b""
    finally:
        os.close(fd)
