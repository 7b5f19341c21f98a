"""maomao's bookkeeping of one member's clone, in <statedir>/datasets/<name>/ (which no
container can reach): its locks, the last push error, the runs whose commits are not
pushed yet. Every file is opened with O_NOFOLLOW; what is read is capped."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

NOTE_LIMIT = 64 * 1024  # a push error note is one line; more is not ours
PUSH_ERROR = "last-push-error"
UNPUSHED = "unpushed-runs"


def is_clone(work: Path) -> bool:
    """A clone of maomao's: its .git is a real folder (not a link, not a gitfile)."""
    try:
        return stat.S_ISDIR(os.lstat(work / ".git").st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def flocked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_note(path: Path, limit: int) -> str | None:
    """The text of a regular file (None when absent or not a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(limit).decode("utf-8", "replace")


def write_push_error(folder: Path, message: str | None) -> None:
    """Remember why local commits were not pushed (None: they were), for `status`."""
    path = folder / PUSH_ERROR
    if message is None:
        path.unlink(missing_ok=True)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(" ".join(message.split()) + "\n")


def read_push_error(folder: Path) -> str | None:
    text = _read_note(folder / PUSH_ERROR, NOTE_LIMIT)
    return (text or "").strip() or None


def read_unpushed(folder: Path) -> list[str]:
    """Ids of the runs committed here whose commits no push has taken yet."""
    text = _read_note(folder / UNPUSHED, NOTE_LIMIT * 16) or ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def add_unpushed(folder: Path, run_id: str) -> None:
    path = folder / UNPUSHED
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(run_id + "\n")


def clear_unpushed(folder: Path) -> None:
    (folder / UNPUSHED).unlink(missing_ok=True)
