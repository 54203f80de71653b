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
from schemas import errors
from schemas.jobs import ChatMessage, JobCreate, JobParams, JobResult, JobState
from schemas.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ChoiceMessage,
    CompletionUsage,
    ModelCard,
    ModelList,
    chunk,
)
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


@router.post("/chat/completions", response_model=ChatCompletion)
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
        job_request = _job_request(body)
    except ValidationError as err:  # OpenAI's schema allows what a job does not (e.g. 60-char names)
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
            _sse(handle.id, created, body.model, result, _usage(state), include_usage),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    response.headers.update(headers)
    return ChatCompletion(
        id=handle.id,
        created=created,
        model=body.model,
        choices=[Choice(message=ChoiceMessage(content=result.content), finish_reason=result.finish_reason)],
        usage=_usage(state),
    )


def _job_request(body: ChatCompletionRequest) -> JobCreate:
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    return JobCreate(
        model=body.model,
        messages=[ChatMessage(role=m.role, content=m.text(), name=m.name) for m in body.messages],
        params=JobParams(
            temperature=body.temperature,
            top_p=body.top_p,
            max_tokens=body.max_completion_tokens or body.max_tokens,
            stop=stop,
            seed=body.seed,
        ),
        metadata=body.metadata or {},
    )


def _usage(state: JobState) -> CompletionUsage:
    used_in = state.usage.input_tokens if state.usage else 0
    used_out = state.usage.output_tokens if state.usage else 0
    return CompletionUsage(prompt_tokens=used_in, completion_tokens=used_out, total_tokens=used_in + used_out)


async def _sse(
    job_id: str, created: int, model: str, result: JobResult, usage: CompletionUsage, include_usage: bool
) -> AsyncIterator[str]:
    """The finished answer as OpenAI's chunk stream (role, content, finish, usage, [DONE])."""
    events = [
        chunk(job_id, created, model, {"role": "assistant", "content": ""}, None),
        chunk(job_id, created, model, {"content": result.content}, None),
        chunk(job_id, created, model, {}, result.finish_reason),
    ]
    if include_usage:
        events.append({**chunk(job_id, created, model, {}, None), "choices": [], "usage": usage.model_dump()})
    for event in events:
        yield f"data: {json.dumps(event)}\n\n"
    yield "data: [DONE]\n\n"
