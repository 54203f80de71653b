"""OpenAI-compatible endpoints: every completion is a durable job that the request waits for."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from temporalio.client import Client

from api.auth import Principal
from api.deps import AppDep, HubDep, RoutesDep, SettingsDep, TemporalDep, ViewerDep
from api.errors import ApiError
from api.job_answers import answer_or_error, wait_finished
from api.rate_limits import admit
from api.sse import StreamTarget, answer_events, first_news
from api.stream_hub import StreamHub
from client import job_client
from domain.rate_limits import job_tokens
from domain.routing import require_route
from schemas.jobs import JobCreate, JobState
from schemas.openai import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList
from schemas.validation import describe
from settings import Settings

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models", response_model=ModelList)
async def list_models(principal: ViewerDep, routes: RoutesDep) -> ModelList:
    return ModelList(data=[ModelCard(id=alias) for alias in routes.routes])


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, principal: ViewerDep, routes: RoutesDep) -> ModelCard:
    require_route(routes, model_id)
    return ModelCard(id=model_id)


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    body: ChatCompletionRequest,
    principal: AppDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    routes: RoutesDep,
    hub: HubDep,
    request: Request,
    response: Response,
) -> Any:
    require_route(routes, body.model, kind="chat", params=body, messages=body.messages)
    try:
        job_request = JobCreate(
            model=body.model, messages=body.messages, params=body.job_params(), metadata=body.metadata or {}
        )
    except ValidationError as err:  # OpenAI's schema allows what a job does not (e.g. 60 metadata keys)
        raise ApiError(422, "validation_error", describe(err.errors()[0])) from err
    # What TPM was charged goes on the job: postflight settles the buckets with the real usage.
    charged_tokens = await admit(request, response, principal, route=body.model, tokens=job_tokens(job_request))
    # A streamed answer is a response of its own: FastAPI copies `response`'s headers only onto the ones it builds.
    rate_headers = dict(response.headers)
    if body.stream and settings.stream_relay:
        return await _stream_live(body, job_request, principal, temporal, settings, hub, rate_headers, charged_tokens)
    handle = await job_client.start_job(
        temporal,
        settings,
        tenant_id=principal.tenant_id,
        key_id=principal.key_id,
        request=job_request,
        synchronous=True,
        admitted_tokens=charged_tokens,
    )
    state = await wait_finished(handle, body.model, settings.chat_timeout_s)
    result = answer_or_error(handle.id, state)
    created = int(state.finished_at.timestamp() if state.finished_at else 0)
    headers = {"X-Kintsugi-Job-Id": handle.id}
    if body.stream:  # the relay is off: the finished answer, streamed
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        finished: asyncio.Future[JobState] = asyncio.get_running_loop().create_future()
        finished.set_result(state)
        return StreamingResponse(
            answer_events(hub, StreamTarget(handle.id, body.model, created, include_usage), finished),
            media_type="text/event-stream",
            headers={**headers, **rate_headers, "Cache-Control": "no-cache"},
        )
    response.headers.update(headers)
    return ChatCompletion.of(handle.id, created, body.model, result, state.usage)


async def _stream_live(
    body: ChatCompletionRequest,
    job_request: JobCreate,
    principal: Principal,
    temporal: Client,
    settings: Settings,
    hub: StreamHub,
    rate_headers: dict[str, str],
    charged_tokens: int,
) -> StreamingResponse:
    """Start the job with this replica as its relay and answer with its chunks as the worker receives them.

    The job is durable as ever: a client that leaves does not cancel it, and `GET /v1/jobs/{id}/stream`
    resumes it. A job that fails before its first token is answered with an HTTP error, as without streaming.
    """
    job_id = job_client.job_id_for(principal.tenant_id, None)
    hub.watch(job_id)
    try:
        handle = await job_client.start_job(
            temporal,
            settings,
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            request=job_request,
            job_id=job_id,
            relay_url=settings.relay_base_url,
            synchronous=True,
            admitted_tokens=charged_tokens,
        )
        job = asyncio.ensure_future(job_client.finished_state(handle, body.model))
        await first_news(hub, job_id, job)
        if job.done() and not hub.delivered(job_id):
            answer_or_error(job_id, job.result())
    except BaseException:
        hub.release(job_id)  # no stream will follow: the answer is an HTTP error
        raise
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    target = StreamTarget(job_id, body.model, int(time.time()), include_usage)
    return StreamingResponse(
        answer_events(hub, target, job),
        media_type="text/event-stream",
        headers={"X-Kintsugi-Job-Id": job_id, **rate_headers, "Cache-Control": "no-cache"},
    )
