"""Which deployments of a route can serve a request: the API checks it before starting a job, and the worker's
preflight plans the route with it."""

from __future__ import annotations

from collections.abc import Sequence

from domain.capabilities import unsupported
from domain.errors import ModelTypeMismatch, UnknownModel, UnsupportedParameter
from domain.pricing import resolve_price
from schemas.calls import PlannedDeployment
from schemas.jobs import JobKind, JobParams
from schemas.messages import ChatMessage
from schemas.routes import CallMode, CallSetting, DeploymentConfig, RoutesConfig


def require_route(
    routes: RoutesConfig,
    model: str,
    *,
    kind: JobKind | None = None,
    params: JobParams | None = None,
    messages: Sequence[ChatMessage] = (),
) -> None:
    """Raise unless `model` names a route that can serve the request.

    Args:
        kind: What the request asks for; None accepts a route of either type.
        params, messages: A chat request's parameters and messages: some deployment of the route must be able
            to honour every one of them.

    Raises:
        UnknownModel: No route of that name (the known aliases listed).
        ModelTypeMismatch: The route serves the other kind of request.
        UnsupportedParameter: No deployment of the route can honour a field; the first refused is named.
    """
    if kind is None:
        if model not in routes.routes:
            raise UnknownModel(model, sorted(routes.routes))
        return
    serving(routes, model, kind=kind, params=params or JobParams(), messages=messages)


def serving(
    routes: RoutesConfig, model: str, *, kind: JobKind, params: JobParams, messages: Sequence[ChatMessage]
) -> list[DeploymentConfig]:
    """The deployments of route `model` that can serve the request, in route order (raises as `require_route`)."""
    deployments = routes.routes.get(model)
    if deployments is None:
        raise UnknownModel(model, sorted(routes.routes))
    serves = deployments[0].type  # one type per route (`RoutesConfig` checks it)
    if serves != kind:
        raise ModelTypeMismatch(model, serves=serves, asked=kind)
    if kind != "chat":
        return list(deployments)
    usable, refused = [], {}
    for deployment in deployments:
        fields = unsupported(routes.providers[deployment.provider].kind, params, messages)
        if fields:
            refused[f"{deployment.provider}/{deployment.model}"] = fields
        else:
            usable.append(deployment)
    if not usable:
        raise UnsupportedParameter(model, refused)
    return usable


def call_mode(call: CallSetting, timeout_s: float, *, local_call_max_s: float, synchronous: bool) -> CallMode:
    """How a deployment's calls run: as configured, or for `auto`, a local activity when someone waits for the
    answer and the call cannot last longer than `local_call_max_s` (a long local call costs a workflow-task
    heartbeat every ~8 s); otherwise an activity, which the shared workers run and a query can follow."""
    if call != "auto":
        return call
    return "local" if synchronous and timeout_s <= local_call_max_s else "activity"


def plan_route(
    routes: RoutesConfig,
    model: str,
    *,
    kind: JobKind,
    params: JobParams,
    messages: Sequence[ChatMessage],
    local_call_max_s: float,
    synchronous: bool,
) -> list[PlannedDeployment]:
    """The route plan: the deployments of `model` that can serve the request (raises as `require_route`), in
    order, each with its region, its resolved price and how its calls run."""
    plan = []
    for deployment in serving(routes, model, kind=kind, params=params, messages=messages):
        provider = routes.providers[deployment.provider]
        plan.append(
            PlannedDeployment(
                provider=deployment.provider,
                model=deployment.model,
                region=provider.region,
                price=resolve_price(deployment.model, deployment.price, provider_kind=provider.kind),
                timeout_s=provider.timeout_s,
                retry=provider.retry,
                call=call_mode(
                    provider.call, provider.timeout_s, local_call_max_s=local_call_max_s, synchronous=synchronous
                ),
                type=deployment.type,
            )
        )
    return plan
