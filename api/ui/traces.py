"""`/ui/traces/{job_id}`: one job's trace as a waterfall, a panel with the selected span's details, the trace as
JSON (with the session, where `/v1/jobs/{id}/trace` needs a bearer key) and a link to the workflow in the
Temporal UI.

The trace is read by `client.job_traces.load_trace`, as the API's trace routes read it, so they never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from temporalio.service import RPCError

from api.temporal import connect_temporal
from api.ui.auth import UiError, UiUser, UserDep
from api.ui.formatting import usd
from api.ui.rendering import render
from api.ui.waterfall import Row, Waterfall, deployment_of, final_call, role_of, seconds, waterfall
from client.connect import TemporalUnavailable
from client.job_traces import load_trace
from domain.errors import JobNotFound
from schemas.traces import Span, Trace
from settings import Settings

router = APIRouter(prefix="/ui", include_in_schema=False)

UNAVAILABLE = "Temporal is unavailable"

DECISION_KEYS = ("guardrails", "output_guardrails", "policy", "cache_hit", "skipped", "output_refusal")
"""Attributes the panel shows as decisions of their own, not in the table of plain attributes."""


@dataclass(frozen=True)
class SpanPanel:
    """The side panel: one span as a person reads it."""

    row: Row
    facts: list[tuple[str, str]]
    """Label and value, in the order they are shown."""
    decisions: list[tuple[str, str]]
    """Guardrail verdicts, the policy's decision, a cache hit, the features skipped: name and pretty JSON."""
    events: list[tuple[str, str, str]]
    """The span's events (a failed attempt, a guardrail's decision, a cache hit): name, time, attributes as JSON."""
    attributes: list[tuple[str, str]]
    """Every other attribute, as text."""


async def read_trace(request: Request, user: UiUser, job_id: str) -> Trace:
    """The session's tenant's trace; another tenant's job, or no job, is the UI's 404 page."""
    try:
        temporal = await connect_temporal(request.app.state)
        return await load_trace(temporal, request.app.state.sessions, user.principal.tenant_id, job_id)
    except JobNotFound as err:
        raise UiError(404, "No such job", f"There is no job {job_id} in {user.tenant_name}.") from err
    except TemporalUnavailable as err:
        raise UiError(503, UNAVAILABLE, "Traces are read from Temporal, which cannot be reached.") from err
    except RPCError as err:
        raise UiError(503, UNAVAILABLE, f"Temporal refused to read the trace ({err.status.name}).") from err


def temporal_ui_link(settings: Settings, job_id: str) -> str:
    """The job's workflow in the Temporal UI (history, pending activities, the raw payloads)."""
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{settings.temporal_ui_base_url}/namespaces/{namespace}/workflows/{quote(job_id, safe='')}"


def span_panel(row: Row) -> SpanPanel:
    span = row.span
    attrs = span.attributes
    facts = [("Kind", span.kind), ("Status", span.status), ("Started", _time(span.start_time))]
    facts.append(("Ended", _time(span.end_time)) if span.end_time else ("Ended", "still open"))
    if row.duration_s is not None:
        facts.append(("Duration", seconds(row.duration_s)))
    if deployment := deployment_of(span):
        facts.append(("Deployment", deployment))
    if "attempts" in attrs:
        facts.append(("Attempts", str(attrs["attempts"])))
    if role_of(span) == "call" and "cost_usd" in attrs:
        cost = attrs["cost_usd"]
        facts.append(("Cost", usd(cost) if cost is not None else "unpriced (no known price)"))
    if "input_tokens" in attrs or "output_tokens" in attrs:
        facts.append(("Tokens", f"{attrs.get('input_tokens', 0):,} in · {attrs.get('output_tokens', 0):,} out"))
    failure = attrs.get("last_failure") or attrs.get("failure_message")
    if failure:
        message = failure.get("message", failure) if isinstance(failure, dict) else failure
        kind = failure.get("type") if isinstance(failure, dict) else attrs.get("failure_type")
        facts.append(("Last failure", f"{message} ({kind})" if kind else str(message)))
    if attrs.get("from_deployment"):
        facts.append(("Rerouted", f"{attrs['from_deployment']} → {attrs.get('to_deployment')}"))
    shown = {"attempts", "cost_usd", "input_tokens", "output_tokens", "last_failure", "failure_message", "failure_type"}
    shown |= {"from_deployment", "to_deployment"} | ({"provider", "model"} if deployment else set())
    return SpanPanel(
        row=row,
        facts=facts,
        decisions=[(key, _pretty(attrs[key])) for key in DECISION_KEYS if attrs.get(key)],
        events=[(event.name, _time(event.time), _pretty(event.attributes)) for event in span.events],
        attributes=[(k, _text(v)) for k, v in attrs.items() if k not in shown and k not in DECISION_KEYS],
    )


def _selected(view: Waterfall, span_id: str | None) -> Row:
    """The row of `span_id`; the first row (the job itself) when none is asked for."""
    if span_id is None:
        return view.rows[0]
    for row in view.rows:
        if row.span.span_id == span_id:
            return row
    raise UiError(404, "No such span", f"The trace has no span {span_id}.")


@router.get("/traces/{job_id}.json")
async def trace_json(request: Request, job_id: str, user: UserDep) -> JSONResponse:
    """What `GET /v1/jobs/{id}/trace` answers, as a file to save."""
    trace = await read_trace(request, user, job_id)
    return JSONResponse(
        trace.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="trace-{quote(job_id, safe="")}.json"'},
    )


@router.get("/traces/{job_id}/spans/{span_id}")
async def span_details(request: Request, job_id: str, span_id: str, user: UserDep) -> HTMLResponse:
    """The side panel for one span, for htmx to swap in (the page's own link does the same without JS)."""
    trace = await read_trace(request, user, job_id)
    view = waterfall(trace, now=datetime.now(UTC))
    panel = span_panel(_selected(view, span_id))
    return render(request, "_span_panel.html", user=user, title="Trace", job_id=job_id, panel=panel, swap=True)


@router.get("/traces/{job_id}")
async def trace_page(request: Request, job_id: str, user: UserDep, span: str | None = None) -> HTMLResponse:
    trace = await read_trace(request, user, job_id)
    view = waterfall(trace, now=datetime.now(UTC))
    answered = final_call(trace)
    return render(
        request,
        "trace.html",
        user=user,
        title=f"Trace of {job_id}",
        trace=trace,
        view=view,
        panel=span_panel(_selected(view, span)),
        final_deployment=deployment_of(answered) if answered else None,
        attempts=sum(_attempts(row.span) for row in view.rows if row.role == "call"),
        reroutes=sum(1 for row in view.rows if row.role == "reroute"),
        temporal_ui=temporal_ui_link(request.app.state.settings, job_id),
        job_id=job_id,
        swap=False,
    )


def _attempts(span: Span) -> int:
    attempts = span.attributes.get("attempts")
    return attempts if isinstance(attempts, int) else 1


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
