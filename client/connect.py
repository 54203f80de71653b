"""How every Kintsugi process connects to Temporal: one place, one data converter."""

from __future__ import annotations

import os
import socket

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from settings import Settings


class TemporalUnavailable(Exception):
    """The Temporal server could not be reached."""


async def connect(settings: Settings, *, role: str | None = None) -> Client:
    """A client with the pydantic data converter, so schemas cross workflow boundaries as models.

    Args:
        role: Appended to the client's identity (`<pid>@<host> <role>`), which workers on it share and history
            records with each workflow task: `api` says a task ran in an API process.

    Raises:
        TemporalUnavailable: the server did not answer. temporalio's bridge reports a failed connection as a
            bare `RuntimeError` (it has no typed error for it); `Client.connect` is the only call inside the
            `try`, so that is the only thing a `RuntimeError` here can mean.
    """
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            identity=f"{os.getpid()}@{socket.gethostname()} {role}" if role else None,
        )
    except RuntimeError as err:
        raise TemporalUnavailable(f"Temporal at {settings.temporal_address}: {err}") from err
