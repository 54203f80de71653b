"""Tenants and API keys as the admin API accepts and returns them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "app", "viewer"]
"""`viewer` reads; `app` also submits, cancels and repairs jobs; `admin` also manages keys (and tenants)."""


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class TenantPublic(BaseModel):
    id: str
    name: str
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(min_length=1, max_length=100)
    role: Role
    name: str | None = Field(default=None, max_length=200)


class KeyPublic(BaseModel):
    id: str
    tenant_id: str
    role: str
    name: str | None
    prefix: str
    created_at: datetime


class KeyCreated(KeyPublic):
    key: str
    """Shown once; only its hash is stored."""
