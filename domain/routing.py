"""Route lookups that the API does before starting a job (the worker plans the route itself)."""

from __future__ import annotations

from domain.errors import UnknownModel
from schemas.routes import RoutesConfig


def require_route(routes: RoutesConfig, model: str) -> None:
    """Raise `UnknownModel` (listing the known aliases) unless `model` names a route."""
    if model not in routes.routes:
        raise UnknownModel(model, sorted(routes.routes))
