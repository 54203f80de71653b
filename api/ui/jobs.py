"""`/ui/jobs`: the tenant's jobs, newest first, filtered by status and model, a page at a time, each linked to its
trace; while any job shown is unfinished, htmx polls the rows (`/ui/jobs/rows`) until every one has finished.

Read through `client.job_client.list_jobs`, as `GET /v1/jobs` reads them, so the page and the API list the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from temporalio.service import RPCError

from api.temporal import connect_temporal
from api.ui.auth import UiUser, UserDep
from api.ui.rendering import render
from client.connect import TemporalUnavailable
from client.job_client import list_jobs
from domain.errors import InvalidCursor, InvalidFilter
from schemas.jobs import JobList, JobStatus

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 25
POLL_EVERY = "2s"
STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
FINISHED: frozenset[JobStatus] = frozenset({"succeeded", "failed", "cancelled"})
MAX_MODEL_CHARS = 200


@dataclass
class JobFilter:
    """The filter form as the user sent it; what is wrong with a field is shown beside it."""

    status: str = ""
    model: str = ""
    cursor: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def query(self, *, cursor: str | None = None) -> str:
        """The page's query string with another cursor (None: this page's)."""
        params = {"status": self.status, "model": self.model, "cursor": self.cursor if cursor is None else cursor}
        return urlencode({key: value for key, value in params.items() if value})


@dataclass(frozen=True)
class JobPage:
    jobs: JobList | None
    """None when the filter was refused or Temporal could not be asked."""
    problem: str | None = None
    """Why there is no list, in words for the page (a field's own error is beside its field instead)."""

    @property
    def live(self) -> bool:
        """Some job shown may still change: keep polling its status."""
        return self.jobs is not None and any(job.status not in FINISHED for job in self.jobs.data)


def read_filter(request: Request) -> JobFilter:
    """The query string as a filter, checked field by field (never a 422 page of JSON)."""
    params = request.query_params
    form = JobFilter(
        status=params.get("status", "").strip(), model=params.get("model", "").strip(), cursor=params.get("cursor", "")
    )
    if form.status and form.status not in STATUSES:
        form.errors["status"] = f"Choose one of: {', '.join(STATUSES)}."
    if len(form.model) > MAX_MODEL_CHARS:
        form.errors["model"] = f"At most {MAX_MODEL_CHARS} characters."
    return form


async def read_page(request: Request, user: UiUser, form: JobFilter) -> JobPage:
    if form.errors:
        return JobPage(None)
    try:
        temporal = await connect_temporal(request.app.state)
        jobs = await list_jobs(
            temporal,
            user.principal.tenant_id,
            status=form.status or None,  # type: ignore[arg-type]  # checked against STATUSES by read_filter
            model=form.model or None,
            limit=PAGE_SIZE,
            cursor=form.cursor or None,
        )
    except InvalidFilter as err:
        form.errors["model"] = f"Not a model name: {err.message}."
        return JobPage(None)
    except InvalidCursor:
        return JobPage(None, problem="That page of the list is no longer available: start again from the first page.")
    except TemporalUnavailable:
        return JobPage(None, problem="Temporal is unavailable, so jobs cannot be listed right now.")
    except RPCError as err:
        return JobPage(None, problem=f"Temporal refused to list jobs ({err.status.name}).")
    return JobPage(jobs)


def _status_code(form: JobFilter, page: JobPage) -> int:
    if form.errors or (page.problem and form.cursor):
        return 400
    return 503 if page.problem else 200


@router.get("/jobs")
async def jobs_page(request: Request, user: UserDep) -> HTMLResponse:
    form = read_filter(request)
    page = await read_page(request, user, form)
    return render(
        request,
        "jobs.html",
        user=user,
        title="Jobs",
        form=form,
        page=page,
        statuses=STATUSES,
        poll_every=POLL_EVERY,
        status_code=_status_code(form, page),
    )


@router.get("/jobs/rows")
async def job_rows(request: Request, user: UserDep) -> HTMLResponse:
    """The table's body alone, for htmx to poll; without the poll trigger once every job in it has finished."""
    form = read_filter(request)
    page = await read_page(request, user, form)
    return render(
        request,
        "_job_rows.html",
        user=user,
        title="Jobs",
        form=form,
        page=page,
        poll_every=POLL_EVERY,
        status_code=_status_code(form, page),
    )
