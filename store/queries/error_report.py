"""The rows behind `GET /v1/errors`: a tenant's failed jobs in a window, grouped by error code in SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, String, func
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from schemas.reports import UNKNOWN_ERROR_CODE, ErrorGroup
from store.models import EventLog

EXAMPLES_PER_CODE = 5
MAX_CODES = 100
"""More codes than this in one window is a flood of one kind (upstream codes passed through): the most
frequent are what a person reads."""


def _payload_text(key: str) -> ColumnElement[str]:
    # JSON_EXTRACT on SQLite, `->>` on PostgreSQL: both give the string without its quotes.
    return col(EventLog.payload)[key].as_string()


async def error_groups(session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime) -> list[ErrorGroup]:
    """The tenant's `job.failed` events from `start` (inclusive) to `end` (exclusive) by their `code`, the
    most frequent first; each with its newest failure's message and up to `EXAMPLES_PER_CODE` jobs.

    Refusals (`policy.refused`, `budget.exceeded`) are not read: the workflow fails every refused job with the
    same code, so they are already among the `job.failed` events.
    """
    code = func.coalesce(_payload_text("code"), UNKNOWN_ERROR_CODE, type_=String).label("code")
    failed = [
        col(EventLog.tenant_id) == tenant_id,
        col(EventLog.type) == "job.failed",
        col(EventLog.created_at) >= start,
        col(EventLog.created_at) < end,
    ]
    # SQLModel's `Select` built directly: `exec` wants its own class.
    columns: Select[str, int, datetime] = Select(code, func.count(), func.max(col(EventLog.created_at)))
    totals = columns.where(*failed).group_by(code).order_by(func.count().desc(), code).limit(MAX_CODES)
    groups = (await session.exec(totals)).all()
    if not groups:
        return []
    codes = [row[0] for row in groups]

    # The newest failure of each code, for its message; and each code's newest distinct jobs (a job run again
    # fails again: it is one example, placed by its latest failure).
    newest = func.row_number().over(
        partition_by=code, order_by=(col(EventLog.created_at).desc(), col(EventLog.id).desc())
    )
    latest: Select[str, str | None, int] = Select(code, _payload_text("message").label("message"), newest.label("rank"))
    ranked_messages = latest.where(*failed).subquery()
    message_columns: Select[str, str | None] = Select(ranked_messages.c.code, ranked_messages.c.message)
    newest_messages = message_columns.where(ranked_messages.c.rank == 1, ranked_messages.c.code.in_(codes))
    messages = {group_code: message or "" for group_code, message in (await session.exec(newest_messages)).all()}

    per_job = (
        Select(code, col(EventLog.job_id), func.max(col(EventLog.created_at)).label("last_at"))
        .where(*failed)
        .group_by(code, col(EventLog.job_id))
        .subquery()
    )
    job_rank = func.row_number().over(
        partition_by=per_job.c.code, order_by=(per_job.c.last_at.desc(), per_job.c.job_id.desc())
    )
    ranked_jobs = Select(per_job.c.code, per_job.c.job_id, job_rank.label("rank")).subquery()
    example_columns: Select[str, str, int] = Select(ranked_jobs.c.code, ranked_jobs.c.job_id, ranked_jobs.c.rank)
    examples_stmt = example_columns.where(
        ranked_jobs.c.rank <= EXAMPLES_PER_CODE, ranked_jobs.c.code.in_(codes)
    ).order_by(ranked_jobs.c.code, ranked_jobs.c.rank)
    examples: dict[str, list[str]] = {c: [] for c in codes}
    for group_code, job_id, _ in (await session.exec(examples_stmt)).all():
        examples[group_code].append(job_id)

    report = [
        ErrorGroup(
            code=group_code,
            count=count,
            example_job_ids=examples[group_code],
            last_seen_at=last_seen,
            message=messages.get(group_code, ""),
        )
        for group_code, count, last_seen in groups
    ]
    # Sorted here too: PostgreSQL's collation and SQLite's byte order rank codes differently.
    report.sort(key=lambda g: (-g.count, g.code))
    return report
