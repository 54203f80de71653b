"""SQLModel tables of the app database. Temporal owns job state; these hold what Temporal does not."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import AutoString, Field, SQLModel

from schemas.tenants import Role

DEFAULT_TENANT_ID = "default"
"""The built-in tenant the admin key acts as; the initial migration creates it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random, URL-safe id with a type prefix (`ten_…`, `key_…`) so ids are recognisable in logs."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that always hands back aware UTC datetimes, on both dialects.

    PostgreSQL stores TIMESTAMPTZ; SQLite has no time zones, so values are stored as UTC and UTC is
    attached again on read. Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tz_column(*, nullable: bool = False) -> Any:
    return Column(UTCDateTime(), nullable=nullable)


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: str = Field(default_factory=lambda: new_id("ten"), primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    role: Role = Field(sa_type=AutoString(16))
    name: str | None = Field(default=None, max_length=200)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    """sha256 hex of the key; the plaintext is shown once and never stored."""
    prefix: str = Field(max_length=8)
    """The key's first 8 characters, to tell keys apart in listings."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())
    revoked_at: datetime | None = Field(default=None, sa_column=_tz_column(nullable=True))


class ModelCostLog(SQLModel, table=True):
    """One row per billed model call; `idempotency_key` keeps a retried postflight from billing twice."""

    __tablename__ = "model_cost_logs"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, index=True, max_length=255)
    job_id: str = Field(index=True, max_length=255)
    tenant_id: str = Field(index=True, max_length=64)
    provider: str = Field(max_length=100)
    model: str = Field(max_length=200)
    input_tokens: int
    """Every input token, cached or not."""
    output_tokens: int
    cached_input_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Of `input_tokens`, those read from the provider's prompt cache."""
    cache_write_input_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Of `input_tokens`, those written to the provider's prompt cache (Anthropic bills them apart)."""
    reasoning_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Of `output_tokens`, those spent on reasoning."""
    cost_usd: float
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())


class EventLog(SQLModel, table=True):
    """Outbox of events for the warehouse; `exported_at` is set once the export workflow has sent a row."""

    __tablename__ = "event_logs"

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(unique=True, index=True, max_length=255)
    tenant_id: str = Field(index=True, max_length=64)
    job_id: str = Field(index=True, max_length=255)
    type: str = Field(index=True, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_tz_column())
    exported_at: datetime | None = Field(default=None, sa_column=_tz_column(nullable=True))
