"""One error shape for every failure: `{"error": {"code", "message", "details"}}` (OpenAI's on its paths)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

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
        first = problems[0] if problems else {"loc": [], "message": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body")
        message = str(first["message"])
        return error_response(
            request, 422, "validation_error", f"{where}: {message}" if where else message, {"errors": problems}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(err.status_code, "http_error")
        return error_response(request, err.status_code, code, str(err.detail))

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, err: RPCError) -> JSONResponse:
        log.warning("temporal call failed: %s", err)
        return error_response(request, 503, "temporal_unavailable", "the workflow service is unavailable")

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, err: Exception) -> JSONResponse:
        log.warning("database call failed: %s", err)
        return error_response(request, 503, "database_unavailable", "the database is unavailable")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error")
