"""`create_app()`: the FastAPI application, with its connections opened and closed by the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from api.body_limit import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.metrics_middleware import MetricsMiddleware
from api.routes import admin, chat, costs, embeddings, health, jobs, streams, traces
from api.routes import audit as audit_routes
from api.routes import codec as codec_routes
from api.routes import events as event_routes
from api.routes import flags as flag_routes
from api.routes import metrics as metrics_routes
from api.routes import policies as policy_routes
from api.routes import reports as report_routes
from api.stream_hub import StreamHub
from api.ui.routes import install_ui
from ops.telemetry import instrument_app, start_tracing
from settings import Settings
from store.engine import create_engine, session_factory
from store.flag_cache import FlagCache, environment_flag_defaults
from store.policy_cache import PolicyCache
from store.rate_limits import build_rate_limiter


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    routes = settings.routes  # a malformed routes file stops start-up here, naming the bad entry

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.effective_database_url)
        app.state.settings = settings
        app.state.routes = routes
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.flags = FlagCache(
            app.state.sessions, defaults=environment_flag_defaults(), ttl_s=settings.flag_cache_ttl_s
        )
        app.state.policies = PolicyCache(app.state.sessions, ttl_s=settings.flag_cache_ttl_s)
        app.state.rate_limiter = build_rate_limiter(settings, app.state.sessions)
        # Connected on first use (`api.temporal.connect_temporal`): the API starts, and /readyz reports,
        # while Temporal is still coming up.
        app.state.temporal = None
        app.state.temporal_lock = asyncio.Lock()
        app.state.api_worker = None
        app.state.stream_hub = StreamHub()
        async with contextlib.AsyncExitStack() as lifetime:
            # Closed last to first: the API's worker (its jobs end gracefully), then the database it writes to.
            lifetime.push_async_callback(engine.dispose)
            lifetime.push_async_callback(app.state.rate_limiter.aclose)
            app.state.lifetime = lifetime
            yield

    app = FastAPI(
        title="Kintsugi",
        summary="Durable, self-healing LLM jobs on Temporal",
        version="0.1.0",
        lifespan=lifespan,
    )
    # The relay streams a whole answer as one body; it is authenticated by its token, not size-limited.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, exempt_prefix="/internal/relay/")
    app.add_middleware(MetricsMiddleware)  # outermost: a body refused above is counted too
    app.include_router(metrics_routes.router)
    # Tracing when OTEL_* configures it (nothing at all otherwise); the process's worker shares the provider.
    instrument_app(app, start_tracing("kintsugi-api"))
    install_error_handlers(app)
    for module in (health, jobs, traces, streams, chat, embeddings, admin, costs):
        app.include_router(module.router)
    install_ui(app)  # the web UI: its pages, static files, and its own refusals (pages, not JSON)
    app.include_router(flag_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(policy_routes.router)
    app.include_router(report_routes.router)
    app.include_router(event_routes.router)
    app.include_router(codec_routes.router)  # the Temporal codec server (`/codec/*`), with its own CORS
    return app
