"""OpenAI-compatible endpoints: every completion is a durable job that the request waits for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from api.deps import AppDep, RoutesDep, SettingsDep, TemporalDep, ViewerDep
from api.errors import ApiError
from client import job_client
from domain.routing import require_route
from domain.streaming import replay
from schemas import errors
from schemas.jobs import JobCreate, JobResult, JobState
from schemas.openai import ChatCompletion, ChatCompletionRequest, CompletionUsage, ModelCard, ModelList, chunk
from schemas.validation import describe

router = APIRouter(prefix="/v1", tags=["openai"])
_UPSTREAM_STATUS = {
    errors.BAD_REQUEST: 400,
    errors.CONTEXT_LENGTH_EXCEEDED: 400,
    errors.UNKNOWN_MODEL: 404,
    errors.CANCELLED: 409,
}


@router.get("/models", response_model=ModelList)
async def list_models(principal: ViewerDep, routes: RoutesDep) -> ModelList:
    return ModelList(data=[ModelCard(id=alias) for alias in routes.routes])


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, principal: ViewerDep, routes: RoutesDep) -> ModelCard:
    require_route(routes, model_id)
    return ModelCard(id=model_id)


@router.post("/chat/completions", response_model=ChatCompletion, response_model_exclude_none=True)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: AppDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    routes: RoutesDep,
    response: Response,
) -> Any:
    require_route(routes, body.model)
    try:
        job_request = JobCreate(
            model=body.model, messages=body.messages, params=body.job_params(), metadata=body.metadata or {}
        )
    except ValidationError as err:  # OpenAI's schema allows what a job does not (e.g. 60 metadata keys)
        raise ApiError(422, "validation_error", describe(err.errors()[0])) from err
    handle = await job_client.start_job(temporal, settings, tenant_id=principal.tenant_id, request=job_request)
    try:
        state = await asyncio.wait_for(job_client.finished_state(handle, body.model), settings.chat_timeout_s)
    except TimeoutError as err:
        raise ApiError(
            504, "job_timeout", f"job {handle.id} is still running; read it at /v1/jobs/{handle.id}"
        ) from err
    result = state.result
    if state.error is not None or result is None:
        error = state.error
        code, message = (error.code, error.message) if error else (errors.UPSTREAM_ERROR, "no result")
        raise ApiError(_UPSTREAM_STATUS.get(code, 502), code, f"{message} (job {handle.id})")
    created = int(state.finished_at.timestamp() if state.finished_at else 0)
    headers = {"X-Kintsugi-Job-Id": handle.id}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _sse(handle.id, created, body.model, result, state, include_usage),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    response.headers.update(headers)
    return ChatCompletion.of(handle.id, created, body.model, result, state.usage)


async def _sse(
    job_id: str, created: int, model: str, result: JobResult, state: JobState, include_usage: bool
) -> AsyncIterator[str]:
    """The finished answer as OpenAI's chunk stream (role, content, tool calls, finish, usage, [DONE])."""
    for event in replay(result):
        body = chunk(job_id, created, model, event.choices, system_fingerprint=result.system_fingerprint)
        yield f"id: {event.offset}\ndata: {json.dumps(body)}\n\n"
    if include_usage:
        yield f"data: {json.dumps(chunk(job_id, created, model, [], usage=CompletionUsage.of(state.usage)))}\n\n"
    yield "data: [DONE]\n\n"
