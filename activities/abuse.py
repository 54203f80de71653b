"""Abuse detection's I/O: the scorer preflight asks for a key's score, and the training workflow's activities.

`AbuseScorer` keeps, per process, each tenant's model (re-checked every `cache_ttl_s`, reloaded only when a newer
one was trained) and each key's score for `window_ttl_s`: a key sending 100 requests a second costs one window
query a second, and concurrent requests of one key share the query in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from domain.abuse import score_window, window_stats
from domain.abuse.features import WINDOW
from domain.abuse.model import MIN_TRAINING_WINDOWS, AbuseModel, train
from schemas.abuse import (
    AbuseScore,
    TenantsWithHistoryInput,
    TenantsWithHistoryOutput,
    TrainTenantInput,
    TrainTenantOutput,
)
from store.queries import abuse as queries

log = logging.getLogger("kintsugi.abuse")

UNREADABLE_MODEL = (ValueError, KeyError, OSError, zipfile.BadZipFile)
"""What loading a damaged or foreign `abuse_models` row raises (`AbuseModel.load`): the tenant is scored by the
heuristic until a new model is trained, rather than failing its jobs' preflight."""
MAX_CACHED_KEYS = 10_000
"""Expired key entries are swept once the cache holds this many."""


@dataclass
class _TenantModel:
    checked_at: float
    trained_at: datetime | None
    model: AbuseModel | None


@dataclass
class _KeyScore:
    expires_at: float
    score: asyncio.Task[AbuseScore]


class AbuseScorer:
    """A key's abuse score now, for preflight (when the tenant's policy has an `abuse` section and
    `enable_abuse_detection` is on; the caller applies the thresholds)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        cache_ttl_s: float = 5.0,
        window_ttl_s: float = 1.0,
        window: timedelta = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._cache_ttl_s = cache_ttl_s
        """How long a tenant's model is used before checking for a newer one."""
        self._window_ttl_s = window_ttl_s
        """How long a key's score is reused: its window moves by that much meanwhile."""
        self._window = window
        self._clock = clock
        self._models: dict[str, _TenantModel] = {}
        self._model_locks: dict[str, asyncio.Lock] = {}
        self._keys: dict[tuple[str, str | None], _KeyScore] = {}
        self.window_reads = 0
        """Window queries run (for tests and metrics)."""

    async def score(self, tenant_id: str, key_id: str | None, now: datetime) -> AbuseScore:
        """The key's score over the window ending at `now` (the window of `key_id=None`: jobs of the admin key)."""
        cache_key = (tenant_id, key_id)
        entry = self._keys.get(cache_key)
        if entry is None or self._clock() >= entry.expires_at or _failed(entry.score):
            self._sweep()
            task = asyncio.get_running_loop().create_task(self._compute(tenant_id, key_id, now))
            entry = self._keys[cache_key] = _KeyScore(self._clock() + self._window_ttl_s, task)
        # Shielded: a caller cancelled while waiting must not cancel the read the others wait on.
        return await asyncio.shield(entry.score)

    async def _compute(self, tenant_id: str, key_id: str | None, now: datetime) -> AbuseScore:
        model = await self._model(tenant_id)
        async with self._sessions() as session:
            sums = await queries.key_window(
                session, tenant_id=tenant_id, key_id=key_id, start=now - self._window, end=now
            )
        self.window_reads += 1
        return score_window(window_stats(self._window.total_seconds(), sums), model)

    async def _model(self, tenant_id: str) -> AbuseModel | None:
        cached = self._models.get(tenant_id)
        if cached is not None and self._clock() < cached.checked_at + self._cache_ttl_s:
            return cached.model
        lock = self._model_locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:  # one check per tenant at a time; the others find it fresh
            cached = self._models.get(tenant_id)
            if cached is not None and self._clock() < cached.checked_at + self._cache_ttl_s:
                return cached.model
            return await self._reload(tenant_id, cached)

    async def _reload(self, tenant_id: str, cached: _TenantModel | None) -> AbuseModel | None:
        checked_at = self._clock()
        async with self._sessions() as session:
            trained_at = await queries.abuse_model_trained_at(session, tenant_id)
            if cached is not None and trained_at == cached.trained_at:
                cached.checked_at = checked_at
                return cached.model
            row = await queries.load_abuse_model(session, tenant_id) if trained_at is not None else None
        model = None
        if row is not None:
            try:
                model = AbuseModel.load(row.model, row.stats)
            except UNREADABLE_MODEL as err:
                log.warning(
                    "tenant %s: abuse model of %s unreadable, scoring by heuristic: %r", tenant_id, trained_at, err
                )
        self._models[tenant_id] = _TenantModel(checked_at, trained_at, model)
        return model

    def _sweep(self) -> None:
        if len(self._keys) < MAX_CACHED_KEYS:
            return
        now = self._clock()
        for key in [key for key, entry in self._keys.items() if now >= entry.expires_at]:
            del self._keys[key]


def _failed(task: asyncio.Task[AbuseScore]) -> bool:
    """A read that failed is not reused: the next caller tries again."""
    return task.done() and (task.cancelled() or task.exception() is not None)


TENANT_PAGE = 100
"""Tenants listed per activity call: the workflow trains one page, then asks for the next."""
HISTORY = timedelta(days=7)
"""The history a tenant's model learns from: a full week, so weekdays and weekends are both normal."""


class AbuseTrainingActivities:
    """The training workflow's I/O: which tenants have history, and one tenant's training."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, window: timedelta = WINDOW) -> None:
        self._sessions = sessions
        self._window = window

    @activity.defn
    async def tenants_with_history(self, input: TenantsWithHistoryInput) -> TenantsWithHistoryOutput:
        async with self._sessions() as session:
            tenant_ids = await queries.tenants_with_history(
                session, start=input.since, end=input.until, after=input.after, limit=input.limit
            )
        return TenantsWithHistoryOutput(tenant_ids=tenant_ids)

    @activity.defn
    async def train_tenant(self, input: TrainTenantInput) -> TrainTenantOutput:
        """Train the tenant's model on its windows in [since, until) and store it (replacing the last one). A
        tenant with too little history keeps what it had: the heuristic, or a model from a busier week."""
        window_s = self._window.total_seconds()
        async with self._sessions() as session:
            sums = await queries.history_windows(
                session, tenant_id=input.tenant_id, start=input.since, end=input.until, window_s=int(window_s)
            )
        windows = [window_stats(window_s, row) for row in sums]
        if len(windows) < MIN_TRAINING_WINDOWS:
            return TrainTenantOutput(tenant_id=input.tenant_id, outcome="too_little_history", windows=len(windows))
        # Seeded by the tenant: a retried activity trains the same model. Off the event loop: fitting takes
        # about a second of CPU, which would stall every other activity of this worker.
        model = await asyncio.to_thread(train, windows, seed=zlib.crc32(input.tenant_id.encode()))
        blob, stats = model.dump()
        async with self._sessions() as session, session.begin():
            await queries.save_abuse_model(
                session,
                tenant_id=input.tenant_id,
                trained_at=input.until,
                samples=len(windows),
                model=blob,
                stats=stats,
            )
        return TrainTenantOutput(tenant_id=input.tenant_id, outcome="trained", windows=len(windows))
