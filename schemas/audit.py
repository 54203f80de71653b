"""The audit log: who changed what, as the API returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel

FLAG_SET = "flag.set"
FLAG_DELETE = "flag.delete"
"""Audit actions of feature flags (`target` = the flag's key)."""
POLICY_CREATE = "policy.create"
POLICY_UPDATE = "policy.update"
POLICY_DELETE = "policy.delete"
"""Audit actions of policies (`target` = the policy's id; before/after: name, default, version, document)."""
KEY_BIND_POLICY = "key.bind_policy"
"""A key named a policy, or stopped naming one (`target` = the key's id; before/after: `{policy_id}`)."""


class Actor(NamedTuple):
    """Who made a change: the acting key's tenant and id (None for the environment's admin key)."""

    tenant_id: str
    key_id: str | None


class AuditEntry(BaseModel):
    id: int
    tenant_id: str | None
    """The tenant the change applies to; None for a platform-wide change (a global flag)."""
    actor_key_id: str | None
    """None for the environment's admin key."""
    action: str
    target: str
    before: dict[str, Any] | None
    """None when the thing did not exist before the change."""
    after: dict[str, Any] | None
    """None when the change removed it."""
    created_at: datetime


class AuditList(BaseModel):
    data: list[AuditEntry]
    next_cursor: str | None = None
