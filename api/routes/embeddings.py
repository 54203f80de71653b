"""`POST /v1/embeddings`, OpenAI-compatible: each request is a durable job that the request waits for."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import AppDep, RoutesDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.job_answers import answer_or_error, wait_finished
from api.rate_limits import admit
from client import job_client
from domain.rate_limits import job_tokens
from domain.routing import require_route
from schemas import errors
from schemas.embeddings import EmbeddingData, EmbeddingList, EmbeddingRequest, EmbeddingUsage, decode_vector
from schemas.jobs import JobCreate

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/embeddings", response_model=EmbeddingList)
async def create_embeddings(
    body: EmbeddingRequest,
    principal: AppDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    routes: RoutesDep,
    http_request: Request,
    response: Response,
) -> EmbeddingList:
    require_route(routes, body.model, kind="embedding")
    request = JobCreate(model=body.model, kind="embedding", embedding=body.job_input())
    # What TPM was charged goes on the job: postflight settles the buckets with the real usage.
    charged_tokens = await admit(http_request, response, principal, route=body.model, tokens=job_tokens(request))
    handle = await job_client.start_job(
        temporal,
        settings,
        tenant_id=principal.tenant_id,
        key_id=principal.key_id,
        request=request,
        synchronous=True,
        admitted_tokens=charged_tokens,
    )
    state = await wait_finished(handle, body.model, settings.chat_timeout_s)
    vectors = answer_or_error(handle.id, state).embeddings
    if vectors is None:
        raise ApiError(502, errors.UPSTREAM_BAD_RESPONSE, f"the job's answer holds no vectors (job {handle.id})")
    response.headers["X-Kintsugi-Job-Id"] = handle.id
    as_base64 = body.encoding_format == "base64"
    input_tokens = state.usage.input_tokens if state.usage else 0
    return EmbeddingList(
        data=[
            EmbeddingData(index=v.index, embedding=v.embedding if as_base64 else decode_vector(v.embedding))
            for v in vectors
        ],
        model=body.model,
        usage=EmbeddingUsage(prompt_tokens=input_tokens, total_tokens=input_tokens),
    )
