"""Which sinks a worker exports to: each sink's builder looks at the settings and the environment and returns
the sink when its endpoint is configured, None otherwise."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from functools import partial

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.exports.langfuse import LangfuseSink, langfuse_sink
from activities.exports.otlp_traces import otlp_trace_sink
from activities.exports.sink import Sink
from activities.exports.warehouse import warehouse_sink
from settings import Settings

log = logging.getLogger("kintsugi.exports")

SinkBuilder = Callable[[Settings, httpx.AsyncClient, Mapping[str, str]], Sink | None]
"""`(settings, http, environ) -> sink or None`; `http` is the exporters' client (`exporter_http`)."""

SINK_BUILDERS: tuple[SinkBuilder, ...] = (warehouse_sink,)
"""The sinks that need nothing but settings and HTTP; `build_sinks` adds those that read job traces back."""


def exporter_http() -> httpx.AsyncClient:
    """The sinks' HTTP client: without retries of its own (the export activity's retry policy is the only one)
    and not instrumented, so exporting never makes telemetry of its own."""
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=20), timeout=30)


def build_sinks(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    temporal: Client,
    sessions: async_sessionmaker[AsyncSession],
    environ: Mapping[str, str] = os.environ,
) -> list[Sink]:
    """The sinks configured in this process (at most one per `SinkName`): the warehouse, then Langfuse and the
    OTLP job traces, which read each finished job's history from `temporal` (and its costs from `sessions`)."""
    builders: tuple[SinkBuilder, ...] = (
        *SINK_BUILDERS,
        partial(langfuse_sink, temporal=temporal),
        partial(otlp_trace_sink, temporal=temporal, sessions=sessions),
    )
    sinks: list[Sink] = []
    for build in builders:
        try:
            sink = build(settings, http, environ)
        except ValueError as err:
            # A misconfigured exporter (a protocol we do not speak, a base URL without its keys) must not stop
            # the worker's jobs: its rows wait in the outbox until it is fixed.
            log.error("an export sink is misconfigured and left out: %s", err)
            continue
        if sink is not None:
            if any(s.name == sink.name for s in sinks):
                raise ValueError(f"two sinks are named {sink.name!r}")
            sinks.append(sink)
    return sinks


def close_sinks(sinks: list[Sink]) -> None:
    """Stop what a sink runs in the background (the Langfuse SDK's threads) when its worker stops."""
    for sink in sinks:
        if isinstance(sink, LangfuseSink):
            sink.close()
