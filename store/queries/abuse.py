"""What abuse detection reads and writes: a key's window of requests summed in SQL, a tenant's history cut into
windows for training, the tenants to train, and the trained models (`abuse_models`).

A request is a job with a `job.started` event in the window. Each job is first reduced to one row (its start,
route, and whether it failed or violated the policy) by grouping its events, then joined to its billed tokens
and its similarity row, and the rows are summed: a key's window is one row whatever its traffic, and a
tenant's week of history one row per key and window.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    Subquery,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas import errors
from store.models import AbuseModel, EventLog, ModelCostLog, PromptSimilarityLog, Tenant
from store.queries._inserts import dialect_insert

OFF_HOURS_UTC = (22, 6)
"""`domain.abuse.features.OFF_HOURS_UTC`, which the store may not import: a test holds the two equal."""

KEY_FAULTS = frozenset(
    {
        errors.BAD_REQUEST,
        errors.CONTEXT_LENGTH_EXCEEDED,
        errors.UNKNOWN_MODEL,
        errors.UNSUPPORTED_PARAMETER,
        errors.MODEL_TYPE_MISMATCH,
        errors.GUARDRAIL_BLOCKED,
        errors.MODEL_NOT_ALLOWED,
        errors.REGION_NOT_ALLOWED,
        errors.COST_LIMIT_EXCEEDED,
    }
)
"""The `job.failed` codes a request brings on itself. Not the others: an upstream outage fails every key's jobs,
the tenant's budget is not one key's doing, and counting our own `rate_limited` or `abuse_blocked` would keep a
throttled key throttled for as long as it retries."""
VIOLATIONS = frozenset(
    {errors.GUARDRAIL_BLOCKED, errors.MODEL_NOT_ALLOWED, errors.REGION_NOT_ALLOWED, errors.COST_LIMIT_EXCEEDED}
)
"""`policy.refused` codes that count as a violation: what the request asked for, not the key's rate or budget."""
BLOCKING_ACTIONS = ("block", "fail")
"""`guardrail.triggered` actions that count as a violation; `redact` and `log` are the policy serving normal
traffic (a support desk's prompts are full of email addresses)."""


