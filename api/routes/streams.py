"""Streams: the relay that workers push a job's chunks to, and `GET /v1/jobs/{id}/stream` to resume one."""

from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from api.deps import HubDep, SettingsDep, TemporalDep, ViewerDep
from api.errors import ApiError
from api.sse import StreamTarget, answer_events
from api.stream_hub import Generation
from client import job_client
from schemas import search_attributes as search_attrs
from schemas.relay import RELAY_PATH, TOKEN_HEADER, RelayMessage

router = APIRouter(tags=["streams"])
_EVENT_ID = re.compile(r"[0-9]{1,15}")
"""What this API sends as an SSE id: an offset (ASCII digits; `str.isdigit` also takes `²`)."""


@router.post(RELAY_PATH, status_code=204, include_in_schema=False)
async def relay(job_id: str, request: Request, settings: SettingsDep, hub: HubDep) -> Response:
    """Newline-delimited JSON from the worker making the call: `{call_seq, attempt, chunk}` per chunk, then
    `{call_seq, attempt, end: true}`. A body that stops before its end line cuts the live stream."""
    token = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(token.encode(), settings.relay_token(job_id).encode()):
        raise ApiError(401, "invalid_relay_token", "the relay token does not match this job")
    if not hub.watching(job_id):
        raise ApiError(404, "not_watching", f"nobody on this replica is streaming job {job_id}")
    generation: Generation | None = None
    pending = b""
    try:
        async for piece in request.stream():
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                message = RelayMessage.model_validate_json(line)
                generation = (message.call_seq, message.attempt)
                if message.end:
                    hub.end(job_id, generation)
                    return Response(status_code=204)
                if message.chunk is not None:
                    hub.publish(job_id, generation, message.chunk)
    except ClientDisconnect:
        pass  # the worker went away mid-call: cut below
    except ValidationError as err:
        hub.cut(job_id, generation)
        raise ApiError(400, "bad_relay_message", f"relay line is not a chunk message: {err}") from err
    hub.cut(job_id, generation)
    return Response(status_code=204)


@router.get("/v1/jobs/{job_id}/stream")
async def resume_stream(
    job_id: str,
    principal: ViewerDep,
    temporal: TemporalDep,
    hub: HubDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The job's answer as OpenAI's chunk stream: live when this replica is streaming it (from where the
    client left, by `Last-Event-ID`), else once the job has finished — never a second upstream call."""
    after = _resume_offset(last_event_id)
    handle, description = await job_client.describe_job(temporal, principal.tenant_id, job_id)
    model = description.typed_search_attributes.get(search_attrs.MODEL) or ""
    target = StreamTarget(job_id, model, int(description.start_time.timestamp()), include_usage=True)
    return StreamingResponse(
        answer_events(hub, target, job_client.finished_state(handle, model), after=after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Kintsugi-Job-Id": job_id},
    )


def _resume_offset(last_event_id: str | None) -> int:
    if last_event_id is None or last_event_id == "":
        return 0
    if not _EVENT_ID.fullmatch(last_event_id):
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be an id this stream sent")
    return int(last_event_id)
