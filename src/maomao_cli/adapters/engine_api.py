"""The Docker Engine API calls of a run, spoken on the engine's unix socket by hand.

docker-py costs every process that runs a container about 65 ms before its first request
(requests, urllib3, charset_normalizer, idna: docs/speed.md), a quarter of `maomao run`. A
run needs nine plain calls, so they are made here: the methods carry docker-py's names,
arguments and answers (`docker.APIClient`'s), and the runner uses this client or
docker-py's alike. `speaks(host)` says which hosts it serves: a unix socket with no TLS
asked for. Everything else (tcp:// with or without TLS, ssh://) and every pull (registry
logins, credential helpers) stays with docker-py.

One connection per request: connecting to a unix socket costs microseconds, and no
connection is ever shared between threads or reused after the engine closed it. Requests
go to the unversioned API, which is the engine's current version: what docker-py's
version negotiation would choose, without its round trip. HTTP/1.1 is written and read
here (`_Response`), as the etcd gateway's is (store/gateway_http.py): `http.client`
would cost another 9 ms of imports (email, ssl).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

UNIX = "unix://"


def speaks(host: str, environ: Mapping[str, str]) -> bool:
    """Whether this client serves `host` (else docker-py does)."""
    return host.startswith(UNIX) and not environ.get("DOCKER_TLS_VERIFY")


class EngineRefused(Exception):
    """The engine answered with an error status; `explanation` is its own message."""

    def __init__(self, status_code: int, explanation: str) -> None:
        super().__init__(f"{status_code}: {explanation}")
        self.status_code = status_code
        self.explanation = explanation


class EngineUnreachable(Exception):
    """No answer: no socket, refused, cut off, or nothing within the timeout. `reason` in
    a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EngineAPI:
    """The part of docker.APIClient a run uses. `timeout`: seconds for each request (None:
    wait as long as it takes, for a log stream)."""

    api_version = "engine"  # docker-py's attribute; this client needs no version

    def __init__(self, base_url: str, timeout: float | None) -> None:
        if not base_url.startswith(UNIX):
            raise ValueError(f"not a unix socket: {base_url}")
        self.base_url = base_url
        self._path = "/" + base_url[len(UNIX) :].lstrip("/")
        self.timeout = timeout

    # Calls -------------------------------------------------------------------

    def ping(self) -> bool:
        answer: bytes = self._call("GET", "/_ping", raw=True)
        return answer == b"OK"

    def inspect_image(self, image: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/images/{_part(image)}/json")
        return found

    def create_container(
        self,
        image: str,
        *,
        name: str | None = None,
        environment: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        user: str = "",
        host_config: Mapping[str, Any] | None = None,
        detach: bool = True,
    ) -> dict[str, Any]:
        del detach  # always: the runner reads the output from the logs
        created: dict[str, Any] = self._call(
            "POST",
            "/containers/create",
            params=None if name is None else {"name": name},
            body=container_config(image, environment, labels, user, host_config),
        )
        return created

    def start(self, container: str) -> None:
        self._call("POST", f"/containers/{_part(container)}/start")

    def stop(self, container: str, timeout: int = 10) -> None:
        # The engine answers once the grace period is over: the request waits that long too.
        waited = None if self.timeout is None else self.timeout + timeout
        path = f"/containers/{_part(container)}/stop"
        self._exchange("POST", path, {"t": timeout}, None, waited)

    def wait(self, container: str) -> dict[str, Any]:
        waited: dict[str, Any] = self._call("POST", f"/containers/{_part(container)}/wait")
        return waited

    def inspect_container(self, container: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/containers/{_part(container)}/json")
        return found

    def remove_container(self, container: str, force: bool = False) -> None:
        params = {"v": 0, "link": 0, "force": int(force)}
        self._call("DELETE", f"/containers/{_part(container)}", params)

    def containers(
        self, all: bool = False, filters: Mapping[str, list[str]] | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"all": int(all)}
        if filters:
            params["filters"] = json.dumps(dict(filters))
        found: list[dict[str, Any]] = self._call("GET", "/containers/json", params)
        return found

    def logs(
        self,
        container: str,
        stdout: bool = True,
        stderr: bool = True,
        stream: bool = False,
        follow: bool = False,
        tail: int | str = "all",
    ) -> Any:
        """bytes of the whole output (or its last `tail` lines); with stream=True an
        iterator of the output's pieces as they come (follow: until the container ends)."""
        params = {
            "stdout": int(stdout),
            "stderr": int(stderr),
            "follow": int(follow and stream),
            "timestamps": 0,
            "tail": tail,
        }
        path = f"/containers/{_part(container)}/logs"
        if stream:
            return self._frames(self._open("GET", path, params, None, self.timeout))
        return b"".join(self._frames(self._open("GET", path, params, None, self.timeout)))

    def close(self) -> None:
        """Nothing is kept open between calls."""

    # HTTP --------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: object = None,
        raw: bool = False,
    ) -> Any:
        data = self._exchange(method, path, params, body, self.timeout)
        if raw:
            return data
        return json.loads(data) if data else None

    def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: object,
        timeout: float | None,
    ) -> bytes:
        response = self._open(method, path, params, body, timeout)
        try:
            return response.read()
        finally:
            response.close()

    def _open(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: object,
        timeout: float | None,
    ) -> _Response:
        """The response to one request on a connection of its own, its status checked;
        the connection closes with the response."""
        url = path if not params else f"{path}?{urlencode(params)}"
        head = [f"{method} {url} HTTP/1.1", "Host: docker", "Connection: close"]
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            head.append("Content-Type: application/json")
        if payload or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(payload)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self._path)
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            response = _Response(sock)
        except (OSError, ValueError) as exc:
            sock.close()
            raise EngineUnreachable(_reason(exc, timeout)) from None
        if response.status >= 400:
            try:
                text = response.read()
            finally:
                response.close()
            raise EngineRefused(response.status, _explanation(text, response.reason))
        return response

    def _frames(self, response: _Response) -> Iterator[bytes]:
        """The payloads of a multiplexed output stream (a container without a TTY: each
        piece of stdout or stderr after an 8-byte header holding its length)."""
        try:
            while True:
                header = response.read(8)
                if len(header) < 8:
                    return
                (length,) = struct.unpack(">xxxxL", header)
                if not length:
                    continue
                data = response.read(length)
                if not data:
                    return
                yield data
        finally:
            response.close()


