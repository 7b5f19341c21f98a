"""Transports: the dulwich client for each kind of remote, with timeouts and a fast first clone.

Timeouts bound every wait on the network (connecting, and each read or write), not the
total length of a transfer: a big clone that keeps receiving data is never cut off, a
remote that is silent for `timeout` seconds fails. git:// uses socket timeouts, HTTP(S)
urllib3 connect/read timeouts without retries, SSH ConnectTimeout and ServerAlive probes.

SSH goes through the system `ssh` client (the only way to get OpenSSH's host key checking
and agent-free key files without paramiko).

A first clone indexes the received pack in one pass with `packindex` (local clones copy the
source's packs, see onepass.py); the trees and blobs it keeps feed the checkout.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dulwich.client import (
    GitClient,
    LocalGitClient,
    SSHGitClient,
    SSHVendor,
    SubprocessWrapper,
    TCPGitClient,
    Urllib3HttpGitClient,
    default_urllib3_manager,
)
from dulwich.errors import GitProtocolError
from dulwich.protocol import (
    DEFAULT_GIT_PROTOCOL_VERSION_FETCH,
    DEFAULT_GIT_PROTOCOL_VERSION_SEND,
    Protocol,
)

from maomao_cli.errors import GitError
from maomao_cli.gitmodels import GitAuth

from . import dulwich_internals as internals
from . import onepass
from .remotes import Remote


class FreshCloneFetch(GitClient):
    """A client whose fetch into an empty repository indexes the pack with `packindex`.

    That reads each object once instead of three times (see packindex) and keeps the
    trees and blobs for the checkout, in `fresh_objects`. Fetches into a repository that
    already has objects (pulls: thin packs), SHA-256 remotes and packs too big to hold
    in memory take dulwich's own path.
    """

    fresh_objects: dict[bytes, bytes] | None = None

    def fetch(  # type: ignore[override]
        self,
        path: bytes | str,
        target: Any,
        determine_wants: Any = None,
        progress: Callable[[bytes], None] | None = None,
        depth: int | None = None,
        **kwargs: Any,
    ) -> Any:
        store = target.object_store
        pack_dir = getattr(store, "pack_dir", None)
        if pack_dir is None or not onepass.is_empty_store(Path(store.path)):
            return super().fetch(path, target, determine_wants, progress, depth, **kwargs)
        from dulwich.client import PackDataProgressWrapper

        fd, tmp_name = tempfile.mkstemp(dir=pack_dir, prefix="tmp_pack_")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                result = self.fetch_pack(
                    path,
                    determine_wants or store.determine_wants_all,
                    target.get_graph_walker(),
                    PackDataProgressWrapper(f.write, progress),
                    progress=progress,
                    depth=depth,
                    **kwargs,
                )
            if tmp.stat().st_size:
                self.store_pack(tmp, target, getattr(result, "object_format", None), progress)
        finally:
            tmp.unlink(missing_ok=True)
        target.update_shallow(result.new_shallow, result.new_unshallow)
        return result

    def store_pack(
        self,
        tmp: Path,
        target: Any,
        object_format: str | None,
        progress: Callable[[bytes], None] | None,
    ) -> None:
        from maomao_cli.adapters import packindex

        store = target.object_store
        if object_format in (None, "sha1"):
            try:
                indexed = packindex.index_pack(tmp, Path(store.pack_dir), progress=progress)
            except packindex.CorruptPack as exc:
                raise GitProtocolError(f"the remote sent a corrupt pack: {exc}") from None
            except packindex.Unsupported:
                pass
            else:
                self.fresh_objects = indexed.contents
                return
        else:
            internals.change_object_format(target, object_format)
        with tmp.open("rb") as f:
            store.add_thin_pack(f.read, None, progress=progress)


class LocalClient(LocalGitClient):
    """Local paths and file://: a first clone copies the source's packs, as git does.

    dulwich's local fetch builds a new pack object by object in Python (8x slower than
    `git clone` on the 5,000-file bench); see onepass.copy_clone for what is copied.
    SHA-256 sources, alternates and depth-limited clones take dulwich's path.
    """

    fresh_objects: dict[bytes, bytes] | None = None

    def fetch(  # type: ignore[override]
        self,
        path: bytes | str,
        target: Any,
        determine_wants: Any = None,
        progress: Callable[[bytes], None] | None = None,
        depth: int | None = None,
        **kwargs: Any,
    ) -> Any:
        if depth is None and onepass.is_empty_store(Path(target.object_store.path)):
            with internals.open_local_repo(self, path) as source:
                copied = onepass.copy_clone(source, Path(target.object_store.path), progress)
                shallow = source.get_shallow()
            if copied is not None:
                result, self.fresh_objects = copied
                if shallow:  # git clones a shallow repository as shallow; dulwich fails
                    target.update_shallow(shallow, None)
                return result
        return super().fetch(path, target, determine_wants, progress, depth, **kwargs)


class TimeoutTCPGitClient(internals.ConnectHook, FreshCloneFetch, TCPGitClient):
    """git:// with a connect and per-read timeout; dulwich's own connect has none."""

    def __init__(self, host: str, port: int | None, timeout: float) -> None:
        super().__init__(host, port=port)
        self.connect_timeout = timeout

    def open_connection(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None
    ) -> internals.Connection:
        if isinstance(path, str):
            path = path.encode(internals.remote_path_encoding(self))
        host, port = internals.tcp_address(self)
        s = socket.create_connection((host, port), timeout=self.connect_timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = s.makefile("rb", -1)
        wfile = s.makefile("wb", 0)

        def close() -> None:
            rfile.close()
            wfile.close()
            s.close()

        def shutdown_write() -> None:
            wfile.flush()
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_WR)

        def can_read() -> bool:
            import select

            return bool(select.select([s], [], [], 0)[0])

        proto = Protocol(
            rfile.read,
            wfile.write,
            close,
            report_activity=internals.report_activity(self),
            shutdown_write=shutdown_write,
        )
        if path.startswith(b"/~"):
            path = path[1:]
        # As dulwich's own TCPGitClient does (only the socket differs).
        version = b""
        if cmd == b"upload-pack":
            self.protocol_version = protocol_version or DEFAULT_GIT_PROTOCOL_VERSION_FETCH
            if self.protocol_version == 2:
                version = b"\0\0version=2\0"
        else:
            self.protocol_version = DEFAULT_GIT_PROTOCOL_VERSION_SEND
        proto.send_cmd(b"git-" + cmd, path, b"host=" + host.encode("ascii") + version)
        return proto, can_read, None


