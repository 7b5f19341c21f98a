"""The API's one error path: maomao's error types become HTTP statuses, and every error
is `{"error": {"code", "message", "hint"}}`, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BadInput, GitError, MaomaoError, NotFound, Unavailable
from .schemas import ErrorBody

log = logging.getLogger("maomao.api")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Bad input: nothing was written"),
        (401, "Missing or wrong bearer token"),
        (404, "Not found"),
        (413, "Body too large"),
        (422, "Malformed JSON or a wrong type: nothing was written"),
        (500, "Internal error"),
        (409, "Conflicts with the state on the server (e.g. a dataset already cloned)"),
        (502, "A git remote failed (unreachable, timed out, refused the credentials)"),
        (503, "etcd (or another service) is unavailable"),
    )
}


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


def error(status: int, code: str, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "hint": hint}}, status_code=status
    )


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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not-found", 405: "method-not-allowed"}
        return error(exc.status_code, codes.get(exc.status_code, "http"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error(500, "internal", "internal error; see the server log")
