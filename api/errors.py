"""One error shape for every failure: `{"error": {"code", "message", "details"}}` (OpenAI's on its paths)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from client.connect import TemporalUnavailable
from domain.errors import Conflict, DomainError, InvalidRequest, NotFound
from schemas.validation import describe

log = logging.getLogger("kintsugi.api")

OPENAI_PATHS = ("/v1/chat/", "/v1/models")
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


_DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = ((NotFound, 404), (InvalidRequest, 400), (Conflict, 409))
"""The HTTP status of each family of domain errors; the error's own `code` tells them apart."""


class ApiError(Exception):
    """Raised by routes and dependencies; becomes a JSON error response with `status` and `code`."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def error_body(
    path: str, status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Our error shape, or OpenAI's on the OpenAI-compatible paths so its SDKs raise typed errors."""
    if path.startswith(OPENAI_PATHS):
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    request: Request, status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, code, message, details), status_code=status)


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
        return error_response(request, err.status, err.code, err.message, err.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = _validation_details(err)
        if any(p["type"] == "json_invalid" for p in problems):
            return error_response(request, 400, "malformed_json", "request body is not valid JSON")
        message = describe(err.errors()[0], skip={"body"}) if problems else "invalid request"
        return error_response(request, 422, "validation_error", message, {"errors": problems})

    @app.exception_handler(DomainError)
    async def _domain(request: Request, err: DomainError) -> JSONResponse:
        status = next(status for family, status in _DOMAIN_STATUS if isinstance(err, family))
        return error_response(request, status, err.code, err.message, err.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(err.status_code, "http_error")
        return error_response(request, err.status_code, code, str(err.detail))

    @app.exception_handler(RPCError)
    @app.exception_handler(TemporalUnavailable)
    async def _temporal(request: Request, err: Exception) -> JSONResponse:
        log.warning("temporal call failed: %s", err)
        return error_response(request, 503, "temporal_unavailable", "the workflow service is unavailable")

    # Connection-level failures only: the database is down or dropped us. Other DBAPI errors are bugs (500).
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database(request: Request, err: Exception) -> JSONResponse:
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
