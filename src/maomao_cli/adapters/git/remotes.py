"""Git remotes: which transport a URL names, and how it is shown without credentials.

Local paths and file://, git://, smart HTTP(S), ssh:// and scp-like user@host:path.
"""

from __future__ import annotations

import os
import re
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from maomao_cli.errors import GitError

from ...frozen import frozen


@frozen
class Remote:
    kind: Literal["local", "git", "http", "ssh"]
    url: str  # as given, credentials included: never shown
    shown: str  # credential-free, for messages and .git/config
    host: str | None = None
    port: int | None = None
    user: str | None = None
    path: str = ""


_SCP_RE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>.*)$")


def parse_url(url: str) -> Remote:
    if "://" in url:
        return _parse_scheme_url(url)
    m = _SCP_RE.match(url)
    # Like git: "host:path" is SSH only when no slash comes before the colon.
    if m is not None and not os.path.exists(url):
        return Remote("ssh", url, url, m["host"], None, m["user"], m["path"])
    return Remote("local", url, url, path=os.path.abspath(url))


def _parse_scheme_url(url: str) -> Remote:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    try:
        port = parts.port
    except ValueError:
        shown = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
        raise GitError(f"bad git URL {shown}: invalid port") from None
    if port is not None:
        netloc += f":{port}"
    if parts.username and scheme != "http" and scheme != "https":
        netloc = f"{parts.username}@{netloc}"
    shown = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    if scheme == "file":
        return Remote("local", url, shown, path=parts.path)
    if scheme == "git":
        return Remote("git", url, shown, parts.hostname, port, path=parts.path)
    if scheme in ("http", "https"):
        return Remote("http", url, shown, parts.hostname, port, parts.username, parts.path)
    if scheme in ("ssh", "git+ssh"):
        return Remote("ssh", url, shown, parts.hostname, port, parts.username, parts.path)
    raise GitError(
        f"unsupported git URL {shown}",
        "use a local path, file://, git://, http(s)://, ssh:// or user@host:path",
    )
