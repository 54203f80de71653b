"""Tenants and API keys as the admin API accepts and returns them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "app", "viewer"]
"""`viewer` reads; `app` also submits, cancels and repairs jobs; `admin` also manages keys (and tenants)."""


class _AllTenants(Enum):
    ALL_TENANTS = "all_tenants"


ALL_TENANTS = _AllTenants.ALL_TENANTS
"""The scope of the platform admin. A named value, not `None`, so "every tenant" is never read by accident
where a missing tenant (or, for flags, "global") is meant."""
TenantScope = str | Literal[_AllTenants.ALL_TENANTS]
"""Which tenants a caller may act on: one tenant's id, or `ALL_TENANTS`."""


def in_scope(scope: TenantScope, tenant_id: str) -> bool:
    return scope is ALL_TENANTS or scope == tenant_id


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class TenantPublic(BaseModel):
    id: str
    name: str
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(min_length=1, max_length=64)
    role: Role
    name: str | None = Field(default=None, max_length=200)
    policy_id: str | None = Field(default=None, min_length=1, max_length=64)
    """A policy of the key's tenant to run under; None: the tenant's default policy (or the built-in one)."""


class KeyPolicyUpdate(BaseModel):
    """`PUT /v1/keys/{id}/policy`: bind an existing key to a policy of its tenant, or (None) unbind it."""

    model_config = ConfigDict(extra="forbid")

    policy_id: str | None = Field(min_length=1, max_length=64)


class KeyPublic(BaseModel):
    id: str
    tenant_id: str
    role: Role
    name: str | None
    prefix: str
    created_at: datetime
    policy_id: str | None = None
    """The policy the key names; None: it runs under its tenant's default."""


class KeyCreated(KeyPublic):
    key: str
    """Shown once; only its hash is stored."""
