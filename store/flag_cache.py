"""Feature flags as a process reads them: every row, re-read at most once per TTL, resolved per tenant.

The hot path asks for a tenant's flags on every job; with the cache that costs a dict lookup, and a change
made anywhere is in force in every process within `ttl_s` (DESIGN.md promises 5 s).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.flags import (
    FlagRow,
    FlagValue,
    default_flags,
    enabled_flags,
    exporters_configured,
    resolve_flags,
)
from store.queries.flags import flag_rows


def environment_flag_defaults(environ: Mapping[str, str] = os.environ) -> dict[str, bool]:
    """Each flag's default in this environment: the exporters' flags follow whether their endpoint is set."""
    return default_flags(exporters_configured(environ))


class FlagCache:
    """One process's view of `feature_flags`, shared by every request or activity of that process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        defaults: Mapping[str, bool],
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._defaults = dict(defaults)
        self._ttl_s = ttl_s
        self._clock = clock
        self._rows: tuple[FlagRow, ...] = ()
        self._expires_at = float("-inf")
        self._generation = 0
        """Bumped by `invalidate`: a read begun before it must not be taken as fresh."""
        self._resolved: dict[str, dict[str, FlagValue]] = {}
        self._enabled: dict[str, frozenset[str]] = {}
        self._lock = asyncio.Lock()
        self.reads = 0
        """How many times the table was read (for tests and metrics)."""

    @property
    def defaults(self) -> Mapping[str, bool]:
        return self._defaults

    def invalidate(self) -> None:
        """Forget the rows, so the next caller reads them: the API calls it after its own change, so a toggle
        shows at once in the process that made it (other processes see it within the TTL)."""
        self._generation += 1
        self._expires_at = float("-inf")

    async def rows(self) -> tuple[FlagRow, ...]:
        if self._clock() < self._expires_at:
            return self._rows
        # One read for every caller that found the rows stale: the others wait here, then find them fresh.
        async with self._lock:
            if self._clock() >= self._expires_at:
                await self._refresh()
        return self._rows

    async def _refresh(self) -> None:
        generation = self._generation
        async with self._sessions() as session:
            stored = await flag_rows(session)
        rows = tuple(FlagRow(row.key, row.tenant_id, row.enabled, row.rollout_percent) for row in stored)
        self.reads += 1
        self._rows = rows
        self._resolved.clear()
        self._enabled.clear()
        # Invalidated while reading: the rows may predate the change, so the next caller reads again.
        if generation == self._generation:
            self._expires_at = self._clock() + self._ttl_s

    def _values(self, tenant_id: str) -> dict[str, FlagValue]:
        values = self._resolved.get(tenant_id)
        if values is None:
            values = self._resolved[tenant_id] = resolve_flags(self._rows, tenant_id, self._defaults)
        return values

    async def for_tenant(self, tenant_id: str) -> dict[str, FlagValue]:
        """Every known flag's value for `tenant_id` (its override, else the global value, else the default)."""
        await self.rows()
        return dict(self._values(tenant_id))

    async def enabled(self, tenant_id: str) -> frozenset[str]:
        """The keys of the flags on for `tenant_id`: the hot path's question, answered from memory."""
        await self.rows()
        on = self._enabled.get(tenant_id)
        if on is None:
            on = self._enabled[tenant_id] = enabled_flags(self._values(tenant_id))
        return on
