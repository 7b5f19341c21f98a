"""Tool data directories, and the copies between a staging directory and a dataset's work
tree that never follow a link.

Every tool's data directory (the one place a container writes) is <importdir>/tools/<tool>,
so no tool name reaches another folder of maomao's (`datasets`, or `tools` itself). For a
tool linked to a dataset it is a staging directory: `mirror` makes it a copy of the
dataset's folder before the run, `copy_back` brings what the run changed into the work
tree after it. The container never sees the clone, so never its `.git`.

Both copies take regular files and folders only: a symbolic link, fifo, socket or device,
whether the dataset or the container made it, is skipped and reported, and nothing is
opened through a link. Each folder is opened relative to its parent's descriptor with
O_NOFOLLOW; each file is opened O_NOFOLLOW|O_NONBLOCK and checked with fstat before a
byte is read, and written with O_NOFOLLOW|O_CREAT|O_TRUNC into a folder opened that way.
Entries named `.git` (in any case) are never copied, either way.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .. import validation
from ..errors import BadInput
from ..frozen import frozen

log = logging.getLogger("maomao.staging")

TOOLS_DIR = "tools"
_OWN_FOLDERS = frozenset({TOOLS_DIR, "datasets"})  # maomao's own, in the importdir

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_CHUNK = 1 << 20


# Where tool data lives ------------------------------------------------------------------


def tool_dir(importdir: Path, name: str) -> Path:
    """<importdir>/tools/<name>: the data directory of the tool `name`."""
    validation.name(name, "tool name")
    return importdir / TOOLS_DIR / name


def prepare_tool_dir(importdir: Path, name: str, *, migrate: bool = True) -> Path:
    """Make the tool's data directory (each level a real folder, never a link) and return
    it; with `migrate`, an old <importdir>/<name> is first moved there (see migrate)."""
    path = tool_dir(importdir, name)
    importdir.mkdir(parents=True, exist_ok=True)
    if migrate:
        migrate_legacy(importdir, name)
    os.close(open_tool_dir(importdir, name))
    return path


def open_tool_dir(importdir: Path, name: str) -> int:
    """A descriptor of the tool's data directory, created if absent; BadInput when a
    level of it is a link or not a folder."""
    path = tool_dir(importdir, name)
    base = os.open(importdir, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)  # the member's own
    try:
        tools = subdir(base, TOOLS_DIR, create=True, shown=path.parent)
    finally:
        os.close(base)
    try:
        return subdir(tools, name, create=True, shown=path)
    finally:
        os.close(tools)


_moved_or_told: set[Path] = set()  # one line per legacy folder and process


def migrate_legacy(importdir: Path, name: str) -> None:
    """Move <importdir>/<name> (the layout before tools/) to <importdir>/tools/<name>
    when that is absent; when both exist the old one stays, and is named once. Folders
    that are maomao's own (`tools`, `datasets`) are never a tool's to take."""
    old, new = importdir / name, tool_dir(importdir, name)
    if name in _OWN_FOLDERS or old in _moved_or_told:
        return
    try:
        old_stat = os.lstat(old)
    except FileNotFoundError:
        return
    _moved_or_told.add(old)
    if not stat.S_ISDIR(old_stat.st_mode) or os.path.lexists(new):
        log.info("tool %s: %s is not moved to %s (kept where it is)", name, old, new)
        return
    os.close(open_tool_dir(importdir, name))  # makes tools/ safely, then the empty target
    os.rmdir(new)
    os.rename(old, new)
    log.info("tool %s: moved its data directory %s to %s", name, old, new)


def subdir(parent: int, name: str, *, create: bool, shown: Path | str) -> int:
    """Open parent/name as a folder, never through a link; made first with `create`."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent)
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BadInput(
                f"{shown} is not a folder maomao can use: a symbolic link or a file",
                hint="maomao never follows a link there; remove it",
            ) from None
        raise


def subdir_parts(data_subdir: str | None) -> list[str]:
    """The folders of a dataset's data subdir; never absolute, upward or into .git."""
    if not data_subdir:
        return []
    parts = [p for p in data_subdir.split("/") if p not in ("", ".")]
    if data_subdir.startswith("/") or ".." in parts or any(_is_git(p) for p in parts):
        raise BadInput(f"invalid data subdir {data_subdir!r}: must be a folder inside the dataset")
    return parts