def _utc_hour(column: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    if dialect == "postgresql":
        # TIMESTAMPTZ: the hour in UTC whatever the session's time zone.
        return cast(func.extract("hour", func.timezone("UTC", column)), Integer)
    if dialect == "sqlite":
        # Stored as UTC text (`store.models.UTCDateTime`).
        return cast(func.strftime("%H", column), Integer)
    raise NotImplementedError(f"unsupported database dialect: {dialect}")


def _epoch_s(column: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", column)), BigInteger)
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    raise NotImplementedError(f"unsupported database dialect: {dialect}")


KeyFilter = Literal["key", "admin key", "every key"]
"""Whose jobs a statement reads: the key bound as `key_id`, the jobs sent without a key id (the environment's
admin key), or all of the tenant's (training)."""


def _conditions(table: Any, key: KeyFilter) -> list[ColumnElement[bool]]:
    """The tenant's rows of `table` created in [start, end), of the key: every statement's bound parameters."""
    conditions = [
        col(table.tenant_id) == bindparam("tenant_id"),
        col(table.created_at) >= bindparam("start"),
        col(table.created_at) < bindparam("end"),
    ]
    if key == "key":
        conditions.append(col(table.key_id) == bindparam("key_id"))
    elif key == "admin key":
        conditions.append(col(table.key_id).is_(None))
    return conditions


def _jobs(key: KeyFilter) -> Subquery:
    """One row per job that started in the window: its key, start, route, and whether it failed or violated."""
    kind = col(EventLog.type)
    code = col(EventLog.payload)["code"].as_string()
    action = col(EventLog.payload)["action"].as_string()
    started = kind == "job.started"
    failed = and_(kind == "job.failed", code.in_(sorted(KEY_FAULTS)))
    violated = or_(
        and_(kind == "guardrail.triggered", action.in_(BLOCKING_ACTIONS)),
        and_(kind == "policy.refused", code.in_(sorted(VIOLATIONS))),
    )
    relevant = kind.in_(("job.started", "job.failed", "guardrail.triggered", "policy.refused"))
    return (
        select(
            col(EventLog.job_id).label("job_id"),
            func.max(col(EventLog.key_id)).label("key_id"),
            func.min(case((started, col(EventLog.created_at)))).label("started_at"),
            func.max(case((started, col(EventLog.payload)["model"].as_string()))).label("model"),
            func.max(case((failed, 1), else_=0)).label("failed"),
            func.max(case((violated, 1), else_=0)).label("violated"),
        )
        .where(*_conditions(EventLog, key), relevant)
        .group_by(col(EventLog.job_id))
        .having(func.max(case((started, 1), else_=0)) == 1)
        .subquery("jobs")
    )


def _tokens(key: KeyFilter) -> Subquery:
    """Each answered job's billed tokens; a cache hit spent none and would read as an empty prompt."""
    return (
        select(
            col(ModelCostLog.job_id).label("job_id"),
            func.sum(cast(col(ModelCostLog.input_tokens), Float)).label("input_tokens"),
            func.sum(cast(col(ModelCostLog.output_tokens), Float)).label("output_tokens"),
        )
        .where(*_conditions(ModelCostLog, key), col(ModelCostLog.outcome) != "cache_hit")
        .group_by(col(ModelCostLog.job_id))
        .subquery("tokens")
    )


def _duplicates(key: KeyFilter) -> Subquery:
    return (
        select(col(PromptSimilarityLog.job_id).label("job_id"))
        .where(*_conditions(PromptSimilarityLog, key))
        .subquery("duplicates")
    )


@functools.cache
def _window_statement(dialect: str, key: KeyFilter) -> Select[Any]:
    """The sums (`STAT_FIELDS`) over the joined rows; grouped by key and window for training.

    Built once per process and bound at each call, as `store.queries.similarity` does: building it took ~3 ms
    of Python (measured), several times what SQLite needs to run it for a key's ten minutes.
    """
    jobs, tokens, duplicates = _jobs(key), _tokens(key), _duplicates(key)
    hour = _utc_hour(jobs.c.started_at, dialect)
    late, early = OFF_HOURS_UTC
    stmt = select(
        func.count(),
        func.count(tokens.c.job_id),
        func.coalesce(func.sum(tokens.c.input_tokens), 0.0),
        # Squares in floating point: an INTEGER square overflows PostgreSQL's int4 past 46,340 tokens.
        func.coalesce(func.sum(tokens.c.input_tokens * tokens.c.input_tokens), 0.0),
        func.coalesce(func.sum(tokens.c.output_tokens), 0.0),
        func.coalesce(func.sum(jobs.c.failed), 0),
        func.coalesce(func.sum(jobs.c.violated), 0),
        func.count(duplicates.c.job_id),
        func.coalesce(func.sum(case((or_(hour >= late, hour < early), 1), else_=0)), 0),
        func.count(func.distinct(jobs.c.model)),
    ).select_from(
        jobs.outerjoin(tokens, tokens.c.job_id == jobs.c.job_id).outerjoin(
            duplicates, duplicates.c.job_id == jobs.c.job_id
        )
    )
    if key == "every key":
        # Floor division (`//`): SQLAlchemy renders `/` of integers as true division.
        bucket = _epoch_s(jobs.c.started_at, dialect) // bindparam("window_s", type_=BigInteger)
        stmt = stmt.group_by(jobs.c.key_id, bucket)
    return stmt


STAT_FIELDS = (
    "requests",
    "answered",
    "input_tokens",
    "input_tokens_sq",
    "output_tokens",
    "failed",
    "violated",
    "near_duplicates",
    "off_hours",
    "models",
)
"""The sums each query returns, in order: `domain.abuse.features.WindowStats`' fields after `window_s`."""


async def key_window(
    session: AsyncSession, *, tenant_id: str, key_id: str | None, start: datetime, end: datetime
) -> dict[str, float]:
    """The sums of one key's requests that started in [start, end): one statement, one row.

    `key_id=None` means the jobs sent without a key id (the environment's admin key), not every key.
    """
    stmt = _window_statement(session.get_bind().dialect.name, "admin key" if key_id is None else "key")
    params = {"tenant_id": tenant_id, "key_id": key_id, "start": start, "end": end}
    row = (await session.exec(stmt, params=params)).one()  # type: ignore[call-overload]
    return {name: float(value) for name, value in zip(STAT_FIELDS, row, strict=True)}


async def history_windows(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime, window_s: int
) -> list[dict[str, float]]:
    """The sums of every key's non-empty windows of `window_s` seconds (aligned on the epoch) in [start, end):
    one statement, one row per key and window, the training set of the tenant's model."""
    stmt = _window_statement(session.get_bind().dialect.name, "every key")
    params = {"tenant_id": tenant_id, "start": start, "end": end, "window_s": window_s}
    rows = (await session.exec(stmt, params=params)).all()  # type: ignore[call-overload]
    return [{name: float(value) for name, value in zip(STAT_FIELDS, row, strict=True)} for row in rows]


async def tenants_with_history(
    session: AsyncSession, *, start: datetime, end: datetime, after: str | None, limit: int
) -> list[str]:
    """Up to `limit` tenant ids after `after` (in id order) with a job started in [start, end)."""
    started = (
        select(literal(1))
        .where(
            col(EventLog.tenant_id) == col(Tenant.id),
            col(EventLog.type) == "job.started",
            col(EventLog.created_at) >= start,
            col(EventLog.created_at) < end,
        )
        .exists()
    )
    stmt = select(col(Tenant.id)).where(started)
    if after is not None:
        stmt = stmt.where(col(Tenant.id) > after)
    rows = (await session.exec(stmt.order_by(col(Tenant.id)).limit(limit))).all()  # type: ignore[call-overload]
    return [str(tenant_id) for (tenant_id,) in rows]


async def save_abuse_model(
    session: AsyncSession, *, tenant_id: str, trained_at: datetime, samples: int, model: bytes, stats: dict[str, Any]
) -> None:
    """Replace the tenant's model (one row per tenant)."""
    values = {"tenant_id": tenant_id, "trained_at": trained_at, "samples": samples, "model": model, "stats": stats}
    insert = dialect_insert(session, AbuseModel)
    stmt = insert.values(**values).on_conflict_do_update(
        index_elements=["tenant_id"],
        set_={name: insert.excluded[name] for name in ("trained_at", "samples", "model", "stats")},
    )
    await session.exec(stmt)


async def abuse_model_trained_at(session: AsyncSession, tenant_id: str) -> datetime | None:
    """When the tenant's model was trained (None: it has none): a cheap check before loading the bytes."""
    stmt = select(col(AbuseModel.trained_at)).where(col(AbuseModel.tenant_id) == tenant_id)
    return (await session.exec(stmt)).scalar_one_or_none()  # type: ignore[call-overload]


async def load_abuse_model(session: AsyncSession, tenant_id: str) -> AbuseModel | None:
    return await session.get(AbuseModel, tenant_id)
