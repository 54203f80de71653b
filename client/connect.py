"""How every Kintsugi process connects to Temporal: one place, one data converter."""

from __future__ import annotations

import dataclasses
import os
import socket

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from client.codec import EncryptionCodec
from ops.telemetry import temporal_interceptors
from settings import Settings


class TemporalUnavailable(Exception):
    """The Temporal server could not be reached."""


async def connect(settings: Settings, *, role: str | None = None, runtime: Runtime | None = None) -> Client:
    """A client with the pydantic data converter, so schemas cross workflow boundaries as models.

    Args:
        role: Appended to the client's identity (`<pid>@<host> <role>`), which workers on it share and history
            records with each workflow task: `api` says a task ran in an API process.
        runtime: The SDK runtime of the client and its workers; `kintsugi worker` passes the one whose metrics
            it serves (`ops.temporal_metrics`). None: the default runtime, which keeps no metrics.

    Raises:
        TemporalUnavailable: the server did not answer. temporalio's bridge reports a failed connection as a
            bare `RuntimeError` (it has no typed error for it); `Client.connect` is the only call inside the
            `try`, so that is the only thing a `RuntimeError` here can mean.
    """
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(settings),
            identity=f"{os.getpid()}@{socket.gethostname()} {role}" if role else None,
            # Tracing when OTEL_* configures it (none otherwise); workers on this client inherit it.
            interceptors=temporal_interceptors(),
            runtime=runtime,
        )
    except RuntimeError as err:
        raise TemporalUnavailable(f"Temporal at {settings.temporal_address}: {err}") from err


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter, with the payload codec when `KINTSUGI_CODEC_KEY` is set: every process that
    talks to Temporal must agree on both, or one cannot read what another wrote."""
    if not settings.codec_key:
        return pydantic_data_converter
    codec = EncryptionCodec.from_keys(settings.codec_key, settings.codec_previous_keys)
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
