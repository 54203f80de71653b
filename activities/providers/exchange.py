"""One upstream request and its answer, with every transport failure and non-2xx status sorted into our codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from activities.providers.errors import status_error, transport_error

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
