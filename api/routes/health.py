"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SessionDep, get_temporal

router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, session: SessionDep) -> JSONResponse:
    """Ready when the database and Temporal answer and the API's own worker (once connected) runs; 503 names
    whichever does not."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(session.execute(text("SELECT 1")), READY_TIMEOUT_S)
        checks["database"] = "ok"
    except Exception as err:  # any failure means not ready; the reason is reported, not raised
        checks["database"] = f"error: {type(err).__name__}"
    try:
        temporal = await asyncio.wait_for(get_temporal(request), READY_TIMEOUT_S)
        await asyncio.wait_for(temporal.service_client.check_health(), READY_TIMEOUT_S)
        checks["temporal"] = "ok"
    except Exception as err:
        checks["temporal"] = f"error: {type(err).__name__}"
    worker = request.app.state.api_worker  # the API's own worker, once Temporal is connected
    if worker is not None:
        checks["worker"] = "ok" if not worker.done() else "error: stopped"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)
