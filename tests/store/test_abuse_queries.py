"""Abuse detection on SQLite and PostgreSQL: the SQL sums agree with the domain's own on the same requests, the
training activity stores a tenant's model, and `AbuseScorer` reads windows and models with its caches.

PostgreSQL sessions here run in Asia/Kolkata (`migrated_sessions`), so an off-hours count taken in the server's
zone instead of UTC shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from activities.abuse import AbuseScorer, AbuseTrainingActivities
from domain.abuse import window_stats
from domain.abuse.features import KeyWindow, RequestRecord, WindowStats, summarize
from domain.abuse.model import MIN_TRAINING_WINDOWS, AbuseModel
from schemas.abuse import TenantsWithHistoryInput, TrainTenantInput
from store.engine import AsyncSession
from store.models import EventLog, ModelCostLog, PromptSimilarityLog, Tenant
from store.queries import abuse as queries

NOW = datetime(2026, 11, 4, 3, 10, tzinfo=UTC)
"""03:10 UTC: 08:40 in Kolkata, so off-hours in UTC but not in the PostgreSQL session's zone."""
START = NOW - timedelta(minutes=10)


@dataclass
class Job:
    """One request and the rows a real job leaves: its events, its cost row, its similarity row."""

    job_id: str
    at: datetime
    key_id: str | None = "k1"
    tenant_id: str = "t1"
    model: str = "fast"
    tokens: tuple[int, int] | None = (100, 50)
    """(input, output) billed; None: never answered."""
    cache_hit: bool = False
    duplicate: bool = False
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Events after `job.started`: (type, payload)."""
    failed: bool = False
    violated: bool = False
    """What the domain should make of `events` (the expected record)."""

    def record(self) -> RequestRecord:
        answered = self.tokens is not None and not self.cache_hit
        inp, out = self.tokens if answered and self.tokens else (0, 0)
        return RequestRecord(self.at, self.model, inp, out, answered, self.failed, self.violated, self.duplicate)


def rows(job: Job) -> list[Any]:
    later = job.at + timedelta(seconds=1)
    out: list[Any] = [
        EventLog(
            event_key=f"{job.job_id}:started",
            tenant_id=job.tenant_id,
            job_id=job.job_id,
            key_id=job.key_id,
            type="job.started",
            payload={"model": job.model},
            created_at=job.at,
        )
    ]
    for i, (kind, payload) in enumerate(job.events):
        out.append(
            EventLog(
                event_key=f"{job.job_id}:{i}",
                tenant_id=job.tenant_id,
                job_id=job.job_id,
                key_id=job.key_id,
                type=kind,
                payload=payload,
                created_at=later,
            )
        )
    if job.tokens is not None:
        out.append(
            ModelCostLog(
                idempotency_key=f"{job.job_id}:1",
                job_id=job.job_id,
                tenant_id=job.tenant_id,
                key_id=job.key_id,
                provider="up",
                model=job.model,
                input_tokens=0 if job.cache_hit else job.tokens[0],
                output_tokens=0 if job.cache_hit else job.tokens[1],
                outcome="cache_hit" if job.cache_hit else "success",
                created_at=later,
            )
        )
    if job.duplicate:
        out.append(
            PromptSimilarityLog(
                job_id=job.job_id,
                matched_job_id="earlier",
                score=1.0,
                method="exact",
                tenant_id=job.tenant_id,
                key_id=job.key_id,
                created_at=later,
            )
        )
    return out


async def write(sessions: async_sessionmaker[AsyncSession], jobs: Iterable[Job]) -> None:
    async with sessions() as session, session.begin():
        session.add_all([row for job in jobs for row in rows(job)])


def minute(m: float) -> datetime:
    return START + timedelta(minutes=m)


KEY_JOBS = [
    Job("answered", minute(1), tokens=(120, 40)),
    Job("long-prompt", minute(2), model="smart", tokens=(60_000, 900)),
    Job("dup", minute(3), tokens=(120, 40), duplicate=True),
    Job("cached", minute(3.5), tokens=(300, 10), cache_hit=True, duplicate=True),
    Job("bad-request", minute(4), tokens=None, events=[("job.failed", {"code": "bad_request"})], failed=True),
    Job("outage", minute(4.5), tokens=None, events=[("job.failed", {"code": "upstream_error"})]),
    Job(
        "blocked",
        minute(5),
        tokens=None,
        events=[
            ("guardrail.triggered", {"guardrail": "injection", "stage": "input", "action": "block", "kinds": []}),
            ("policy.refused", {"code": "guardrail_blocked"}),
            ("job.failed", {"code": "guardrail_blocked"}),
        ],
        failed=True,
        violated=True,
    ),
    Job(
        "redacted",
        minute(6),
        events=[
            ("guardrail.triggered", {"guardrail": "pii", "stage": "input", "action": "redact", "kinds": ["email"]})
        ],
    ),
    Job(
        "throttled",
        minute(7),
        tokens=None,
        events=[("policy.refused", {"code": "abuse_blocked"}), ("job.failed", {"code": "abuse_blocked"})],
    ),
    Job(
        "no-model-allowed",
        minute(8),
        tokens=None,
        events=[("policy.refused", {"code": "model_not_allowed"})],
        violated=True,
    ),
    Job("started-before", minute(-0.5), events=[("job.failed", {"code": "bad_request"})], failed=True),
]
NOISE = [
    Job("other-key", minute(2), key_id="k2"),
    Job("admin-key", minute(2), key_id=None),
    Job("other-tenant", minute(2), tenant_id="t2"),
    Job("later", NOW + timedelta(seconds=1)),
]


async def test_a_keys_window_sums_as_the_domain_does(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    await write(migrated_sessions, [*KEY_JOBS, *NOISE])

    async with migrated_sessions() as session:
        sums = await queries.key_window(session, tenant_id="t1", key_id="k1", start=START, end=NOW)

    expected = summarize(KeyWindow(START, NOW, [job.record() for job in KEY_JOBS]))
    assert window_stats(600, sums) == expected
    # What that means, spelled out: 10 requests; the bad request and the guardrail block are the key's errors,
    # the outage and our own throttling are not; the block and the disallowed model are its violations.
    assert (expected.requests, expected.failed, expected.violated, expected.near_duplicates) == (10, 2, 2, 2)
    assert (expected.answered, expected.models, expected.off_hours) == (4, 2, 10)


async def test_the_admin_keys_window_is_its_own(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    await write(migrated_sessions, [*KEY_JOBS, *NOISE])

    async with migrated_sessions() as session:
        sums = await queries.key_window(session, tenant_id="t1", key_id=None, start=START, end=NOW)

    assert (sums["requests"], sums["answered"]) == (1, 1)


async def test_off_hours_are_counted_in_utc(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    # 21:00 UTC is 02:30 in Kolkata: working hours in UTC.
    evening = datetime(2026, 11, 3, 21, 0, tzinfo=UTC)
    await write(migrated_sessions, [Job("evening", evening + timedelta(minutes=1))])

    async with migrated_sessions() as session:
        sums = await queries.key_window(
            session, tenant_id="t1", key_id="k1", start=evening, end=evening + timedelta(minutes=10)
        )

    assert (sums["requests"], sums["off_hours"]) == (1, 0)


async def test_an_empty_window_sums_to_zero(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    async with migrated_sessions() as session:
        sums = await queries.key_window(session, tenant_id="t1", key_id="k1", start=START, end=NOW)

    assert window_stats(600, sums) == WindowStats(window_s=600)


async def test_history_is_cut_into_each_keys_windows(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    base = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    jobs = [
        Job(f"{key}-{i}", base + timedelta(minutes=3 * i), key_id=key, tokens=(100 + 10 * i, 20), duplicate=i % 4 == 0)
        for key in ("k1", "k2", None)
        for i in range(12)  # 36 minutes: windows 9:00, 9:10, 9:20, 9:30
    ]
    await write(migrated_sessions, [*jobs, Job("other-tenant", base, tenant_id="t2")])

    async with migrated_sessions() as session:
        sums = await queries.history_windows(
            session, tenant_id="t1", start=base, end=base + timedelta(hours=1), window_s=600
        )

    expected = []
    for key in ("k1", "k2", None):
        records = [job.record() for job in jobs if job.key_id == key]
        for w in range(4):
            start = base + timedelta(minutes=10 * w)
            expected.append(summarize(KeyWindow(start, start + timedelta(minutes=10), records)))
    assert sorted(map(repr, (window_stats(600.0, row) for row in sums))) == sorted(map(repr, expected))


async def test_tenants_with_history_page_through_those_with_recent_jobs(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with migrated_sessions() as session, session.begin():
        session.add_all([Tenant(id=f"t{i}", name=f"tenant {i}") for i in range(1, 6)])
    old = NOW - timedelta(days=30)
    await write(
        migrated_sessions,
        [
            Job("a", minute(1), tenant_id="t1"),
            Job("b", old, tenant_id="t2"),
            Job("c", minute(1), tenant_id="t3"),
            Job("d", minute(1), tenant_id="t4"),
        ],
    )
    since = NOW - timedelta(days=7)

    async with migrated_sessions() as session:
        first = await queries.tenants_with_history(session, start=since, end=NOW, after=None, limit=2)
        second = await queries.tenants_with_history(session, start=since, end=NOW, after=first[-1], limit=2)

    assert (first, second) == (["t1", "t3"], ["t4"])


async def test_a_saved_model_replaces_the_last_one(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    for trained_at, blob in ((NOW, b"first"), (NOW + timedelta(hours=1), b"second")):
        async with migrated_sessions() as session, session.begin():
            await queries.save_abuse_model(
                session, tenant_id="t1", trained_at=trained_at, samples=3, model=blob, stats={"k": 1}
            )

    async with migrated_sessions() as session:
        assert await queries.abuse_model_trained_at(session, "t1") == NOW + timedelta(hours=1)
        assert await queries.abuse_model_trained_at(session, "t2") is None
        row = await queries.load_abuse_model(session, "t1")
    assert row is not None and (row.model, row.stats) == (b"second", {"k": 1})


# --- training -------------------------------------------------------------------------------------------


def people(tenant_id: str, windows: int, *, start: datetime = NOW - timedelta(days=2)) -> list[Job]:
    """`windows` ten-minute windows of ordinary traffic over two keys: 2-3 requests each, varied prompts."""
    jobs = []
    for w in range(windows):
        at = start + timedelta(minutes=10 * (w // 2))
        for i in range(2 + w % 2):
            prompt = 200 + (w * 37 + i * 91) % 900
            jobs.append(
                Job(
                    f"{tenant_id}-{w}-{i}",
                    at + timedelta(minutes=3 * i),
                    key_id=f"k{w % 2}",
                    tenant_id=tenant_id,
                    tokens=(prompt, 80),
                    duplicate=(w + i) % 9 == 0,
                )
            )
    return jobs


async def test_training_stores_a_model_for_a_tenant_with_enough_history(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write(migrated_sessions, people("busy", MIN_TRAINING_WINDOWS + 20) + people("quiet", 30))
    training = AbuseTrainingActivities(migrated_sessions)
    since = NOW - timedelta(days=7)

    busy = await training.train_tenant(TrainTenantInput(tenant_id="busy", since=since, until=NOW))
    quiet = await training.train_tenant(TrainTenantInput(tenant_id="quiet", since=since, until=NOW))

    assert (busy.outcome, busy.windows) == ("trained", MIN_TRAINING_WINDOWS + 20)
    assert (quiet.outcome, quiet.windows) == ("too_little_history", 30)
    async with migrated_sessions() as session:
        row = await queries.load_abuse_model(session, "busy")
        assert await queries.load_abuse_model(session, "quiet") is None
    assert row is not None and row.trained_at == NOW and row.samples == MIN_TRAINING_WINDOWS + 20
    assert AbuseModel.load(row.model, row.stats).samples == MIN_TRAINING_WINDOWS + 20


async def test_the_tenants_to_train_are_listed(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    async with migrated_sessions() as session, session.begin():
        session.add(Tenant(id="busy", name="busy"))
    await write(migrated_sessions, people("busy", 2))

    listed = await AbuseTrainingActivities(migrated_sessions).tenants_with_history(
        TenantsWithHistoryInput(since=NOW - timedelta(days=7), until=NOW, limit=10)
    )

    assert listed.tenant_ids == ["busy"]


# --- the scorer -----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def burst(key_id: str, n: int = 300) -> list[Job]:
    """A script: n requests in ten minutes, one template, mostly failing."""
    return [
        Job(
            f"{key_id}-{i}",
            START + timedelta(seconds=2 * i),
            key_id=key_id,
            tokens=None,
            events=[("job.failed", {"code": "bad_request"})],
            failed=True,
        )
        for i in range(n)
    ]


async def test_without_a_model_the_heuristic_scores_the_keys_window(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write(migrated_sessions, [*KEY_JOBS, *burst("script")])
    scorer = AbuseScorer(migrated_sessions)

    person = await scorer.score("t1", "k1", NOW)
    script = await scorer.score("t1", "script", NOW)

    assert person.method == script.method == "heuristic"
    assert person.features["requests_per_min"] == pytest.approx(1.0)
    assert script.features["error_rate"] == 1.0
    assert script.score >= 0.95 > person.score


async def test_a_keys_score_is_reused_for_a_second_and_shared_by_concurrent_requests(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write(migrated_sessions, KEY_JOBS)
    clock = Clock()
    scorer = AbuseScorer(migrated_sessions, clock=clock)

    burst_of_calls = await asyncio.gather(*(scorer.score("t1", "k1", NOW) for _ in range(20)))
    assert scorer.window_reads == 1
    assert len({s.score for s in burst_of_calls}) == 1

    clock.now += 0.5
    await scorer.score("t1", "k1", NOW)
    assert scorer.window_reads == 1

    clock.now += 0.6
    await scorer.score("t1", "k1", NOW + timedelta(seconds=1.1))
    await scorer.score("t1", "k2", NOW)
    assert scorer.window_reads == 3


async def test_a_newly_trained_model_is_used_within_the_cache_ttl(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write(migrated_sessions, people("t1", MIN_TRAINING_WINDOWS + 10, start=NOW - timedelta(days=3)))
    clock = Clock()
    scorer = AbuseScorer(migrated_sessions, cache_ttl_s=5.0, clock=clock)
    assert (await scorer.score("t1", "k1", NOW)).method == "heuristic"

    await AbuseTrainingActivities(migrated_sessions).train_tenant(
        TrainTenantInput(tenant_id="t1", since=NOW - timedelta(days=7), until=NOW)
    )
    clock.now += 2
    assert (await scorer.score("t1", "k1", NOW)).method == "heuristic"  # the model is checked every 5 s
    clock.now += 4
    assert (await scorer.score("t1", "k1", NOW)).method == "model"


async def test_an_unreadable_model_leaves_the_tenant_to_the_heuristic(
    migrated_sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    async with migrated_sessions() as session, session.begin():
        await queries.save_abuse_model(session, tenant_id="t1", trained_at=NOW, samples=1, model=b"junk", stats={})

    with caplog.at_level(logging.WARNING, logger="kintsugi.abuse"):
        scored = await AbuseScorer(migrated_sessions).score("t1", "k1", NOW)

    assert scored.method == "heuristic"
    assert "unreadable" in caplog.text
