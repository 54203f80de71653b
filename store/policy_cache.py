"""Policies as a process reads them: every current policy and key binding, re-read at most once per TTL.

The API (rate limits) and preflight (the decision) ask for a key's policy on every request; with the cache that
costs a dict lookup, and a change made anywhere is in force in every process within `ttl_s`, as flags are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.policies import BUILT_IN_DEFAULT, PolicyDocument
from store.models import ApiKey, Policy


@dataclass(frozen=True)
class ActivePolicy:
    """The policy a key runs under."""

    id: str | None
    """None: the built-in default (the tenant has no default policy and the key names none)."""
    version: int | None
    document: PolicyDocument


BUILT_IN = ActivePolicy(id=None, version=None, document=BUILT_IN_DEFAULT)


@dataclass(frozen=True)
class _Snapshot:
    policies: dict[str, ActivePolicy]
    defaults: dict[str, ActivePolicy]
    """Tenant id -> its default policy."""
    bindings: dict[str, str]
    """Key id -> the policy it names."""


class PolicyCache:
    """One process's view of `policies` and the keys bound to them, shared by every request and activity."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._clock = clock
        self._snapshot = _Snapshot({}, {}, {})
        self._expires_at = float("-inf")
        self._generation = 0
        self._lock = asyncio.Lock()
        self._documents: dict[tuple[str, int], PolicyDocument] = {}
        """Parsed documents by (policy id, version): a version never changes, so each is parsed once."""

    def invalidate(self) -> None:
        """Forget what was read: the API calls it after its own change, so the change shows at once here."""
        self._generation += 1
        self._expires_at = float("-inf")

    async def for_key(self, tenant_id: str, key_id: str | None) -> ActivePolicy:
        """The key's own policy, else its tenant's default, else the built-in default."""
        snapshot = await self._fresh()
        if key_id is not None:
            bound = snapshot.bindings.get(key_id)
            if bound is not None and bound in snapshot.policies:
                return snapshot.policies[bound]
        return snapshot.defaults.get(tenant_id, BUILT_IN)

    async def get(self, policy_id: str) -> ActivePolicy | None:
        return (await self._fresh()).policies.get(policy_id)

    async def _fresh(self) -> _Snapshot:
        if self._clock() < self._expires_at:
            return self._snapshot
        async with self._lock:  # one read for every caller that found the snapshot stale
            if self._clock() >= self._expires_at:
                await self._refresh()
        return self._snapshot

    async def _refresh(self) -> None:
        generation = self._generation
        async with self._sessions() as session:
            rows = (await session.exec(select(Policy))).all()
            bound = (
                await session.exec(
                    select(ApiKey.id, ApiKey.policy_id).where(
                        col(ApiKey.policy_id).is_not(None), col(ApiKey.revoked_at).is_(None)
                    )
                )
            ).all()
        policies: dict[str, ActivePolicy] = {}
        defaults: dict[str, ActivePolicy] = {}
        for row in rows:
            document = self._documents.get((row.id, row.version))
            if document is None:
                document = self._documents[(row.id, row.version)] = PolicyDocument.model_validate(row.document)
            policy = ActivePolicy(id=row.id, version=row.version, document=document)
            policies[row.id] = policy
            if row.is_default:
                defaults[row.tenant_id] = policy
        self._snapshot = _Snapshot(policies, defaults, {key_id: policy_id for key_id, policy_id in bound if policy_id})
        if generation == self._generation:
            self._expires_at = self._clock() + self._ttl_s
