"""Error translation: whatever dulwich, sockets, urllib3 or ssh raise becomes one GitError.

Each message is one line naming the operation and the credential-free URL, with a hint
where the user can do something about it.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from maomao_cli.errors import GitError
from maomao_cli.gitmodels import GitAuth

from .remotes import Remote

if TYPE_CHECKING:
    from dulwich.errors import GitProtocolError, HangupException

# A status code standing alone, not digits of a port, a count or a URL path.
_HTTP_STATUS_RE = re.compile(r"(?<![\w:=/.])(40[134])(?![\w.])")
_AUTH_HINT = (
    'check this host\'s [git.credentials."HOST"] username and password (sent over https only)'
)


def one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # ssh prints "Warning: Permanently added ..." before the real error.
    useful = [ln for ln in lines if not ln.lower().startswith("warning:")] or lines
    return useful[-1] if useful else text.strip()


@contextlib.contextmanager
def translated(op: str, remote: Remote, auth: GitAuth, timeout: float) -> Iterator[None]:
    """Turn whatever dulwich, sockets, urllib3 or ssh raise into one-line GitErrors."""
    # dulwich is heavy: imported when a transfer is under way, and so loaded already.
    from dulwich.client import HTTPUnauthorized
    from dulwich.errors import GitProtocolError, HangupException, NotGitRepository

    where = f"{op} {remote.shown}"
    try:
        yield
    except GitError:
        raise
    except HTTPUnauthorized:
        raise GitError(f"{where}: authentication failed", _AUTH_HINT) from None
    except NotGitRepository:
        raise GitError(f"{where}: no git repository at {remote.path}") from None
    except TimeoutError:
        raise GitError(f"{where}: timed out after {timeout:g}s") from None
    except ConnectionRefusedError:
        raise GitError(f"{where}: connection refused") from None
    except socket.gaierror:
        raise GitError(f"{where}: unknown host {remote.host}") from None
    except HangupException as exc:
        raise _hangup_error(op, remote, auth, exc) from None
    except GitProtocolError as exc:
        raise _protocol_error(op, remote, auth, exc) from None
    except OSError as exc:
        raise GitError(f"{where}: {_urllib3_reason(exc) or one_line(str(exc))}") from None
    except Exception as exc:
        reason = _urllib3_reason(exc)
        if reason is None:
            raise
        raise GitError(f"{where}: {reason}") from None


def _hangup_error(op: str, remote: Remote, auth: GitAuth, exc: HangupException) -> GitError:
    lines = exc.stderr_lines or []
    text = "\n".join(ln.decode("utf-8", "replace") for ln in lines) or str(exc)
    if remote.kind == "ssh":
        return _ssh_error(op, remote, auth, text)
    if _looks_missing(text):
        return GitError(f"{op} {remote.shown}: no git repository at {remote.path}")
    return GitError(f"{op} {remote.shown}: {one_line(text)}")


def _protocol_error(op: str, remote: Remote, auth: GitAuth, exc: GitProtocolError) -> GitError:
    where = f"{op} {remote.shown}"
    text = str(exc)
    if remote.kind == "ssh":
        return _ssh_error(op, remote, auth, text)
    # dulwich wraps urllib3's errors, whose text holds the port: "port=40173" is no 401.
    reason = _urllib3_reason(exc.__cause__) if exc.__cause__ is not None else None
    if reason is not None:
        return GitError(f"{where}: {reason}")
    statuses = set(_HTTP_STATUS_RE.findall(text))
    if "404" in statuses or _looks_missing(text):
        return GitError(f"{where}: no git repository at {remote.path}")
    if statuses & {"401", "403"}:
        return GitError(f"{where}: authentication failed", _AUTH_HINT)
    return GitError(f"{where}: {one_line(text)}")


def _host_key_hint(remote: Remote, auth: GitAuth) -> str:
    kh = auth.known_hosts or Path("~/.ssh/known_hosts")
    port = f"-p {remote.port} " if remote.port else ""
    return (
        f"check the host's key fingerprint, then trust it with "
        f"`ssh-keyscan {port}{remote.host} >> {kh}` (or set trust_new_hosts)"
    )


def _ssh_error(op: str, remote: Remote, auth: GitAuth, text: str) -> GitError:
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
    return GitError(f"{where}: {one_line(text)}")


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
