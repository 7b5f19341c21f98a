"""Every use of dulwich's private names, in one place.

dulwich's public API has no hook for a connect timeout on git://, for sending https
credentials only once the server asked for them, for opening the source of a local clone,
or for switching an empty repository to SHA-256, so the transports reach into these. `USED` lists each name and `missing()` says which the installed dulwich lacks;
tests/unit/test_dulwich_internals.py fails on an upgrade that drops one, naming it and the
version, instead of a clone failing somewhere with an AttributeError.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import closing
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dulwich.client import (
        GitClient,
        LocalGitClient,
        TCPGitClient,
        TraditionalGitClient,
        Urllib3HttpGitClient,
    )
    from dulwich.protocol import Protocol
    from dulwich.repo import Repo

# (module, class, attribute). Instance attributes are checked on a constructed client.
USED: tuple[tuple[str, str, str], ...] = (
    ("dulwich.client", "TCPGitClient", "_connect"),
    ("dulwich.client", "SSHGitClient", "_connect"),
    ("dulwich.client", "TCPGitClient", "_host"),
    ("dulwich.client", "TCPGitClient", "_port"),
    ("dulwich.client", "TraditionalGitClient", "_remote_path_encoding"),
    ("dulwich.client", "GitClient", "_report_activity"),
    ("dulwich.client", "Urllib3HttpGitClient", "_http_request"),
    ("dulwich.client", "LocalGitClient", "_open_repo"),
    ("dulwich.repo", "Repo", "_change_object_format"),
)
# What dulwich passes to `_connect`; an override with other parameters would be broken.
CONNECT_PARAMETERS = ("self", "cmd", "path", "protocol_version")
# What dulwich passes to `_http_request`, likewise.
HTTP_REQUEST_PARAMETERS = ("self", "url", "headers", "data", "raise_for_status")

Connection = tuple["Protocol", Callable[[], bool], "IO[bytes] | None"]
HttpResponse = tuple[Any, Callable[[int], bytes]]  # urllib3's response and its reader


class ConnectHook:
    """Mixin for a TraditionalGitClient subclass: dulwich opens every connection through
    its private `_connect`; this hands that call to the subclass's `open_connection` and
    keeps the protocol, so `close_connections` can close what a failure left open (dulwich
    does not close it when the server fails before the first exchange)."""

    def open_connection(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None
    ) -> Connection:
        raise NotImplementedError

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> Connection:
        connection = self.open_connection(cmd, path, protocol_version)
        self.__dict__.setdefault("_maomao_opened", []).append(connection[0])
        return connection

    def close_connections(self) -> None:
        for proto in self.__dict__.pop("_maomao_opened", []):
            proto.close()  # a no-op on one dulwich closed already


def dulwich_connect(
    client: TraditionalGitClient,
    cls: type[TraditionalGitClient],
    cmd: bytes,
    path: str | bytes,
    protocol_version: int | None,
) -> Connection:
    """The `_connect` of dulwich's class `cls`, the one ConnectHook stands in front of."""
    connection: Connection = cls._connect(client, cmd, path, protocol_version)
    return connection


class HttpRequestHook:
    """Mixin for an Urllib3HttpGitClient subclass: dulwich makes every HTTP request through
    its private `_http_request`; this hands that call to the subclass's `send_request`,
    which may call dulwich's own with `http_request`."""

    def send_request(
        self, url: str, headers: dict[str, str] | None, data: Any, raise_for_status: bool
    ) -> HttpResponse:
        raise NotImplementedError

    def _http_request(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        data: Any = None,
        raise_for_status: bool = True,
    ) -> HttpResponse:
        return self.send_request(url, headers, data, raise_for_status)


def http_request(
    client: Urllib3HttpGitClient,
    url: str,
    headers: dict[str, str] | None,
    data: Any,
    raise_for_status: bool,
) -> HttpResponse:
    """dulwich's own request, the one HttpRequestHook stands in front of."""
    from dulwich.client import Urllib3HttpGitClient

    response: HttpResponse = Urllib3HttpGitClient._http_request(
        client, url, headers, data, raise_for_status
    )
    return response


def remote_path_encoding(client: TraditionalGitClient) -> str:
    encoding: str = client._remote_path_encoding
    return encoding


def report_activity(client: GitClient) -> Callable[[int, str], None] | None:
    callback: Callable[[int, str], None] | None = client._report_activity
    return callback


def tcp_address(client: TCPGitClient) -> tuple[str, int]:
    """The host and port a git:// client was made for (dulwich fills in the default port)."""
    return client._host, client._port


def open_local_repo(client: LocalGitClient, path: str | bytes) -> closing[Repo]:
    """The repository a local client fetches from, closed when the block ends."""
    return client._open_repo(path)


def change_object_format(repo: Repo, name: str) -> None:
    """Switch a just-initialised repository to the remote's hash (e.g. "sha256")."""
    repo._change_object_format(name)


def missing() -> list[str]:
    """The names in USED that the installed dulwich lacks (or has changed), as text."""
    import importlib

    from dulwich.client import TCPGitClient

    samples: dict[str, Any] = {
        "TCPGitClient": TCPGitClient("127.0.0.1", port=9418),  # connects only when used
    }
    samples["GitClient"] = samples["TraditionalGitClient"] = samples["TCPGitClient"]
    out: list[str] = []
    for module, cls_name, attr in USED:
        cls = getattr(importlib.import_module(module), cls_name, None)
        where = f"{module}.{cls_name}.{attr}"
        if cls is None:
            out.append(f"{module}.{cls_name}")
        elif not hasattr(cls, attr) and not hasattr(samples.get(cls_name), attr):
            out.append(where)
    from dulwich.client import SSHGitClient, Urllib3HttpGitClient

    for cls, attr, expected in (
        (TCPGitClient, "_connect", CONNECT_PARAMETERS),
        (SSHGitClient, "_connect", CONNECT_PARAMETERS),
        (Urllib3HttpGitClient, "_http_request", HTTP_REQUEST_PARAMETERS),
    ):
        method = getattr(cls, attr, None)
        if method is not None:
            params = tuple(inspect.signature(method).parameters)
            if params != expected:
                out.append(f"dulwich.client.{cls.__name__}.{attr}{params} (expected {expected})")
    return out
