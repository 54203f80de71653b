"""Feature flags as the API accepts and returns them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

FlagSource = Literal["default", "global", "tenant"]
"""Which level decided a flag's value: the built-in default, the global row, or the tenant's override."""


class FlagUpdate(BaseModel):
    """`PUT /v1/flags/{key}`: the whole setting of one scope (an omitted `rollout_percent` means 100)."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool
    tenant_id: str | None = Field(default=None, min_length=1, max_length=64)
    """The tenant whose override this is. Omitted: the caller's own tenant for a tenant admin, the global value
    for the platform admin."""
    rollout_percent: int = Field(default=100, ge=0, le=100, strict=True)
    """The share of tenants (stable per tenant) the flag is on for when `enabled`."""


class FlagPublic(BaseModel):
    key: str
    enabled: bool
    source: FlagSource
    rollout_percent: int
    description: str
    built: bool
    """False: the flag is listed and settable but nothing reads it yet."""


class FlagList(BaseModel):
    data: list[FlagPublic]
