"""One upstream request and its answer, with every transport failure and non-2xx status sorted into our codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from pydantic import ValidationError

from activities.providers.errors import bad_response, status_error, transport_error
from domain.answers import AnswerBuilder
from schemas.jobs import JobResult

T = TypeVar("T")


async def exchange(
    http: httpx.AsyncClient,
    request: httpx.Request,
    where: str,
    *,
    stream: bool,
    read: Callable[[httpx.Response], Awaitable[T]],
) -> T:
    """Send `request` and `read` a 2xx answer (its body still unread when `stream`); the response is closed after.

    Raises:
        ApplicationError: From `errors.status_error` or `errors.transport_error` (a stream cut short mid-read
            included), or whatever `read` raises.
    """
    try:
        response = await http.send(request, stream=stream)
        try:
            if not response.is_success:
                await response.aread()
                raise status_error(where, response)
            return await read(response)
        finally:
            await response.aclose()
    except httpx.RequestError as err:
        raise transport_error(where, err) from err


def streamed_answer(where: str, builder: AnswerBuilder) -> JobResult:
    """The answer a finished stream folded into `builder`; a stream that assembled into none is a bad response."""
    try:
        answer = builder.result()
    except ValidationError as err:
        raise bad_response(where, f"stream assembled into no valid answer: {err}") from err
    if not answer.choices:
        raise bad_response(where, "stream held no answer")
    return answer