class SSHClient(FreshCloneFetch, SSHGitClient):
    pass


class HttpClient(FreshCloneFetch, Urllib3HttpGitClient):
    pass


class OpenSSHVendor(SSHVendor):
    """OpenSSH with the dataset's key, a strict known-hosts file and no prompts."""

    def __init__(self, auth: GitAuth, timeout: float) -> None:
        self.auth = auth
        self.timeout = timeout

    def run_command(
        self,
        host: str,
        command: bytes,
        username: str | None = None,
        port: int | None = None,
        password: str | None = None,
        key_filename: str | None = None,
        ssh_command: str | None = None,
        protocol_version: int | None = None,
    ) -> SubprocessWrapper:
        if host.startswith("-"):
            raise GitError(f"refusing SSH host name {host!r}")
        t = max(1, math.ceil(self.timeout))
        alive = max(1, math.ceil(self.timeout / 3))
        strict = "accept-new" if self.auth.trust_new_hosts else "yes"
        args = [
            "ssh", "-x", "-T",
            "-o", "BatchMode=yes",  # never prompt: fail instead of hanging on a password
            "-o", f"ConnectTimeout={t}",
            "-o", f"ServerAliveInterval={alive}",
            "-o", "ServerAliveCountMax=3",
            "-o", f"StrictHostKeyChecking={strict}",
        ]  # fmt: skip
        if self.auth.known_hosts is not None:
            args += ["-o", f"UserKnownHostsFile={self.auth.known_hosts}"]
        if self.auth.ssh_key is not None:
            args += ["-i", str(self.auth.ssh_key), "-o", "IdentitiesOnly=yes"]
        if port:
            args += ["-p", str(port)]
        if username:
            host = f"{username}@{host}"
        args += [host, command.decode("utf-8", "surrogateescape")]
        proc = subprocess.Popen(
            args, bufsize=0, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return SubprocessWrapper(proc)


def client_for(remote: Remote, auth: GitAuth, timeout: float) -> tuple[GitClient, str]:
    """The client for `remote` and the path to ask it for."""
    if remote.kind == "local":
        return LocalClient(), remote.path
    if remote.kind == "git":
        assert remote.host is not None
        return TimeoutTCPGitClient(remote.host, remote.port, timeout), remote.path
    if remote.kind == "ssh":
        assert remote.host is not None
        ssh = SSHClient(
            remote.host,
            port=remote.port,
            username=remote.user,
            vendor=OpenSSHVendor(auth, timeout),
        )
        return ssh, remote.path
    return _http_client(remote, auth, timeout), remote.path


def _http_client(remote: Remote, auth: GitAuth, timeout: float) -> HttpClient:
    parts = urlsplit(remote.url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, "/", "", ""))
    import urllib3

    pool = default_urllib3_manager(None, base_url=base, timeout=timeout)
    # urllib3 retries connects and reads 3 times by default, which would multiply the
    # timeout; redirects stay allowed.
    kw: Any = getattr(pool, "connection_pool_kw", None)
    if isinstance(kw, dict):
        kw["retries"] = urllib3.Retry(total=5, connect=0, read=0, status=0, redirect=5)
    return HttpClient(
        base,
        pool_manager=pool,
        username=auth.https_username or parts.username,
        password=auth.https_password or parts.password,
        timeout=timeout,
    )
