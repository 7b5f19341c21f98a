"""The API's one error path: maomao's error types become HTTP statuses, and every error
is `{"error": {"code", "message", "hint"}}`, never a stack trace."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BadInput, GitError, MaomaoError, NotFound, Unavailable
from .responses import SafeJSONResponse
from .schemas import ErrorBody

log = logging.getLogger("maomao.api")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Bad input: nothing was written"),
        (401, "Missing or wrong bearer token"),
        (404, "Not found"),
        (413, "Body too large"),
        (421, "The Host header is not a name this server answers to"),
        (422, "Malformed JSON or a wrong type: nothing was written"),
        (500, "Internal error"),
        (409, "Conflicts with the state on the server (e.g. a dataset already cloned)"),
        (502, "A git remote failed (unreachable, timed out, refused the credentials)"),
        (503, "etcd (or another service) is unavailable, or too many event streams are open"),
    )
}
# Only the routes that start runs can be this busy.
BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "[worker] max_parallel runs are running; see Retry-After",
    }
}


class Refused(Exception):
    """A request the server cannot take now (too many runs, too many streams): its status,
    and the seconds after which to try again."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def status_for(exc: MaomaoError) -> int:
    """The one mapping from maomao's error types to HTTP statuses."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, BadInput):
        return 400
    if isinstance(exc, Unavailable):
        return 503
    if isinstance(exc, GitError):
        return 502
    return 500


def error(
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return SafeJSONResponse(
        {"error": {"code": code, "message": message, "hint": hint}},
        status_code=status,
        headers=headers,
    )


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path, for the Allow header of a 405. Read
    from the OpenAPI document, which lists every route: the router itself only knows the
    first route that matched the path."""
    path = request.url.path
    methods = {"GET", "HEAD"} if path == request.app.openapi_url else set()
    for template, operations in request.app.openapi()["paths"].items():
        if _path_pattern(template).fullmatch(path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


@functools.cache
def _path_pattern(template: str) -> re.Pattern[str]:
    """/v1/tools/{name} as a pattern: each parameter one path segment."""
    parts = re.split(r"\{[^}]+\}", template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    """Malformed JSON is 400 `bad-json`; a wrong shape or type is 422 naming each field."""
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return 400, "bad-json", "request body is not valid JSON"
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return 422, "invalid-request", "; ".join(problems) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MaomaoError)
    async def maomao_error(request: Request, exc: MaomaoError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return error(status, exc.code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = describe_validation(exc)
        return error(status, code, message)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return error(
            exc.status, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not-found", 405: "method-not-allowed"}
        headers = {"Allow": allowed_methods(request)} if exc.status_code == 405 else None
        return error(
            exc.status_code, codes.get(exc.status_code, "http"), str(exc.detail), headers=headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error(500, "internal", "internal error; see the server log")
