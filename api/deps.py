"""Dependencies as `Annotated` aliases; everything comes from `app.state`, set by the lifespan.

Each is `async`, even one that awaits nothing: FastAPI runs a sync dependency in a thread pool, a thread hop
per request (measured: a third of dependency solving on the hot path)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.auth import Principal, authenticate, bearer_token
from api.stream_hub import StreamHub
from api.temporal import connect_temporal
from schemas.routes import RoutesConfig
from schemas.tenants import Role
from settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_hub(request: Request) -> StreamHub:
    return request.app.state.stream_hub  # type: ignore[no-any-return]


async def get_routes(request: Request) -> RoutesConfig:
    return request.app.state.routes  # type: ignore[no-any-return]


async def get_temporal(request: Request) -> Client:
    """The app's Temporal client (`api.temporal.connect_temporal`); `TemporalUnavailable` (a 503) while the server
    cannot be reached."""
    return await connect_temporal(request.app.state)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
RoutesDep = Annotated[RoutesConfig, Depends(get_routes)]
HubDep = Annotated[StreamHub, Depends(get_hub)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TenantQuery = Annotated[str | None, Query(min_length=1, max_length=64)]
"""`?tenant_id=`: the tenant a request names (checked by `api.auth.tenant_in_scope`); omitted, the caller's own."""


async def get_principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    settings: Settings = request.app.state.settings
    return await authenticate(request.app.state.sessions, bearer_token(authorization), admin_key=settings.admin_api_key)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _role(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        principal.require(role)
        return principal

    return check


ViewerDep = Annotated[Principal, Depends(_role("viewer"))]
AppDep = Annotated[Principal, Depends(_role("app"))]
AdminDep = Annotated[Principal, Depends(_role("admin"))]
