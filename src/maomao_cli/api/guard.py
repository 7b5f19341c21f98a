"""ASGI middleware in front of every route: the Host header, the bearer token, the path
and the body size limit.

All are plain ASGI so they also cover unknown routes, /openapi.json and the event
stream, and answer before any route code runs.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from .. import validation
from ..errors import BadInput

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# What a browser on this machine sends for a loopback address: a page from anywhere else
# that rebinds its own name to 127.0.0.1 (DNS rebinding) still sends its own name.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` only ever reach this machine: no token needed."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _as_in_header(host: str) -> str:
    """A host as a Host header names it: lowercased, an IPv6 address in brackets."""
    bare = host.strip().strip("[]").lower()
    return f"[{bare}]" if ":" in bare else bare


def allowed_hosts(bind_host: str, names: Iterable[str] = ()) -> frozenset[str]:
    """The Host header names (any port) a server bound to `bind_host` answers to: that
    address, the configured names, and the loopback names when it listens on loopback
    (or on every address, which includes loopback)."""
    allowed = {_as_in_header(name) for name in names}
    if not _is_unspecified(bind_host):  # no client names 0.0.0.0 but by a trick
        allowed.add(_as_in_header(bind_host))
    if is_loopback(bind_host) or _is_unspecified(bind_host):
        allowed |= LOOPBACK_NAMES
    return frozenset(allowed)


_PORT = re.compile(r"(?::[0-9]*)?")


def host_of(header: str) -> str | None:
    """The host part of a Host header value, lowercased; None when it is malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = (value[: end + 1], value[end + 1 :]) if end > 0 else ("", "")
    else:
        host, sep, port = value.partition(":")
        rest = sep + port
    return host if host and _PORT.fullmatch(rest) else None


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    error: dict[str, str] = {"code": code, "message": message}
    if hint is not None:
        error["hint"] = hint
    body = json.dumps({"error": error}).encode()  # ASCII: every control character escaped
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class HostCheck:
    """Refuse (421) a request whose Host header is not a name this server answers to:
    a web page that rebinds its own DNS name to this address cannot drive the API."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = [bytes(v).decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"]
        if len(given) != 1:
            await send_error(send, 400, "bad-host", "a request needs exactly one Host header")
            return
        if host_of(given[0]) not in self.allowed:
            await send_error(
                send,
                421,
                "bad-host",
                f"this server does not answer to Host {given[0]!r}",
                hint="call it by the address it listens on, or add the name to "
                "[serve] allowed_hosts",
            )
            return
        await self.app(scope, receive, send)


class BearerToken:
    """Every request must carry `Authorization: Bearer <token>`, compared in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("the API needs a token")  # `maomao serve` always has one
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                given = bytes(value)
                break
        if not hmac.compare_digest(given, self.expected):
            await send_error(
                send,
                401,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
            return
        await self.app(scope, receive, send)


class PathCheck:
    """A request path that is not valid UTF-8 or holds a control character is bad input
    (400), whatever route it would reach: no such name can be registered anyway."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or str(scope.get("path", "")).encode()
            path = unquote_to_bytes(bytes(raw).split(b"?", 1)[0])
            try:
                validation.text(path.decode("utf-8", "surrogateescape"), "request path")
            except BadInput as exc:
                await send_error(send, 400, exc.code, exc.message)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over max_body bytes with 413, whether announced by
    Content-Length or streamed in chunks; the body is read fully before the route runs,
    so a refused request never reaches a service."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    await send_error(send, 400, "bad-request", "invalid Content-Length header")
                    return
                if announced > self.max_body:
                    await self._too_large(send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect (SSE uses it)

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await send_error(
            send,
            413,
            "too-large",
            f"request body is larger than {self.max_body} bytes (see [serve] max_body)",
        )


def guard(app: ASGIApp, *, max_body: int, token: str, hosts: frozenset[str]) -> ASGIApp:
    """The app as `maomao serve` exposes it: the Host header checked first, then the
    token (always: there is no way to serve without one), then the body limit."""
    return HostCheck(BearerToken(BodyLimit(app, max_body), token), hosts)
