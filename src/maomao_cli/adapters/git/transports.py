"""Transports: the dulwich client for each kind of remote, with timeouts and a fast first clone.

Timeouts bound every wait on the network (connecting, and each read or write), not the
total length of a transfer: a big clone that keeps receiving data is never cut off, a
remote that is silent for `timeout` seconds fails. git:// uses socket timeouts, HTTP(S)
urllib3 connect/read timeouts without retries, SSH ConnectTimeout and ServerAlive probes.

SSH goes through the system `ssh` client (the only way to get OpenSSH's host key checking
and agent-free key files without paramiko). Its command line is maomao's own: the user
and host are checked as names (never an option) and `--` ends the options before them;
`core.sshCommand`, GIT_SSH_COMMAND and dulwich's ssh_command are never used.

HTTPS credentials come from the member's config, per host: a request goes out without
them, and only when that very host answers 401 over https is it sent again with the
credential (and the later requests of the same transfer carry it from the start, as git
does). Plain http never gets one; neither does a host it was not configured for, nor a
redirect to another origin (urllib3 drops Authorization on those, and the check is made
again per request). Credentials inside a URL are never sent.

Local paths and file:// are refused unless the member allows them (GitAuth.allow_local).

A first clone indexes the received pack in one pass with `packindex` (local clones copy the
source's packs, see onepass.py); the trees and blobs it keeps feed the checkout.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
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
from maomao_cli.gitmodels import GitAuth, HttpsCredential

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


class SSHClient(internals.ConnectHook, FreshCloneFetch, SSHGitClient):
    def open_connection(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None
    ) -> internals.Connection:
        return internals.dulwich_connect(self, SSHGitClient, cmd, path, protocol_version)


def close_connections(client: GitClient) -> None:
    """Close what a transfer left open (a failure before dulwich's first exchange)."""
    close = getattr(client, "close_connections", None)
    if close is not None:
        close()


class HttpClient(internals.HttpRequestHook, FreshCloneFetch, Urllib3HttpGitClient):
    """Smart HTTP(S) whose credentials go only where they belong, and only when asked."""

    def __init__(
        self,
        base_url: str,
        *,
        pool_manager: Any,
        credentials: Mapping[str, HttpsCredential],
        timeout: float,
    ) -> None:
        # No username/password for dulwich: it would send them before any challenge.
        super().__init__(base_url, pool_manager=pool_manager, timeout=timeout)
        self._credentials = credentials
        self._challenged: set[str] = set()  # hosts that asked (401) during this transfer

    def send_request(
        self, url: str, headers: dict[str, str] | None, data: Any, raise_for_status: bool
    ) -> internals.HttpResponse:
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        host = https_host(url)
        credential = self._credentials.get(host) if host is not None else None
        if credential is not None and host in self._challenged:
            sent = _authorized(sent, credential)
        # dulwich's own status check would raise with the response still open (a socket
        # left to the garbage collector): check here, closing it first.
        resp, read = internals.http_request(self, url, sent, data, False)
        asked = resp.status == 401 and "Authorization" not in sent
        # A streamed body cannot be sent twice; the first request (a GET) asks first.
        if asked and credential is not None and isinstance(data, bytes | None):
            _close(resp)
            assert host is not None
            self._challenged.add(host)
            resp, read = internals.http_request(
                self, url, _authorized(sent, credential), data, False
            )
        if raise_for_status:
            _check_status(resp, url)
        return resp, read


def _close(resp: Any) -> None:
    with contextlib.suppress(Exception):
        resp.drain_conn()
    resp.release_conn()


def _check_status(resp: Any, url: str) -> None:
    """What dulwich's request does with a status that is not 200, the response closed."""
    from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized
    from dulwich.errors import NotGitRepository

    status = resp.status
    if status == 200:
        return
    headers = resp.headers
    _close(resp)
    if status == 404:
        raise NotGitRepository
    if status == 401:
        raise HTTPUnauthorized(headers.get("WWW-Authenticate"), url)
    if status == 407:
        raise HTTPProxyUnauthorized(headers.get("Proxy-Authenticate"), url)
    raise GitProtocolError(f"unexpected http resp {status} for {url}")


def https_host(url: str) -> str | None:
    """The credential key of an https URL ("host", or "host:port" off port 443); None for
    anything that is not https."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or 443
    except ValueError:
        return None
    return host if port == 443 else f"{host}:{port}"


def _authorized(headers: dict[str, str], credential: HttpsCredential) -> dict[str, str]:
    import urllib3.util

    basic = urllib3.util.make_headers(basic_auth=f"{credential.username}:{credential.password}")
    return {**headers, "Authorization": basic["authorization"]}


# Users and hosts as ssh reads them, never an option (the registry refuses others; this
# holds for records written before it did).
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_SSH_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")


class OpenSSHVendor(SSHVendor):
    """OpenSSH with the dataset's key, a strict known-hosts file and no prompts.

    dulwich's ssh_command, password and key_filename are ignored: the command line is
    built here only."""

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
        if not _SSH_HOST.fullmatch(host):
            raise GitError(f"refusing SSH host name {host!r}")
        if username is not None and not _SSH_USER.fullmatch(username):
            raise GitError(f"refusing SSH user name {username!r}")
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
        # "--": nothing after it is an option, whatever the destination looks like.
        args += ["--", host, command.decode("utf-8", "surrogateescape")]
        proc = subprocess.Popen(
            args, bufsize=0, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return SubprocessWrapper(proc)


def client_for(op: str, remote: Remote, auth: GitAuth, timeout: float) -> tuple[GitClient, str]:
    """The client for `remote` and the path to ask it for."""
    if remote.kind == "local":
        if not auth.allow_local:
            raise GitError(
                f"{op} {remote.shown}: refusing a local path as a dataset remote",
                "set [git] allow_local = true in this member's config to clone from its disk",
            )
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
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, "/", "", ""))  # never the URL's userinfo
    import urllib3

    pool = default_urllib3_manager(None, base_url=base, timeout=timeout)
    kw: Any = getattr(pool, "connection_pool_kw", None)
    if isinstance(kw, dict):
        # urllib3 retries connects and reads 3 times by default, which would multiply
        # the timeout; redirects stay allowed, and lose Authorization across origins.
        kw["retries"] = urllib3.Retry(total=5, connect=0, read=0, status=0, redirect=5)
        if auth.ca_file is not None:
            kw["ca_certs"] = str(auth.ca_file)
            kw["cert_reqs"] = "CERT_REQUIRED"
    return HttpClient(base, pool_manager=pool, credentials=auth.https, timeout=timeout)
