"""The full output of the runs this member ran: `<statedir>/logs/<run-id>.log`.

A run record keeps only the last 16 KiB of output and the container (with Docker's log)
is removed after its run, so the member that ran it keeps every line here, as the
container wrote it (the bytes of each line, as split_lines cut them, then a newline), up
to [worker] full_log_max bytes per run; past the cap lines are dropped and a last line
says how many. Container output is untrusted: it is stored, never interpreted, and shown
escaped (`maomao logs`).

The directory is 0700 and owned by this process's user; every file is 0600 and opened
relative to the directory's descriptor with O_NOFOLLOW (and O_EXCL to create), so a
link planted at a log's path, or in place of the directory, is refused, never followed.
A file's name is a validated run id: no name can leave the directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..validation import RUN_ID

log = logging.getLogger("maomao.runs")

SUFFIX = ".log"
# Room for the last line that says what was dropped, beyond the cap.
NOTE_ROOM = 256

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class FullLogRefused(OSError):
    """The log directory or file is not what maomao made (a link, another owner...)."""


def file_name(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    return run_id + SUFFIX


def dropped_note(lines: int, size: int, cap: int) -> bytes:
    return (
        f"[maomao: {lines} more line(s), {size} byte(s), dropped: the full log keeps "
        f"at most {cap} bytes ([worker] full_log_max)]"
    ).encode()


class FullLogWriter:
    """Appends one run's lines; thread-safe (the runner's log thread writes, the run's
    thread closes), and writes after close are ignored."""

    def __init__(self, fd: int, cap: int) -> None:
        self._file = os.fdopen(fd, "wb", buffering=64 * 1024)
        self.cap = cap
        self.written = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self._lock = threading.Lock()
        self._closed = False

    def write(self, line: bytes) -> None:
        cost = len(line) + 1
        with self._lock:
            if self._closed:
                return
            if self.dropped_lines or self.written + cost > self.cap:
                self.dropped_lines += 1
                self.dropped_bytes += cost
                return
            try:
                self._file.write(line + b"\n")
            except OSError as exc:  # a full disk: keep the run, stop the full log
                log.warning("full log: cannot write: %s; the rest is dropped", exc)
                self.dropped_lines += 1
                self.dropped_bytes += cost
                return
            self.written += cost

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.dropped_lines:
                    note = dropped_note(self.dropped_lines, self.dropped_bytes, self.cap)
                    self._file.write(note + b"\n")
                self._file.close()
            except OSError as exc:
                log.warning("full log: cannot finish: %s", exc)


class FullLogs:
    """The log directory of this member. `cap` is [worker] full_log_max in bytes (0:
    keep no full logs); `clock` tells the age of a file for pruning."""

    def __init__(self, directory: Path, cap: int, *, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.cap = cap
        self.clock = clock

    @property
    def read_limit(self) -> int:
        """The most bytes a kept log can hold (the cap and its last line)."""
        return self.cap + NOTE_ROOM

    @contextlib.contextmanager
    def _dir(self, *, create: bool) -> Iterator[int | None]:
        """The directory's descriptor (None when it does not exist and create is False)."""
        if create:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)
        try:
            fd = os.open(self.directory, _DIR_FLAGS)
        except FileNotFoundError:
            if create:
                raise
            yield None
            return
        except OSError as exc:  # ELOOP / ENOTDIR: a link or a file in its place
            raise FullLogRefused(f"{self.directory} is not a directory of maomao's: {exc}") from exc
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid():
                raise FullLogRefused(f"{self.directory} belongs to uid {info.st_uid}, not to us")
            if stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, 0o700)
            yield fd
        finally:
            os.close(fd)

    def open(self, run_id: str) -> FullLogWriter | None:
        """A writer for a new run's log; None when full logs are off. Raises
        FullLogRefused (or OSError) when the file cannot be made safely."""
        if self.cap <= 0:
            return None
        name = file_name(run_id)
        with self._dir(create=True) as dir_fd:
            try:
                fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
            except FileExistsError as exc:  # a planted file or link: never written through
                raise FullLogRefused(f"{self.directory / name} already exists") from exc
        return FullLogWriter(fd, self.cap)

    def read(self, run_id: str) -> bytes | None:
        """The kept log of a run (at most read_limit bytes), None when there is none."""
        name = file_name(run_id)
        with self._dir(create=False) as dir_fd:
            if dir_fd is None:
                return None
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                return None
            except OSError as exc:  # ELOOP: a link planted at the path
                raise FullLogRefused(f"{self.directory / name} is not a log file: {exc}") from exc
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise FullLogRefused(f"{self.directory / name} is not a regular file")
                return _read_at_most(fd, self.read_limit)
            finally:
                os.close(fd)

    def remove(self, run_id: str) -> bool:
        """Delete a run's log (the link itself, if someone put one there)."""
        try:
            name = file_name(run_id)
            with self._dir(create=False) as dir_fd:
                if dir_fd is None:
                    return False
                os.unlink(name, dir_fd=dir_fd)
                return True
        except (FileNotFoundError, ValueError):
            return False

    def prune(self, max_age: float) -> int:
        """Delete the logs last written more than max_age seconds ago (0: none); those of
        records another member pruned go this way. Returns how many."""
        if max_age <= 0:
            return 0
        cutoff = self.clock() - max_age
        removed = 0
        with self._dir(create=False) as dir_fd:
            if dir_fd is None:
                return 0
            for name in os.listdir(dir_fd):
                if not name.endswith(SUFFIX) or not RUN_ID.fullmatch(name[: -len(SUFFIX)]):
                    continue  # not ours: left alone
                with contextlib.suppress(FileNotFoundError):
                    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if info.st_mtime < cutoff:
                        os.unlink(name, dir_fd=dir_fd)
                        removed += 1
        return removed


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0:
        piece = os.read(fd, min(left, 1 << 20))
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)
