"""The data directory of a tool that runs as another user (`--user UID[:GID]`).

maomao creates the directory as the user it runs as. A container running as UID can
only write there if the directory is UID's: running as root, maomao hands the folder and
what is in it to UID:GID (never following a link); otherwise it checks, and a directory
the container cannot write fails the run before the container starts, in one line that
names the owner and the container's user. That failure is the same on every retry.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

_NUMERIC = re.compile(r"(\d+)(?::(\d+))?")

Chown = Callable[..., None]


class NotWritable(Exception):
    """The container's user cannot write the data directory (the message says why)."""


def numeric_user(user: str | None) -> tuple[int, int | None] | None:
    """(uid, gid) of a numeric --user; None for no user or a name (resolved in the image)."""
    if not user:
        return None
    found = _NUMERIC.fullmatch(user)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2)) if found.group(2) else None


def prepare(
    data_dir: Path,
    user: str | None,
    *,
    is_root: bool | None = None,
    chown: Chown = os.chown,
) -> None:
    """Make `data_dir` writable for the container's user, or raise NotWritable."""
    ids = numeric_user(user)
    if ids is None:
        return
    uid, gid = ids
    root = os.geteuid() == 0 if is_root is None else is_root
    if root and uid != 0:
        try:
            _hand_over(data_dir, uid, -1 if gid is None else gid, chown)
        except OSError as exc:
            why = f"cannot change its owner: {exc.strerror}"
            raise NotWritable(_line(data_dir, user, why)) from None
        return
    st = os.stat(data_dir, follow_symlinks=False)
    if uid == 0 or _writable(st, uid, gid):
        return
    raise NotWritable(_line(data_dir, user, "the container could not write into it"))


def _writable(st: os.stat_result, uid: int, gid: int | None) -> bool:
    mode = st.st_mode
    if st.st_uid == uid:
        return bool(mode & stat.S_IWUSR and mode & stat.S_IXUSR)
    if gid is not None and st.st_gid == gid:
        return bool(mode & stat.S_IWGRP and mode & stat.S_IXGRP)
    return bool(mode & stat.S_IWOTH and mode & stat.S_IXOTH)


def _line(data_dir: Path, user: str | None, why: str) -> str:
    try:
        st = os.stat(data_dir, follow_symlinks=False)
        owner = f"{st.st_uid}:{st.st_gid}"
    except OSError:
        owner = "unknown"
    return (
        f"data directory {data_dir} is owned by {owner} and the container runs as user "
        f"{user}: {why} (make it {user}'s, or run maomao as root)"
    )


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _hand_over(data_dir: Path, uid: int, gid: int, chown: Chown) -> None:
    """chown the folder and everything below it to uid:gid. A run of the tool may still
    be writing there (--allow-overlap): every folder is opened relative to its parent
    without following a link, and every entry changed through its folder's descriptor,
    so a link it made is changed itself, never what it points to."""
    fd = os.open(data_dir, _DIR)
    try:
        _chown_tree(fd, uid, gid, chown)
    finally:
        os.close(fd)


def _chown_tree(folder: int, uid: int, gid: int, chown: Chown) -> None:
    chown(folder, uid, gid)
    with os.scandir(folder) as entries:
        names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in names:
        if is_dir:
            try:
                inner = os.open(name, _DIR, dir_fd=folder)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    continue  # replaced meanwhile: not ours to follow
                raise
            try:
                _chown_tree(inner, uid, gid, chown)
            finally:
                os.close(inner)
        else:
            with contextlib.suppress(FileNotFoundError):
                chown(name, uid, gid, dir_fd=folder, follow_symlinks=False)
