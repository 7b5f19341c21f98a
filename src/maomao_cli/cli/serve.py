"""`maomao serve`: the 2019 HTTP API and the typed v1 API over the same services."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from .state import CliState, use

if TYPE_CHECKING:
    import socket

    from ..config import Settings


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, "--host", help="Address to bind (default [serve] host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", "-p", min=0, max=65535, help="Port (default [serve] port, 8080)."
    ),
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        metavar="text|json",
        help="Log as plain text or one JSON object per line (default [worker] log_format).",
    ),
) -> None:
    """Serve the HTTP API (the 2019 routes and /v1/) until interrupted.

    Every request must send `Authorization: Bearer <token>`: [serve] token (or
    MAOMAO_SERVE_TOKEN), else a token made at the first start and kept in
    <statedir>/api-token. Any address other than loopback needs the token set. The Host
    header must name the address served (on loopback: localhost, 127.0.0.1 or [::1]) or
    a name in [serve] allowed_hosts.
    """
    state = use(ctx)
    from ..errors import BadInput
    from . import logformat

    services = state.services
    settings = services.settings.serve
    bind_host = host if host is not None else settings.host
    bind_port = port if port is not None else settings.port

    from ..api.guard import allowed_hosts, is_loopback

    if not is_loopback(bind_host) and not settings.token:
        raise BadInput(
            f"binding {bind_host} (not loopback) needs a token",
            hint="set [serve] token or MAOMAO_SERVE_TOKEN, or bind 127.0.0.1",
        )
    if settings.max_body < 1:
        raise BadInput("[serve] max_body must be at least 1 byte")
    fmt = logformat.log_format(log_format, services.settings.worker.log_format)
    logformat.setup(state.out, fmt, member=services.settings.member, names=("maomao", "uvicorn"))
    hosts = allowed_hosts(bind_host, settings.allowed_hosts)
    token = _token(state, services.settings)
    sock = _listen(bind_host, bind_port)

    import uvicorn  # the web stack loads only for `maomao serve`

    from ..api.app import create_app
    from ..api.guard import guard

    services.registry  # noqa: B018 - build the shared store before request threads race for it
    guarded = guard(create_app(services), max_body=settings.max_body, token=token, hosts=hosts)
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    actual_port = sock.getsockname()[1]
    state.out.err_console.print(
        f"maomao serve: http://{shown}:{actual_port} (bearer token required)",
        markup=False,
        highlight=False,
    )
    config = uvicorn.Config(
        guarded,
        log_level="warning",
        log_config=None,  # uvicorn's own lines go through the handlers set up above
        server_header=False,
        timeout_graceful_shutdown=5,  # event streams never end by themselves
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    import socket

    from ..errors import Unavailable

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _token(state: CliState, settings: Settings) -> str:
    """The configured token, else the one kept in the state dir (made at first start)."""
    if settings.serve.token:
        return settings.serve.token
    from ..api.token import kept_token

    kept = kept_token(settings.data.state_path)
    state.out.err_console.print(
        f"maomao serve: bearer token {'created in' if kept.created else 'read from'} "
        f"{kept.path} (send Authorization: Bearer $(cat {kept.path}))",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return kept.token
