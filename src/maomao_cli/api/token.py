"""The API's bearer token when the config sets none: made once, kept in the state dir.

`maomao serve` can start containers and clone, so it never runs without a token. The
file is created owner-only with O_EXCL|O_NOFOLLOW (no link planted at its name is
followed, no existing file is reused) and read back only when it is a regular file of
this user that no one else can read.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ..errors import BadInput
from ..frozen import frozen

TOKEN_FILE = "api-token"
_MAX_TOKEN = 4096


@frozen
class KeptToken:
    token: str
    path: Path
    created: bool  # made by this start


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE


def kept_token(state_dir: Path) -> KeptToken:
    """The token in <statedir>/api-token, made there first if the file does not exist."""
    path = token_path(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return KeptToken(_create(path), path, created=True)
    except FileExistsError:
        return KeptToken(_read(path), path, created=False)
    except OSError as exc:
        raise BadInput(f"cannot create the API token file {path}: {exc.strerror or exc}") from None


def _create(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def _read(path: Path) -> str:
    def refuse(why: str) -> BadInput:
        return BadInput(
            f"API token file {path} {why}",
            hint="remove it and start `maomao serve` again to make a new one, or set [serve] token",
        )

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise refuse(f"cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refuse("is not a regular file")
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise refuse("must be owned by this user and readable by no one else (chmod 600)")
        content = os.read(fd, _MAX_TOKEN + 1)
    finally:
        os.close(fd)
    token = content.decode("ascii", "replace").strip()
    if not token or len(content) > _MAX_TOKEN or not token.isprintable() or " " in token:
        raise refuse("does not hold a token")
    return token