def container_config(
    image: str,
    environment: Mapping[str, str] | None,
    labels: Mapping[str, str] | None,
    user: str,
    host_config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The create request's body, as docker-py's create_container_config builds it for a
    detached container (its fields left at null omitted)."""
    return {
        "User": user,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Env": [f"{key}={value}" for key, value in (environment or {}).items()],
        "Image": image,
        "NetworkDisabled": False,
        "HostConfig": dict(host_config or {}),
        "Labels": dict(labels or {}),
    }


def _part(name: str) -> str:
    """A name or id inside a path, as docker-py quotes it."""
    return quote(name, safe="/:")


class _Response:
    """An HTTP/1.1 answer on its own connection: the status and headers read at once,
    the body as asked (all of it, or up to n bytes at a time, as it comes: a log stream's
    frames). A body that breaks off raises EngineUnreachable; `read(n)` gives less than n
    only at its end."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        status_line = self._file.readline(65536)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
        self.status = int(parts[1])
        self.reason = parts[2].strip().decode("latin-1") if len(parts) > 2 else ""
        headers: dict[bytes, bytes] = {}
        while (line := self._file.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self._chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
        length = headers.get(b"content-length")
        # Left of the body (of this chunk, when chunked); None: until the engine closes.
        self._left: int | None = 0 if self._chunked else None if length is None else int(length)
        self._done = (self._left == 0 and not self._chunked) or self.status in (204, 304)

    def read(self, amount: int | None = None) -> bytes:
        try:
            return self._read(amount)
        except (OSError, ValueError) as exc:
            raise EngineUnreachable(_reason(exc, None)) from None

    def _read(self, amount: int | None) -> bytes:
        pieces: list[bytes] = []
        wanted = amount  # None: all of it
        while not self._done and (wanted is None or wanted > 0):
            if self._chunked and self._left == 0 and not self._next_chunk():
                break
            if self._left is None:  # no length given: the body ends where the engine closes
                piece = self._file.read() if wanted is None else self._file.read(wanted)
                self._done = wanted is None or len(piece) < wanted
            else:
                take = self._left if wanted is None else min(wanted, self._left)
                piece = self._file.read(take)
                if len(piece) < take:
                    raise ValueError("the engine's answer broke off")
                self._left -= take
                if self._left == 0 and not self._chunked:
                    self._done = True
                elif self._left == 0:
                    self._file.readline(1024)  # the CRLF after a chunk
            pieces.append(piece)
            if wanted is not None:
                wanted -= len(piece)
        return b"".join(pieces)

    def _next_chunk(self) -> bool:
        """Start the next chunk; False after the last (its size 0)."""
        size = self._file.readline(1024).split(b";")[0].strip()
        try:
            self._left = int(size, 16)
        except ValueError:
            raise ValueError(f"the engine's answer broke off (at {size[:20]!r})") from None
        if self._left == 0:
            while self._file.readline(65536) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self._done = True
        return not self._done

    def close(self) -> None:
        self._file.close()
        self._sock.close()


def _explanation(text: bytes, reason: str) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        return str(answer["message"])
    return text.decode("utf-8", errors="replace").strip() or reason


def _reason(exc: BaseException, timeout: float | None) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such socket"
    if isinstance(exc, TimeoutError):
        return "no answer in time" if timeout is None else f"no answer within {timeout:g}s"
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
