"""`GET /metrics`: the process's Prometheus metrics (`ops.metrics`), in the text format Prometheus scrapes."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Unauthenticated, like `/healthz`: Prometheus scrapes without a key, and no label holds a tenant's data
    (routes, deployments, status codes). A plain `def`: rendering runs in the thread pool, off the event loop."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
