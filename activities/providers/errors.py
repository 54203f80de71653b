"""Upstream failures as `ApplicationError`s whose `type` tells Temporal and the workflow what to do next.

Retryable errors are retried by the activity's `RetryPolicy`; non-retryable ones stop at once, and the
workflow reads `type` to decide between failing the job (`REQUEST_ERRORS`) and rerouting.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from schemas.errors import (
    BAD_REQUEST,
    CONTEXT_LENGTH_EXCEEDED,
    MODEL_NOT_FOUND,
    RATE_LIMITED,
    UPSTREAM_AUTH,
    UPSTREAM_BAD_RESPONSE,
    UPSTREAM_ERROR,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
)

MAX_RETRY_AFTER = timedelta(seconds=300)
"""A longer `Retry-After` would hold an activity slot for minutes; the RetryPolicy takes over past this."""
_EXCERPT_CHARS = 200
_CONTEXT_LENGTH_HINTS = ("context_length_exceeded", "context length", "maximum context", "prompt is too long")


def transport_error(where: str, err: httpx.RequestError) -> ApplicationError:
    """Classify a failure to get a response at all (timeout, refused connection, dropped stream)."""
    detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if isinstance(err, httpx.TimeoutException):
        return ApplicationError(f"{where}: timed out ({detail})", type=UPSTREAM_TIMEOUT)
    if isinstance(err, httpx.TransportError):
        return ApplicationError(f"{where}: unreachable ({detail})", type=UPSTREAM_UNREACHABLE)
    # DecodingError, TooManyRedirects: the upstream answered, but not with anything usable.
    return bad_response(where, detail)


def bad_response(where: str, detail: str) -> ApplicationError:
    """A 2xx answer we cannot read; often a proxy or a half-written body, so worth another attempt."""
    return ApplicationError(f"{where}: malformed response: {detail[:_EXCERPT_CHARS]}", type=UPSTREAM_BAD_RESPONSE)


def status_error(where: str, response: httpx.Response) -> ApplicationError:
    """Classify a non-2xx answer. The body must have been read (`await response.aread()` when streaming)."""
    status = response.status_code
    error_type, code, message = _error_fields(response)
    text = f"{where}: HTTP {status}: {message[:_EXCERPT_CHARS]}"
    if status == 429:
        delay = retry_after(response.headers)
        return ApplicationError(text, type=RATE_LIMITED, next_retry_delay=delay)
    if status >= 500 or status == 408:
        return ApplicationError(text, type=UPSTREAM_ERROR)
    if status in (401, 403):
        return ApplicationError(text, type=UPSTREAM_AUTH, non_retryable=True)
    if status == 404:
        return ApplicationError(text, type=MODEL_NOT_FOUND, non_retryable=True)
    if status == 400 and _says_context_length(error_type, code, message):
        return ApplicationError(text, type=CONTEXT_LENGTH_EXCEEDED, non_retryable=True)
    if 400 <= status < 500:
        return ApplicationError(text, type=BAD_REQUEST, non_retryable=True)
    # 1xx/3xx: redirects are not followed, so the base URL points somewhere odd.
    return ApplicationError(text, type=UPSTREAM_BAD_RESPONSE)


def retry_after(headers: httpx.Headers) -> timedelta | None:
    """The delay a 429 asks for: `retry-after-ms` (OpenAI), else `Retry-After` (seconds or HTTP date)."""
    delay: timedelta | None = None
    if (ms := _as_float(headers.get("retry-after-ms"))) is not None:
        delay = timedelta(milliseconds=ms)
    elif (value := headers.get("retry-after")) is not None:
        if (seconds := _as_float(value)) is not None:
            delay = timedelta(seconds=seconds)
        else:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            delay = when - datetime.now(UTC)
    if delay is None or delay <= timedelta(0):
        return None
    return min(delay, MAX_RETRY_AFTER)


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _error_fields(response: httpx.Response) -> tuple[str, str, str]:
    """(type, code, message) from OpenAI's, Anthropic's or FastAPI's error body; raw text when not JSON."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "", "", response.text.strip() or response.reason_phrase
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or json.dumps(error)
        return str(error.get("type") or ""), str(error.get("code") or ""), str(message)
    return "", "", str(error)


def _says_context_length(error_type: str, code: str, message: str) -> bool:
    haystack = f"{error_type} {code} {message}".lower()
    return any(hint in haystack for hint in _CONTEXT_LENGTH_HINTS)
