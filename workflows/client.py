"""How every Kintsugi process connects to Temporal: one place, one data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from settings import Settings


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """A client with the pydantic data converter, so schemas cross workflow boundaries as models."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        lazy=lazy,
    )
