"""Error mapping: a failure reads as what it is, never as something else (a constraint is not an outage)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from client.connect import TemporalUnavailable
from domain.errors import InvalidCursor, JobFinished, UnknownModel
from settings import Settings
from tests.support.common import SHIPPED_ROUTES


def raising(err: Exception) -> Callable[[], None]:
    def endpoint() -> None:
        raise err

    return endpoint


@pytest.fixture
async def app_http(sqlite_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(Settings(env="test", admin_api_key="k", database_url=sqlite_url, routes_file=SHIPPED_ROUTES))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://k") as http:
        yield app, http


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), 409, "conflict"),
        (OperationalError("SELECT 1", {}, Exception("connection refused")), 503, "database_unavailable"),
        # How SQLAlchemy wraps asyncpg's "the database system is starting up" and its kin.
        (DBAPIError("SELECT 1", {}, Exception("the database system is starting up")), 503, "database_unavailable"),
        (ProgrammingError("SELEC", {}, Exception("syntax error")), 500, "internal_error"),
        (TemporalUnavailable("Temporal at 127.0.0.1:1: connection refused"), 503, "temporal_unavailable"),
        (RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""), 503, "temporal_unavailable"),
        (RPCError("bad query", RPCStatusCode.INVALID_ARGUMENT, b""), 500, "internal_error"),
        (InvalidCursor(), 400, "invalid_cursor"),
        (UnknownModel("gpt-9", ["sim-1"]), 404, "unknown_model"),
        (JobFinished("job_1"), 409, "job_finished"),
    ],
)
async def test_each_failure_maps_to_its_own_status_and_code(
    app_http: tuple[FastAPI, httpx.AsyncClient], err: Exception, status: int, code: str
) -> None:
    app, http = app_http
    app.add_api_route("/v1/probe", raising(err))

    response = await http.get("/v1/probe")

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
