"""One error shape for every failure: `{"error": {"code", "message", "details"}}` (OpenAI's on its paths)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from client.connect import TemporalUnavailable
from domain.errors import Conflict, DomainError, InvalidRequest, NotFound, TooLarge
from schemas.validation import describe

log = logging.getLogger("kintsugi.api")

KINTSUGI_RESOURCES = frozenset(
    {
        "jobs",
        "tenants",
        "keys",
        "traces",
        "policies",
        "flags",
        "costs",
        "events",
        "audit",
        "agents",
        "runbooks",
        "runbook-runs",
        "rules",
        "schedules",
        "providers",
        "metrics",
        "errors",
    }
)
"""The first segments under `/v1/` that are Kintsugi's own resources; every other `/v1/` path is OpenAI's."""
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


_DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (InvalidRequest, 400),
    (Conflict, 409),
    (TooLarge, 413),
)
"""The HTTP status of each family of domain errors; the error's own `code` tells them apart."""


_TEMPORAL_DOWN = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
)
"""RPC statuses that mean the server cannot answer now, rather than that it refused what we asked."""


def _connection_lost(err: DBAPIError) -> bool:
    """Whether a database error means the server is down or dropped us. SQLAlchemy wraps many asyncpg
    connection failures (starting up, shutting down, too many connections) as a plain `DBAPIError`."""
    return isinstance(err, OperationalError | InterfaceError) or type(err) is DBAPIError or err.connection_invalidated


class ApiError(Exception):
    """Raised by routes and dependencies; becomes a JSON error response with `status` and `code`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = dict(headers or {})
        """Sent with the error (`Retry-After` and `X-RateLimit-*` on a 429)."""


def speaks_openai(path: str) -> bool:
    """Whether `path` answers in OpenAI's error shape: every `/v1/` path but Kintsugi's own resources.

    An OpenAI SDK may call any of OpenAI's paths, served here or not (`/v1/responses`, `/v1/files`...); its
    errors, 404s included, must parse as OpenAI's so the SDK raises its typed exception, not a parse error.
    """
    if path != "/v1" and not path.startswith("/v1/"):
        return False
    return path.removeprefix("/v1").strip("/").split("/", 1)[0] not in KINTSUGI_RESOURCES


def error_body(
    path: str, status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Our error shape, or OpenAI's on the OpenAI-compatible paths so its SDKs raise typed errors."""
    if speaks_openai(path):
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        return {"error": {"message": message, "type": kind, "param": _param(details), "code": code}}
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _param(details: dict[str, Any] | None) -> str | None:
    """OpenAI's `param`: where the first validation error is (`messages.0.content`), if there is one."""
    problems = (details or {}).get("errors")
    if not problems or not isinstance(problems, list) or not isinstance(problems[0], dict):
        return None
    loc = [str(part) for part in problems[0].get("loc", ()) if part != "body"]
    return ".".join(loc) or None


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(request.url.path, status, code, message, details), status_code=status, headers=headers
    )


def _validation_details(err: RequestValidationError) -> list[dict[str, Any]]:
    # The raw errors may hold exceptions in `ctx`; keep what a caller can act on.
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "message": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in err.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(request, err.status, err.code, err.message, err.details, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = _validation_details(err)
        if any(p["type"] == "json_invalid" for p in problems):
            return error_response(request, 400, "malformed_json", "request body is not valid JSON")
        message = describe(err.errors()[0], skip={"body"}) if problems else "invalid request"
        return error_response(request, 422, "validation_error", message, {"errors": problems})

    @app.exception_handler(DomainError)
    async def _domain(request: Request, err: DomainError) -> JSONResponse:
        # A domain error outside the three families is a bug of ours, still answered in our shape.
        status = next((status for family, status in _DOMAIN_STATUS if isinstance(err, family)), 500)
        return error_response(request, status, err.code, err.message, err.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(err.status_code, "http_error")
        message = str(err.detail)
        if err.status_code in (404, 405) and speaks_openai(request.url.path):
            # A path or method Kintsugi does not serve (`/v1/responses`): say which, as OpenAI does.
            message = f"{message}: {request.method} {request.url.path} is not served by this gateway"
        return error_response(request, err.status_code, code, message)

    @app.exception_handler(RPCError)
    @app.exception_handler(TemporalUnavailable)
    async def _temporal(request: Request, err: Exception) -> JSONResponse:
        if isinstance(err, RPCError) and err.status not in _TEMPORAL_DOWN:
            return await _unexpected(request, err)  # a call of ours the server refused: a bug, not an outage
        log.warning("temporal call failed: %s", err)
        return error_response(request, 503, "temporal_unavailable", "the workflow service is unavailable")

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, err: DBAPIError) -> JSONResponse:
        if not _connection_lost(err):
            return await _unexpected(request, err)  # bad SQL or data of ours: a bug, not an outage
        log.warning("database call failed: %s", err)
        return error_response(request, 503, "database_unavailable", "the database is unavailable")

    @app.exception_handler(IntegrityError)
    async def _constraint(request: Request, err: IntegrityError) -> JSONResponse:
        log.info("constraint violated on %s %s: %s", request.method, request.url.path, err.orig)
        return error_response(request, 409, "conflict", "the request conflicts with existing data")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error")
