"""Git adapter for datasets, built on dulwich: clone, pull, commit, push, status, keys.

No `git` binary is needed at run time. SSH goes through the system `ssh` client (the only
way to get OpenSSH's host key checking and agent-free key files without paramiko), and
keys are made with `ssh-keygen` from the same package (openssh-client).

Remotes: local paths and file://, git://, smart HTTP(S), ssh:// and scp-like user@host:path.

Timeouts bound every wait on the network (connecting, and each read or write), not the
total length of a transfer: a big clone that keeps receiving data is never cut off, a
remote that is silent for `timeout` seconds fails. git:// uses socket timeouts, HTTP(S)
urllib3 connect/read timeouts without retries, SSH ConnectTimeout and ServerAlive probes.

Every failure is a `GitError` with one line naming the (credential-free) URL.
dulwich is heavy, so only this module imports it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from dulwich.client import (
    GitClient,
    HTTPUnauthorized,
    LocalGitClient,
    SSHGitClient,
    SSHVendor,
    SubprocessWrapper,
    TCPGitClient,
    Urllib3HttpGitClient,
    default_urllib3_manager,
)
from dulwich.diff_tree import tree_changes
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.graph import can_fast_forward, find_merge_base
from dulwich.index import update_working_tree
from dulwich.objects import Commit, ObjectID, Tree
from dulwich.protocol import (
    DEFAULT_GIT_PROTOCOL_VERSION_FETCH,
    DEFAULT_GIT_PROTOCOL_VERSION_SEND,
    Protocol,
)
from dulwich.refs import HEADREF, Ref
from dulwich.repo import Repo

from maomao_cli.errors import GitError

if TYPE_CHECKING:
    from dulwich.diff_tree import TreeChange

Progress = Callable[[str], None]

DEFAULT_TIMEOUT = 60.0
_PUSH_ERROR_FILE = "maomao-last-push-error"  # inside .git: survives runs, never committed


@dataclass(frozen=True)
class GitAuth:
    """Credentials for one dataset. The password never appears in repr, logs or errors."""

    ssh_key: Path | None = None
    known_hosts: Path | None = None
    trust_new_hosts: bool = False  # StrictHostKeyChecking=accept-new instead of yes
    https_username: str | None = None
    https_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PullResult:
    """What a pull did. `conflict` leaves HEAD, the index and the work tree untouched."""

    outcome: Literal["up-to-date", "fast-forward", "merged", "conflict"]
    head: str | None  # local branch tip after the pull
    remote: str | None  # remote branch tip that was fetched (None: no such branch yet)
    conflicts: tuple[str, ...] = ()

    @property
    def conflict(self) -> bool:
        return self.outcome == "conflict"


@dataclass(frozen=True)
class RepoStatus:
    branch: str
    ahead: int  # local commits not on the remote-tracking ref (i.e. not pushed)
    behind: int  # commits on the remote-tracking ref (as of the last pull) not local
    changed_files: list[str]  # uncommitted: staged, modified, deleted or untracked
    last_push_error: str | None = None


# ---------------------------------------------------------------------------- progress

_PROGRESS_RE = re.compile(
    r"^(?:remote:\s*)?(?P<phase>[A-Za-z][A-Za-z ]*?):\s+"
    r"(?:(?P<pct>\d+)%\s+\((?P<done>\d+)/(?P<total>\d+)\)"
    r"|(?P<done2>\d+)/(?P<total2>\d+)\b"  # dulwich's own "writing pack data: 3/5"
    r"|(?P<count>\d+)(?P<rest>.*))"
)


def parse_progress(line: str) -> tuple[str, int, int] | None:
    """Turn one git progress line into (phase, done, total); total 0 means unknown.

    "Counting objects: 45% (9/20)" -> ("Counting objects", 9, 20);
    "Counting objects: 20, done." -> ("Counting objects", 20, 20);
    "Counting objects: 12" -> ("Counting objects", 12, 0);
    "writing pack data: 3/5" -> ("writing pack data", 3, 5); anything else -> None.
    """
    m = _PROGRESS_RE.match(line.strip())
    if m is None:
        return None
    phase = m["phase"].strip()
    if m["done"] is not None:
        return phase, int(m["done"]), int(m["total"])
    if m["done2"] is not None:
        return phase, int(m["done2"]), int(m["total2"])
    count = int(m["count"])
    rest = m["rest"].strip()
    if rest.startswith(", done") or rest == "done.":
        return phase, count, count
    if rest == "" or rest.startswith(("|", ",")):
        return phase, count, 0
    return None  # e.g. "Total: 20 (delta 3)" style lines are not progress


class _LineSplitter:
    """dulwich hands progress over in arbitrary byte chunks; callers want whole lines."""

    def __init__(self, sink: Progress) -> None:
        self._sink = sink
        self._buf = b""

    def __call__(self, data: bytes) -> None:
        self._buf += data
        parts = re.split(rb"[\r\n]", self._buf)
        self._buf = parts.pop()
        for part in parts:
            text = part.decode("utf-8", "replace").strip()
            if text:
                self._sink(text)

    def flush(self) -> None:
        if self._buf.strip():
            self._sink(self._buf.decode("utf-8", "replace").strip())
        self._buf = b""


# ---------------------------------------------------------------------------- transports


@dataclass(frozen=True)
class _Remote:
    kind: Literal["local", "git", "http", "ssh"]
    url: str  # as given, credentials included: never shown
    shown: str  # credential-free, for messages and .git/config
    host: str | None = None
    port: int | None = None
    user: str | None = None
    path: str = ""


_SCP_RE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>.*)$")


def _parse_url(url: str) -> _Remote:
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        if parts.username and scheme != "http" and scheme != "https":
            netloc = f"{parts.username}@{netloc}"
        shown = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
        try:
            port = parts.port
        except ValueError:
            raise GitError(f"bad git URL {shown}: invalid port") from None
        if scheme == "file":
            return _Remote("local", url, shown, path=parts.path)
        if scheme == "git":
            return _Remote("git", url, shown, parts.hostname, port, path=parts.path)
        if scheme in ("http", "https"):
            return _Remote("http", url, shown, parts.hostname, port, parts.username, parts.path)
        if scheme in ("ssh", "git+ssh"):
            return _Remote("ssh", url, shown, parts.hostname, port, parts.username, parts.path)
        raise GitError(
            f"unsupported git URL {shown}",
            "use a local path, file://, git://, http(s)://, ssh:// or user@host:path",
        )
    m = _SCP_RE.match(url)
    # Like git: "host:path" is SSH only when no slash comes before the colon.
    if m is not None and not os.path.exists(url):
        return _Remote("ssh", url, url, m["host"], None, m["user"], m["path"])
    return _Remote("local", url, url, path=os.path.abspath(url))


class _FreshCloneFetch(GitClient):
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
        if pack_dir is None or not _is_empty_store(Path(store.path)):
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
                self._store_pack(tmp, target, getattr(result, "object_format", None), progress)
        finally:
            tmp.unlink(missing_ok=True)
        target.update_shallow(result.new_shallow, result.new_unshallow)
        return result

    def _store_pack(
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
            target._change_object_format(object_format)
        with tmp.open("rb") as f:
            store.add_thin_pack(f.read, None, progress=progress)


def _is_empty_store(objects: Path) -> bool:
    """True for the objects directory of a repository that was just initialised."""
    names = set(os.listdir(objects))
    return names <= {"info", "pack"} and not os.listdir(objects / "pack")


class _LocalClient(LocalGitClient):
    """Local paths and file://: a first clone copies the source's packs, as git does.

    dulwich's local fetch builds a new pack object by object in Python (8x slower than
    `git clone` on the 5,000-file bench). Packs are immutable, so a fresh clone copies
    them, checks and indexes each copy with `packindex` (which also keeps the trees and
    blobs for the checkout), and copies loose objects as they are. Like git's local clone this
    may bring unreachable objects along, and a shallow source gives a shallow clone
    (dulwich's own path fails on one). SHA-256 sources, alternates and depth-limited
    clones take dulwich's path.
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
        if depth is None and _is_empty_store(Path(target.object_store.path)):
            with self._open_repo(path) as source:
                copied = _copy_clone(source, Path(target.object_store.path), progress)
                shallow = source.get_shallow()
            if copied is not None:
                result, self.fresh_objects = copied
                if shallow:  # git clones a shallow repository as shallow; dulwich fails
                    target.update_shallow(shallow, None)
                return result
        return super().fetch(path, target, determine_wants, progress, depth, **kwargs)


def _copy_clone(
    source: Repo, dest: Path, progress: Callable[[bytes], None] | None
) -> tuple[Any, dict[bytes, bytes]] | None:
    """Copy all of `source`'s objects into the empty objects directory `dest`.

    None when the source is one dulwich must handle, or changed under our feet.
    """
    from dulwich.client import FetchPackResult
    from dulwich.protocol import agent_string

    src = Path(source.object_store.path)
    if source.object_format.name != "sha1" or (src / "info" / "alternates").exists():
        return None
    # Refs first: the objects copied after them are then sure to cover them.
    refs: dict[Ref, ObjectID | None] = dict(source.get_refs())
    symrefs = source.refs.get_symrefs()
    try:
        contents = _copy_objects(src, dest, progress)
    except FileNotFoundError:  # repacked while we copied: dulwich's way starts over
        _empty_objects(dest)
        return None
    return FetchPackResult(refs, symrefs, agent_string(), object_format="sha1"), contents


def _copy_objects(
    src: Path, dest: Path, progress: Callable[[bytes], None] | None
) -> dict[bytes, bytes]:
    from maomao_cli.adapters import packindex

    contents: dict[bytes, bytes] = {}
    kept = 0  # each pack keeps up to the limit; many packs must not multiply it
    packs = sorted((src / "pack").glob("*.pack"))
    for n, pack in enumerate(packs, 1):
        if progress is not None:
            progress(f"Copying packs: {100 * n // len(packs)}% ({n}/{len(packs)})\n".encode())
        idx = pack.with_suffix(".idx")
        if not idx.exists():
            continue  # still being written; git skips it too
        tmp = dest / "pack" / f"tmp_pack_{pack.stem}"
        shutil.copyfile(pack, tmp)
        try:
            indexed = packindex.index_pack(tmp, dest / "pack", progress=progress)
            if kept < packindex.MAX_INFLATED:
                contents.update(indexed.contents)
                kept += sum(map(len, indexed.contents.values()))
        except packindex.Unsupported:
            shutil.copyfile(idx, dest / "pack" / idx.name)
            os.replace(tmp, dest / "pack" / pack.name)
        except packindex.CorruptPack as exc:
            raise GitProtocolError(f"the source has a corrupt pack {pack.name}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    fans = [fan for fan in src.iterdir() if len(fan.name) == 2 and fan.is_dir()]
    loose = [obj for fan in fans for obj in fan.iterdir()]
    for n, obj in enumerate(loose, 1):
        (dest / obj.parent.name).mkdir(exist_ok=True)
        shutil.copyfile(obj, dest / obj.parent.name / obj.name)
        if progress is not None and (n % 256 == 0 or n == len(loose)):
            pct = 100 * n // len(loose)
            progress(f"Copying objects: {pct}% ({n}/{len(loose)})\n".encode())
    return contents


def _empty_objects(objects: Path) -> None:
    for entry in objects.iterdir():
        if entry.name == "pack":
            for f in entry.iterdir():
                f.unlink()
        elif entry.name != "info":
            shutil.rmtree(entry)


class _TimeoutTCPGitClient(_FreshCloneFetch, TCPGitClient):
    """git:// with a connect and per-read timeout; dulwich's own connect has none."""

    def __init__(self, host: str, port: int | None, timeout: float) -> None:
        super().__init__(host, port=port)
        self._timeout = timeout

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        if isinstance(path, str):
            path = path.encode(self._remote_path_encoding)
        s = socket.create_connection((self._host, self._port), timeout=self._timeout)
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
            report_activity=self._report_activity,
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
        proto.send_cmd(b"git-" + cmd, path, b"host=" + self._host.encode("ascii") + version)
        return proto, can_read, None


class _SSHClient(_FreshCloneFetch, SSHGitClient):
    pass


class _HttpClient(_FreshCloneFetch, Urllib3HttpGitClient):
    pass


class _SSHVendor(SSHVendor):
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


def _client(remote: _Remote, auth: GitAuth, timeout: float) -> tuple[GitClient, str]:
    if remote.kind == "local":
        return _LocalClient(), remote.path
    if remote.kind == "git":
        assert remote.host is not None
        return _TimeoutTCPGitClient(remote.host, remote.port, timeout), remote.path
    if remote.kind == "ssh":
        assert remote.host is not None
        ssh = _SSHClient(
            remote.host, port=remote.port, username=remote.user, vendor=_SSHVendor(auth, timeout)
        )
        return ssh, remote.path
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
    http = _HttpClient(
        base,
        pool_manager=pool,
        username=auth.https_username or parts.username,
        password=auth.https_password or parts.password,
        timeout=timeout,
    )
    return http, remote.path


# ---------------------------------------------------------------------------- errors


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # ssh prints "Warning: Permanently added ..." before the real error.
    useful = [ln for ln in lines if not ln.lower().startswith("warning:")] or lines
    return useful[-1] if useful else text.strip()


def _host_key_hint(remote: _Remote, auth: GitAuth) -> str:
    kh = auth.known_hosts or Path("~/.ssh/known_hosts")
    port = f"-p {remote.port} " if remote.port else ""
    return (
        f"check the host's key fingerprint, then trust it with "
        f"`ssh-keyscan {port}{remote.host} >> {kh}` (or set trust_new_hosts)"
    )


def _ssh_error(op: str, remote: _Remote, auth: GitAuth, text: str) -> GitError:
    low = text.lower()
    where = f"{op} {remote.shown}"
    if "host key verification failed" in low or "no matching host key" in low:
        return GitError(f"{where}: unknown SSH host key", _host_key_hint(remote, auth))
    if "remote host identification has changed" in low:
        return GitError(
            f"{where}: SSH host key changed (possible man-in-the-middle)",
            f"if the change is expected, remove the old key with `ssh-keygen -R {remote.host}`",
        )
    if "permission denied" in low:
        return GitError(
            f"{where}: SSH authentication failed",
            "add the dataset's public key (maomao dataset key NAME) as a deploy key",
        )
    if "connection refused" in low:
        return GitError(f"{where}: connection refused")
    if "timed out" in low or "timeout" in low:
        return GitError(f"{where}: timed out")
    if "could not resolve" in low:
        return GitError(f"{where}: unknown host {remote.host}")
    if (
        "not a git repository" in low
        or "does not appear to be a git" in low
        or ("no such file" in low)
    ):
        return GitError(f"{where}: no git repository at {remote.path}")
    return GitError(f"{where}: {_one_line(text)}")


@contextlib.contextmanager
def _translated(op: str, remote: _Remote, auth: GitAuth, timeout: float) -> Iterator[None]:
    """Turn whatever dulwich, sockets, urllib3 or ssh raise into one-line GitErrors."""
    where = f"{op} {remote.shown}"
    try:
        yield
    except GitError:
        raise
    except HTTPUnauthorized:
        raise GitError(
            f"{where}: authentication failed", "check the HTTPS username and password"
        ) from None
    except NotGitRepository:
        raise GitError(f"{where}: no git repository at {remote.path}") from None
    except TimeoutError:
        raise GitError(f"{where}: timed out after {timeout:g}s") from None
    except ConnectionRefusedError:
        raise GitError(f"{where}: connection refused") from None
    except socket.gaierror:
        raise GitError(f"{where}: unknown host {remote.host}") from None
    except HangupException as exc:
        text = "\n".join(ln.decode("utf-8", "replace") for ln in (exc.stderr_lines or [])) or str(
            exc
        )
        if remote.kind == "ssh":
            raise _ssh_error(op, remote, auth, text) from None
        if _looks_missing(text):
            raise GitError(f"{where}: no git repository at {remote.path}") from None
        raise GitError(f"{where}: {_one_line(text)}") from None
    except GitProtocolError as exc:
        text = str(exc)
        if remote.kind == "ssh":
            raise _ssh_error(op, remote, auth, text) from None
        # dulwich wraps urllib3's errors, whose text holds the port: "port=40173" is no 401.
        reason = _urllib3_reason(exc.__cause__) if exc.__cause__ is not None else None
        if reason is not None:
            raise GitError(f"{where}: {reason}") from None
        statuses = set(_HTTP_STATUS_RE.findall(text))
        if "404" in statuses or _looks_missing(text):
            raise GitError(f"{where}: no git repository at {remote.path}") from None
        if statuses & {"401", "403"}:
            raise GitError(
                f"{where}: authentication failed", "check the HTTPS username and password"
            ) from None
        raise GitError(f"{where}: {_one_line(text)}") from None
    except OSError as exc:
        raise GitError(f"{where}: {_urllib3_reason(exc) or _one_line(str(exc))}") from None
    except Exception as exc:
        reason = _urllib3_reason(exc)
        if reason is None:
            raise
        raise GitError(f"{where}: {reason}") from None


# A status code standing alone, not digits of a port, a count or a URL path.
_HTTP_STATUS_RE = re.compile(r"(?<![\w:=/.])(40[134])(?![\w.])")


def _looks_missing(text: str) -> bool:
    low = text.lower()
    # git daemon: "no such repository" / "access denied or repository not exported".
    return any(
        s in low
        for s in ("no such repository", "not exported", "not found", "not a git repository")
    )


def _urllib3_reason(exc: BaseException) -> str | None:
    import urllib3.exceptions as ue

    if not isinstance(exc, ue.HTTPError):
        return None
    inner: BaseException = exc
    if isinstance(exc, ue.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    # Most specific first: NewConnectionError (and NameResolutionError under it) is also
    # a ConnectTimeoutError in urllib3 2, for compatibility.
    if isinstance(inner, ue.NameResolutionError):
        return "unknown host"
    if isinstance(inner, ue.NewConnectionError):
        return "connection refused" if "refused" in str(inner).lower() else "cannot connect"
    if isinstance(inner, ue.TimeoutError):
        return "timed out"
    if isinstance(inner, ue.SSLError):
        return "TLS error"
    return type(inner).__name__


# ---------------------------------------------------------------------------- helpers


def _open(repo_dir: Path) -> Repo:
    try:
        return Repo(str(repo_dir))
    except NotGitRepository:
        raise GitError(f"{repo_dir} is not a git clone") from None


def _current_branch(repo: Repo, branch: str | None) -> str:
    try:
        target = repo.refs.get_symrefs().get(HEADREF)
    except Exception:  # pragma: no cover - a broken refs directory
        target = None
    current = target[len(b"refs/heads/") :].decode() if target else None
    if branch is not None and current is not None and branch != current:
        raise GitError(f"{repo.path}: branch {current} is checked out, not {branch}")
    if branch is None and current is None:
        raise GitError(f"{repo.path}: HEAD is detached; give the branch")
    return branch or str(current)


def _branch_ref(name: str) -> Ref:
    return Ref(b"refs/heads/" + name.encode())


def _tracking_ref(name: str) -> Ref:
    return Ref(b"refs/remotes/origin/" + name.encode())


def _read_ref(repo: Repo, ref: Ref) -> ObjectID | None:
    try:
        return repo.refs[ref]
    except KeyError:
        return None


def _head(repo: Repo) -> ObjectID | None:
    return repo.refs.follow(HEADREF)[1]


def _commit(repo: Repo, sha: ObjectID) -> Commit:
    obj = repo[sha]
    if not isinstance(obj, Commit):
        raise GitError(f"{repo.path}: {sha.decode()} is not a commit")
    return obj


def _origin(repo: Repo) -> str:
    try:
        return repo.get_config().get((b"remote", b"origin"), b"url").decode()
    except KeyError:
        raise GitError(f"{repo.path}: no remote named origin") from None


def _identity(author: str) -> bytes:
    """'Name <email>' as given; a bare member name becomes 'name <name@maomao>'."""
    author = author.strip()
    if re.fullmatch(r"[^<>]+<[^<>]*>", author):
        return author.encode()
    return f"{author} <{author}@maomao>".encode()


def _new_commit(
    repo: Repo, tree: ObjectID, parents: list[ObjectID], message: str, who: bytes
) -> Commit:
    c = Commit()
    c.tree = tree
    c.parents = parents
    c.author = c.committer = who
    c.author_time = c.commit_time = int(time.time())
    tz = -time.timezone if not time.daylight else -time.altzone
    c.author_timezone = c.commit_timezone = tz
    c.encoding = b"UTF-8"
    c.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
    repo.object_store.add_object(c)
    return c


def _changed_paths(repo: Repo) -> list[str]:
    from dulwich import porcelain

    st = porcelain.status(repo, untracked_files="all")
    paths: set[str] = set()
    for group in st.staged.values():
        paths.update(os.fsdecode(p) for p in group)
    paths.update(os.fsdecode(p) for p in st.unstaged)
    paths.update(os.fsdecode(p) for p in st.untracked)
    return sorted(paths)


def _update_tree(repo: Repo, old_tree: ObjectID | None, new_tree: ObjectID) -> None:
    from dulwich.errors import WorkingTreeModifiedError

    changes = tree_changes(repo.object_store, old_tree, new_tree)
    try:
        update_working_tree(repo, old_tree, new_tree, change_iterator=changes)
    except WorkingTreeModifiedError as exc:
        raise GitError(
            f"{repo.path}: local changes would be overwritten: {_one_line(str(exc))}",
            "commit or remove the local changes, then pull again",
        ) from None


def _push_error_path(repo: Repo) -> Path:
    return Path(repo.controldir()) / _PUSH_ERROR_FILE


def _remove_created(dest: Path, existed: bool) -> None:
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():  # dest was empty: everything inside is ours
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- operations


def clone(
    url: str,
    dest: Path,
    *,
    branch: str | None = None,
    depth: int | None = None,
    auth: GitAuth = GitAuth(),
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> None:
    """Clone `url` into `dest` (absent or empty) and check out `branch` (default: HEAD).

    On any failure, what the clone created is removed again.
    """
    dest = Path(dest)
    remote = _parse_url(url)
    existed = dest.exists()
    if existed and (not dest.is_dir() or any(dest.iterdir())):
        raise GitError(f"clone {remote.shown}: {dest} exists and is not empty")
    if depth is not None and depth < 1:
        raise GitError(f"clone {remote.shown}: depth must be at least 1")
    client, path = _client(remote, auth, timeout)
    lines = _LineSplitter(progress) if progress else None
    try:
        with _translated("clone", remote, auth, timeout):
            try:
                repo = client.clone(
                    path,
                    str(dest),
                    mkdir=not existed,
                    checkout=False,  # _checkout_fresh below is faster on big trees
                    branch=branch,
                    progress=lines,
                    depth=depth,
                    origin_url=remote.shown,  # never store an HTTPS password in .git/config
                )
            except KeyError as exc:
                raise GitError(f"clone {remote.shown}: no branch {exc.args[0]!r}") from None
            try:
                head = _head(repo)
                if head is not None:
                    known = getattr(client, "fresh_objects", None) or {}
                    _checkout_fresh(repo, _commit(repo, head).tree, known)
            finally:
                repo.close()
    except BaseException:
        _remove_created(dest, existed)
        raise
    finally:
        if lines:
            lines.flush()


def _checkout_fresh(repo: Repo, tree_id: ObjectID, known: Mapping[bytes, bytes]) -> None:
    """Write a tree into an empty work tree and its index, with few system calls.

    `known` holds the raw contents of blobs and trees by hex id when the fetch kept them
    (see packindex); anything missing there is read from the object store.

    What dulwich's build_index_from_tree does for a fresh clone, minus its per-file
    lstat, exists check and buffered open: the profile of a 5,000-file clone showed
    those dominating. Names are validated as dulwich does (no .git, no '..'); each
    directory is made once, when its tree is reached, with mkdir (which fails on
    anything already there), and files are created with O_EXCL|O_NOFOLLOW, so nothing
    can be written through a symlink from the tree.
    """
    from dulwich.errors import ObjectFormatException
    from dulwich.index import Index, index_entry_from_stat, validate_path_element_default
    from dulwich.objects import S_ISGITLINK, parse_tree

    store = repo.object_store

    def raw(sha: bytes) -> bytes:
        data = known.get(sha)
        return data if data is not None else store[ObjectID(sha)].as_raw_string()

    root = os.fsencode(repo.path)
    index = Index(repo.index_path(), read=False)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    todo: list[tuple[bytes, bytes]] = [(b"", tree_id)]
    while todo:
        prefix, tree = todo.pop()
        try:
            entries = list(parse_tree(raw(tree), 20))
        except ObjectFormatException as exc:
            raise GitError(f"clone: malformed tree {tree.decode()}: {exc}") from None
        for name, mode, sha in entries:
            path = prefix + name
            if not validate_path_element_default(name):
                raise GitError(f"clone: refusing unsafe path {os.fsdecode(path)!r} in the tree")
            full = os.path.join(root, path)
            if stat.S_ISDIR(mode):
                os.mkdir(full)
                todo.append((path + b"/", sha))
                continue
            if S_ISGITLINK(mode):
                os.mkdir(full)
                st = os.lstat(full)
            elif stat.S_ISLNK(mode):
                if name.lower() == b".gitmodules":
                    raise GitError("clone: refusing a .gitmodules symlink in the tree")
                os.symlink(raw(sha), full)
                st = os.lstat(full)
            else:
                fd = os.open(full, flags, 0o755 if mode & 0o100 else 0o644)
                try:
                    view = memoryview(raw(sha))
                    while view:
                        view = view[os.write(fd, view) :]
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
            index[path] = index_entry_from_stat(st, ObjectID(sha), mode=mode)
    index.write()


def pull(
    repo_dir: Path,
    *,
    branch: str | None = None,
    auth: GitAuth = GitAuth(),
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
    author: str = "maomao <maomao@maomao>",
) -> PullResult:
    """Fetch `branch` from origin and fast-forward, or merge when no file changed on both sides.

    A file changed differently on both sides is a conflict: nothing local is touched (HEAD,
    index and work tree stay as they were) and the result says which paths conflict.
    maomao never line-merges data files.
    """
    repo = _open(Path(repo_dir))
    try:
        name = _current_branch(repo, branch)
        remote = _parse_url(_origin(repo))
        client, path = _client(remote, auth, timeout)
        ref = _branch_ref(name)
        lines = _LineSplitter(progress) if progress else None

        def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            sha = refs.get(ref)
            return [sha] if sha is not None and sha not in repo.object_store else []

        with _translated("pull", remote, auth, timeout):
            try:
                # Protocol v1: the server ACKs each common commit as it reads it, so
                # dulwich stops after a few haves; over v2 it walks the whole history
                # first (0.3 s of a pull on the 1,000-commit bench, growing with it).
                fetched = client.fetch(
                    path, repo, determine_wants=wants, progress=lines, protocol_version=1
                )
            finally:
                if lines:
                    lines.flush()
        theirs = fetched.refs.get(ref)
        ours = _head(repo)
        if theirs is None:
            return PullResult("up-to-date", _s(ours), None)
        repo.refs[_tracking_ref(name)] = theirs
        if ours is None:  # an empty clone: take the remote branch as it is
            _update_tree(repo, None, _commit(repo, theirs).tree)
            repo.refs[ref] = theirs
            return PullResult("fast-forward", _s(theirs), _s(theirs))
        if ours == theirs or can_fast_forward(repo, theirs, ours):
            return PullResult("up-to-date", _s(ours), _s(theirs))
        if can_fast_forward(repo, ours, theirs):
            _update_tree(repo, _commit(repo, ours).tree, _commit(repo, theirs).tree)
            repo.refs.set_if_equals(ref, ours, theirs)
            return PullResult("fast-forward", _s(theirs), _s(theirs))
        return _merge(repo, ref, ours, theirs, name, author)
    except KeyError as exc:
        # A shallow clone whose history is too short to find the merge base.
        raise GitError(
            f"pull {repo_dir}: missing object {exc.args[0]!r}",
            "the clone is too shallow to merge; clone it again without a depth",
        ) from None
    finally:
        repo.close()


def _s(sha: bytes | None) -> str | None:
    return sha.decode() if sha is not None else None


def _tree_delta(
    repo: Repo, old: ObjectID, new: ObjectID
) -> dict[bytes, tuple[int, ObjectID] | None]:
    out: dict[bytes, tuple[int, ObjectID] | None] = {}
    change: TreeChange
    for change in tree_changes(repo.object_store, old, new):
        if change.old is not None and change.old.path is not None:
            out[change.old.path] = None  # deleted unless the new side says otherwise
        if change.new is not None and change.new.path is not None:
            assert change.new.mode is not None and change.new.sha is not None
            out[change.new.path] = (change.new.mode, change.new.sha)
    return out


def _merge(
    repo: Repo, ref: Ref, ours: ObjectID, theirs: ObjectID, name: str, author: str
) -> PullResult:
    from dulwich.merge import recursive_merge

    bases = find_merge_base(repo, [ours, theirs])
    ours_c, theirs_c = _commit(repo, ours), _commit(repo, theirs)
    if len(bases) == 1:
        base_tree = _commit(repo, bases[0]).tree
        mine = _tree_delta(repo, base_tree, ours_c.tree)
        other = _tree_delta(repo, base_tree, theirs_c.tree)
        both = sorted(p for p in mine.keys() & other.keys() if mine[p] != other[p])
        if both:
            return PullResult("conflict", _s(ours), _s(theirs), tuple(os.fsdecode(p) for p in both))
    try:
        tree, conflicts = recursive_merge(repo.object_store, bases, ours_c, theirs_c)
    except ImportError:  # criss-cross history needing a line merge without merge3
        return PullResult("conflict", _s(ours), _s(theirs), ())
    if conflicts:
        names = tuple(sorted(os.fsdecode(p) for p in conflicts))
        return PullResult("conflict", _s(ours), _s(theirs), names)
    assert isinstance(tree, Tree)
    repo.object_store.add_object(tree)
    _update_tree(repo, ours_c.tree, tree.id)
    msg = f"Merge remote-tracking branch 'origin/{name}'"
    commit = _new_commit(repo, tree.id, [ours, theirs], msg, _identity(author))
    repo.refs.set_if_equals(ref, ours, commit.id)
    return PullResult("merged", _s(commit.id), _s(theirs))


def commit_all(repo_dir: Path, message: str, author: str) -> str | None:
    """Stage every new, changed and deleted file (honouring .gitignore) and commit.

    Returns the new commit's sha, or None when nothing changed. `author` is
    'Name <email>' or a bare member name.
    """
    repo = _open(Path(repo_dir))
    try:
        name = _current_branch(repo, None)
        paths = _changed_paths(repo)
        if paths:
            repo.get_worktree().stage(paths)  # a missing file is removed from the index
        tree = repo.open_index().commit(repo.object_store)
        head = _head(repo)
        if head is not None and _commit(repo, head).tree == tree:
            return None
        if head is None and not paths:
            return None
        commit = _new_commit(repo, tree, [head] if head else [], message, _identity(author))
        ref = _branch_ref(name)
        if head is None:
            repo.refs.add_if_new(ref, commit.id)
        elif not repo.refs.set_if_equals(ref, head, commit.id):
            raise GitError(f"commit {repo_dir}: {name} moved during the commit; try again")
        return commit.id.decode()
    finally:
        repo.close()


class _Rejected(Exception):
    pass


def push(
    repo_dir: Path,
    *,
    branch: str | None = None,
    auth: GitAuth = GitAuth(),
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> None:
    """Push `branch` to origin, fast-forward only.

    The outcome is remembered in the clone, so `status` can show the last push error
    until a push succeeds.
    """
    repo = _open(Path(repo_dir))
    try:
        name = _current_branch(repo, branch)
        remote = _parse_url(_origin(repo))
        try:
            _push(repo, name, remote, auth, timeout, progress)
        except GitError as exc:
            _push_error_path(repo).write_text(exc.message + "\n")
            raise
        _push_error_path(repo).unlink(missing_ok=True)
    finally:
        repo.close()


def _push(
    repo: Repo, name: str, remote: _Remote, auth: GitAuth, timeout: float, progress: Progress | None
) -> None:
    ref = _branch_ref(name)
    local = _read_ref(repo, ref)
    if local is None:
        raise GitError(f"push {remote.shown}: no commit on {name} to push")
    client, path = _client(remote, auth, timeout)
    lines = _LineSplitter(progress) if progress else None

    def update_refs(refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
        old = refs.get(ref)
        if (
            old is not None
            and old != local
            and (old not in repo.object_store or not can_fast_forward(repo, old, local))
        ):
            raise _Rejected()
        return {ref: local}

    def pack_data(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
        return repo.generate_pack_data(set(have), set(want), progress=progress, ofs_delta=ofs_delta)

    with _translated("push", remote, auth, timeout):
        try:
            result = client.send_pack(path.encode(), update_refs, pack_data, progress=lines)
        except _Rejected:
            raise GitError(
                f"push {remote.shown}: rejected, the remote {name} has commits this clone lacks",
                "pull first, then push again",
            ) from None
        finally:
            if lines:
                lines.flush()
    errors = {r: e for r, e in (result.ref_status or {}).items() if e is not None}
    if errors:
        reason = errors.get(ref) or next(iter(errors.values()))
        raise GitError(f"push {remote.shown}: rejected by the remote: {_one_line(str(reason))}")
    repo.refs[_tracking_ref(name)] = local


def record_push_error(repo_dir: Path, message: str) -> None:
    """Remember why local commits were not pushed (e.g. a pull conflict), for `status`,
    until a push succeeds."""
    repo = _open(Path(repo_dir))
    try:
        _push_error_path(repo).write_text(" ".join(message.split()) + "\n")
    finally:
        repo.close()


def status(repo_dir: Path, *, branch: str | None = None) -> RepoStatus:
    """Local view, no network: commits not pushed, commits pulled but not merged, edits."""
    repo = _open(Path(repo_dir))
    try:
        name = _current_branch(repo, branch)
        local = _head(repo)
        tracking = _read_ref(repo, _tracking_ref(name))
        ahead = behind = 0
        if local is not None:
            ahead = len(list(repo.get_walker(include=[local], exclude=_opt(tracking))))
        if tracking is not None:
            behind = len(list(repo.get_walker(include=[tracking], exclude=_opt(local))))
        err_file = _push_error_path(repo)
        last = err_file.read_text().strip() if err_file.exists() else None
        return RepoStatus(name, ahead, behind, _changed_paths(repo), last or None)
    finally:
        repo.close()


def _opt(sha: ObjectID | None) -> list[ObjectID]:
    return [sha] if sha is not None else []


# ---------------------------------------------------------------------------- keys


def generate_ssh_key(path: Path, comment: str) -> str:
    """Create an ed25519 key pair at `path` and `path`.pub once; return the public key line.

    Uses `ssh-keygen` (openssh-client, which SSH remotes need anyway). An existing key is
    never overwritten: a second call, or a racing process, gets the existing public key.
    The directory is made 0700 and the private key 0600.
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
            raise GitError(f"ssh-keygen failed: {_one_line(proc.stderr or proc.stdout)}")
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
        raise GitError(f"cannot read SSH key {key}: {_one_line(proc.stderr)}")
    return proc.stdout.strip()