# The copies ------------------------------------------------------------------------------


@frozen
class Manifest:
    """What `mirror` put in a staging folder: each file's (size, mtime_ns), each folder."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()


@dataclass
class Copied:
    manifest: Manifest
    skipped: list[tuple[str, str]]  # (relative path, why) of what was not copied


def mirror(work: Path, data_subdir: str | None, staging: int) -> Copied:
    """Make the staging folder (a descriptor) a copy of work/data_subdir: its regular
    files and folders, nothing else; what the staging folder held beyond it is removed."""
    parts = subdir_parts(data_subdir)
    source = _open_source(work, parts, data_subdir or "")
    walk = _Mirror()
    try:
        walk.sync(source, staging, "")
    finally:
        if source is not None:
            os.close(source)
    return Copied(Manifest(walk.files, frozenset(walk.dirs)), walk.skipped)


def copy_back(staging: int, work: Path, data_subdir: str | None, manifest: Manifest) -> Copied:
    """Bring what the run changed in the staging folder into work/data_subdir: new and
    changed regular files are written, files and folders the run deleted (of those
    `mirror` put there) are deleted; anything else in the work tree stays."""
    parts = subdir_parts(data_subdir)
    target = os.open(work, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)  # maomao's own clone
    try:
        for n, part in enumerate(parts):
            shown = f"data subdir {'/'.join(parts[: n + 1])!r} of {work}"
            inner = subdir(target, part, create=True, shown=shown)
            os.close(target)
            target = inner
        walk = _Back(manifest)
        walk.push(staging, target, "")
    finally:
        os.close(target)
    return Copied(manifest, walk.skipped)


def _open_source(work: Path, parts: list[str], shown: str) -> int | None:
    """The work tree's data folder, or None when it does not exist yet."""
    current = os.open(work, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)  # maomao's own clone
    try:
        for part in parts:
            try:
                inner = subdir(current, part, create=False, shown=f"data subdir {shown!r}")
            except FileNotFoundError:
                return None
            os.close(current)
            current = inner
    except BaseException:
        os.close(current)
        raise
    return current


def _is_git(name: str) -> bool:
    return name.lower() == ".git"


def _what(mode: int) -> str | None:
    """None for what is copied (a folder, a regular file); else what it is, for the log."""
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file"


def _entries(folder: int) -> dict[str, os.stat_result]:
    """The entries of an open folder with their lstat, by name."""
    with os.scandir(folder) as it:
        return {e.name: e.stat(follow_symlinks=False) for e in it}


