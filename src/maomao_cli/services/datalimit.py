"""The size limit of a tool's data directory: measured, never trusted to the container.

A container writes into its data directory (a bind mount) as fast as the disk allows, so
the limit is held three times: before a run (a directory already over its limit is
refused before any container starts), while it runs (measured every few seconds; the
container is stopped once it is over) and after it (the run is recorded failed, so the
after-run hooks neither commit nor push what it wrote). Measuring walks the tree through
directory descriptors opened with O_NOFOLLOW, so a link or a directory swapped for a link
by the container never leads the walk out of the data directory.

A file system quota would stop the writes themselves; setting one needs project quotas
(ext4 or xfs mounted with prjquota) and CAP_SYS_RESOURCE, which maomao cannot assume.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..frozen import frozen
from ..validation import size_text

# Marks the error of a run that a retry would not help: the directory must shrink first.
REFUSAL = "data limit: "
MAX_DEPTH = 128  # directory levels walked (two descriptors each); deeper counts as over
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ScandirIterator = Iterator[os.DirEntry[str]]


class Unmeasurable(OSError):
    """The tree cannot be measured (too deep, or its root is not a plain directory)."""


def tree_bytes(root: Path) -> int:
    """The bytes held by the regular files under root: the larger of each one's size and
    its allocated blocks (a sparse file counts whole, a small one by its blocks). Links are
    neither followed nor counted; entries that vanish or change during the walk are
    skipped. Raises Unmeasurable when root is not a directory, the tree is too deep, or
    the walk fails otherwise (out of descriptors): never a silent undercount."""
    total = 0
    stack: list[tuple[int, ScandirIterator]] = []
    try:
        stack.append(_open(os.open(root, _OPEN_DIR)))
        while stack:
            entry = next(stack[-1][1], None)
            if entry is None:
                _close(stack.pop())
            elif (child := _enter(stack[-1][0], entry)) is None:
                total += _file_bytes(entry)
            elif len(stack) >= MAX_DEPTH:
                os.close(child)
                raise Unmeasurable(f"{root} is more than {MAX_DEPTH} directories deep")
            else:
                stack.append(_open(child))
    except Unmeasurable:
        raise
    except OSError as exc:
        raise Unmeasurable(f"cannot walk {root}: {exc.strerror or exc}") from None
    finally:
        for level in stack:
            _close(level)
    return total


def _open(fd: int) -> tuple[int, ScandirIterator]:
    try:
        return fd, os.scandir(fd)
    except OSError:
        os.close(fd)
        raise


def _close(level: tuple[int, ScandirIterator]) -> None:
    fd, entries = level
    close = getattr(entries, "close", None)
    if close is not None:
        close()
    os.close(fd)


# What a directory listed a moment ago may have become: gone, a link, a file.
_CHANGED = {errno.ENOENT, errno.ELOOP, errno.ENOTDIR}


def _enter(parent: int, entry: os.DirEntry[str]) -> int | None:
    """A descriptor of entry when it is a directory (never through a link), else None."""
    try:
        if not entry.is_dir(follow_symlinks=False):
            return None
        return os.open(entry.name, _OPEN_DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in _CHANGED:
            return None
        raise


def _file_bytes(entry: os.DirEntry[str]) -> int:
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return 0
    if not stat.S_ISREG(info.st_mode):
        return 0
    return max(info.st_size, info.st_blocks * 512)


@frozen
class Excess:
    """Why a data directory is over its limit, as one line for the run's record."""

    path: Path
    held: int | None  # None: it could not be measured
    limit: int
    detail: str = ""

    def describe(self, consequence: str) -> str:
        held = "cannot be measured" if self.held is None else f"holds {size_text(self.held)}"
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"{REFUSAL}data directory {self.path} {held}{detail}, over its limit of "
            f"{size_text(self.limit)}; {consequence}"
        )


def excess(path: Path, limit: int) -> Excess | None:
    """None while path holds at most limit bytes; an unmeasurable tree is over it."""
    try:
        held = tree_bytes(path)
    except Unmeasurable as exc:
        return Excess(path, None, limit, str(exc))
    return Excess(path, held, limit) if held > limit else None


def effective_limit(member_limit: int, tool_limit: int | None) -> int | None:
    """The bytes a tool's data directory may hold on this member, None for no limit: the
    tool's own value may lower the member's, never raise it (it comes from etcd)."""
    limits = [n for n in (member_limit, tool_limit) if n]
    return min(limits) if limits else None


@contextmanager
def watching(
    path: Path,
    limit: int,
    cancel: threading.Event | None,
    interval: float,
) -> Iterator[tuple[threading.Event, Callable[[], Excess | None]]]:
    """While the body runs, measure path every `interval` seconds (or ten times as long
    as the last walk took, so a big tree costs at most a tenth of a core); once it is
    over the limit, set the event the body's container watches, which follows `cancel`
    too. Yields that event and a function giving the excess that tripped it, if any."""
    stop = threading.Event()
    inner = threading.Event()
    tripped: list[Excess] = []
    tick = min(interval, 0.1)  # how soon a Ctrl-C or a shutdown reaches the container

    def watch() -> None:
        due = time.monotonic() + interval
        while not stop.wait(tick):
            if cancel is not None and cancel.is_set():
                inner.set()
            if time.monotonic() < due:
                continue
            began = time.monotonic()
            found = excess(path, limit)
            if found is not None:
                tripped.append(found)
                inner.set()
                return
            due = time.monotonic() + max(interval, 10 * (time.monotonic() - began))

    thread = threading.Thread(target=watch, name=f"maomao-datalimit-{path.name}", daemon=True)
    thread.start()
    try:
        yield inner, lambda: tripped[0] if tripped else None
    finally:
        stop.set()
        thread.join()


def retryable(error: str | None) -> bool:
    """False for a run stopped or refused by its data limit: a retry would be refused."""
    return not (error or "").startswith(REFUSAL)
