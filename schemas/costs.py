"""The spend report (`GET /v1/costs`, `store.queries.cost_report`): a tenant's `model_cost_logs` rows in a time
window, summed per group."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CostGroupBy = Literal["route", "model", "key", "day"]
"""`route`: the model alias the app sent; `model`: the deployment's `provider/model`; `key`: the API key's id;
`day`: the UTC date, `YYYY-MM-DD`."""

UNKNOWN_ROUTE = "(unknown)"
"""The group of rows billed before the route was recorded."""
ADMIN_KEY = "(admin)"
"""The group of rows without a key id: jobs of the environment's admin key, and rows billed before key ids were
recorded."""


class CostTotals(BaseModel):
    spend_usd: float
    """What the priced calls cost; an unpriced call adds nothing here and one to `unpriced_calls`."""
    calls: int
    """Every row: priced, unpriced and cache hits."""
    input_tokens: int
    output_tokens: int
    unpriced_calls: int
    cache_hits: int
    saved_usd: float
    """What the cache hits would have cost."""


class CostGroup(CostTotals):
    group: str


class CostReport(BaseModel):
    # `from` is a Python keyword: the fields are `start`/`end`, and the JSON says `from`/`to`.
    model_config = ConfigDict(populate_by_name=True)

    group_by: CostGroupBy
    start: datetime = Field(alias="from")
    """Inclusive."""
    end: datetime = Field(alias="to")
    """Exclusive."""
    data: list[CostGroup]
    """By spend, highest first, then by group; by date for `day`."""
    total: CostTotals
    """The sum of `data`: every row of the tenant in the window."""