def _lstat(folder: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(folder: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=folder)  # descriptor-based: it never follows a link
    else:
        os.unlink(name, dir_fd=folder)


def _copy_file(src_dir: int, dst_dir: int, name: str, *, keep_time: bool) -> os.stat_result | None:
    """Copy one regular file between two open folders; None when the source is not one.
    The destination name must not be a link (O_NOFOLLOW refuses it) or a folder."""
    src = os.open(name, _READ, dir_fd=src_dir)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            return None
        mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
        dst = os.open(name, _WRITE, mode, dir_fd=dst_dir)
        try:
            if not stat.S_ISREG(os.fstat(dst).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", name)
            while chunk := os.read(src, _CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view) :]
            os.fchmod(dst, mode)
            if keep_time:
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            return os.fstat(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


class _Mirror:
    """Work tree -> staging folder."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, int]] = {}
        self.dirs: set[str] = set()
        self.skipped: list[tuple[str, str]] = []

    def sync(self, src: int | None, dst: int, rel: str) -> None:
        wanted: dict[str, os.stat_result] = {}
        for name, st in (_entries(src) if src is not None else {}).items():
            why = _what(st.st_mode)
            if _is_git(name):
                continue  # the clone's own .git: never the tool's
            if why is not None:
                self.skipped.append((rel + name, why))
            else:
                wanted[name] = st
        for name, st in _entries(dst).items():
            want = wanted.get(name)
            if want is None or stat.S_IFMT(want.st_mode) != stat.S_IFMT(st.st_mode):
                _remove(dst, name, st)
        for name, st in wanted.items():
            if stat.S_ISDIR(st.st_mode):
                self._folder(src, dst, name, rel + name)
            else:
                self._file(src, dst, name, st, rel + name)

    def _folder(self, src: int | None, dst: int, name: str, path: str) -> None:
        assert src is not None
        inner_src = subdir(src, name, create=False, shown=path)
        try:
            inner_dst = subdir(dst, name, create=True, shown=path)
            try:
                self.dirs.add(path)
                self.sync(inner_src, inner_dst, path + "/")
            finally:
                os.close(inner_dst)
        finally:
            os.close(inner_src)

    def _file(self, src: int | None, dst: int, name: str, st: os.stat_result, path: str) -> None:
        assert src is not None
        there = _lstat(dst, name)
        same = there is not None and (there.st_size, there.st_mtime_ns) == (
            st.st_size,
            st.st_mtime_ns,
        )
        copied = there if same else _copy_file(src, dst, name, keep_time=True)
        if copied is None:
            self.skipped.append((path, "not a regular file"))
        else:
            self.files[path] = (copied.st_size, copied.st_mtime_ns)


class _Back:
    """Staging folder -> work tree."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.skipped: list[tuple[str, str]] = []

    def push(self, src: int, dst: int, rel: str) -> None:
        present = set()
        for name, st in _entries(src).items():
            path = rel + name
            why = ".git is never copied" if _is_git(name) else _what(st.st_mode)
            if why is not None:
                self.skipped.append((path, why))
                if _is_git(name):
                    continue
            elif stat.S_ISDIR(st.st_mode):
                self._folder(src, dst, name, path)
            elif self.manifest.files.get(path) != (st.st_size, st.st_mtime_ns):
                self._file(src, dst, name, path)
            present.add(name)  # a link where a file was: the file stays
        for name, st in _entries(dst).items():
            if name not in present and not _is_git(name):
                self._deleted(dst, name, st, rel + name)

    def _make_room(self, dst: int, name: str, path: str, *, for_folder: bool) -> bool:
        """Clear the way for a folder or a file at dst/name; False (and reported) when what
        is there is not the run's to replace: it came into the work tree meanwhile."""
        st = _lstat(dst, name)
        if st is None:
            return True
        if stat.S_ISDIR(st.st_mode):
            if for_folder:
                return True
            if path in self.manifest.dirs:
                self._deleted(dst, name, st, path)
                if _lstat(dst, name) is None:
                    return True
            self.skipped.append((path, "a folder in the work tree holds other files"))
            return False
        if stat.S_ISREG(st.st_mode):
            if not for_folder:
                return True
            if path not in self.manifest.files:
                self.skipped.append((path, "a file in the work tree the run did not see"))
                return False
        os.unlink(name, dir_fd=dst)  # a file the run made a folder, or the dataset's link
        return True

    def _folder(self, src: int, dst: int, name: str, path: str) -> None:
        if not self._make_room(dst, name, path, for_folder=True):
            return
        inner_src = subdir(src, name, create=False, shown=path)
        try:
            inner_dst = subdir(dst, name, create=True, shown=path)
            try:
                self.push(inner_src, inner_dst, path + "/")
            finally:
                os.close(inner_dst)
        finally:
            os.close(inner_src)

    def _file(self, src: int, dst: int, name: str, path: str) -> None:
        room = self._make_room(dst, name, path, for_folder=False)
        if room and _copy_file(src, dst, name, keep_time=False) is None:
            self.skipped.append((path, "not a regular file"))

    def _deleted(self, dst: int, name: str, st: os.stat_result, path: str) -> None:
        """Delete what the run deleted: only what mirror had put in its staging folder."""
        if stat.S_ISREG(st.st_mode) and path in self.manifest.files:
            os.unlink(name, dir_fd=dst)
        elif stat.S_ISDIR(st.st_mode) and path in self.manifest.dirs:
            inner = subdir(dst, name, create=False, shown=path)
            try:
                for child, child_st in _entries(inner).items():
                    self._deleted(inner, child, child_st, f"{path}/{child}")
            finally:
                os.close(inner)
            try:
                os.rmdir(name, dir_fd=dst)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
