"""SSH keys for datasets, made with `ssh-keygen` (openssh-client, which SSH remotes need)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from maomao_cli.errors import GitError

from .translate import one_line


def generate_ssh_key(path: Path, comment: str) -> str:
    """Create an ed25519 key pair at `path` and `path`.pub once; return the public key line.

    An existing key is never overwritten: a second call, or a racing process, gets the
    existing public key. The directory is made 0700 and the private key 0600.
    """
    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if path.exists():
        return _public_line(path, pub)
    if shutil.which("ssh-keygen") is None:
        raise GitError("cannot create an SSH key: ssh-keygen not found", "install openssh-client")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".keygen-") as tmp:
        tmp_key = Path(tmp) / "key"
        proc = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(tmp_key)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        if proc.returncode != 0:
            raise GitError(f"ssh-keygen failed: {one_line(proc.stderr or proc.stdout)}")
        os.chmod(tmp_key, 0o600)
        try:
            os.link(tmp_key, path)  # atomic and never replaces an existing file
        except FileExistsError:
            return _public_line(path, pub)
        with contextlib.suppress(FileExistsError):
            os.link(tmp_key.with_name("key.pub"), pub)
    return _public_line(path, pub)


def _public_line(key: Path, pub: Path) -> str:
    if pub.exists():
        return pub.read_text().strip()
    proc = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    if proc.returncode != 0:
        raise GitError(f"cannot read SSH key {key}: {one_line(proc.stderr)}")
    return proc.stdout.strip()
