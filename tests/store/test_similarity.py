"""store/queries/similarity.py on SQLite and PostgreSQL: matching, recording and the near-duplicate share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select

from domain.similarity import BANDS, SimilarityMatch, prompt_print, prompt_text
from store import queries
from store.engine import AsyncSession
from store.models import PromptBand, PromptSignature, PromptSimilarityLog, ResponseCacheEntry
from tests.support.prompts import PROMPT, UNRELATED, printed

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def record(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    text: str,
    *,
    tenant_id: str = "t1",
    key_id: str | None = "k1",
    at: datetime = T0,
    threshold: float = 0.9,
) -> SimilarityMatch | None:
    async with sessions() as session, session.begin():
        return await queries.record_prompt(
            session,
            job_id=job_id,
            tenant_id=tenant_id,
            key_id=key_id,
            print_=printed(text),
            threshold=threshold,
            created_at=at,
        )


async def count(
    sessions: async_sessionmaker[AsyncSession],
    model: type[PromptSignature] | type[PromptBand] | type[PromptSimilarityLog],
    job_id: str,
) -> int:
    async with sessions() as session:
        stmt = select(func.count()).select_from(model).where(model.job_id == job_id)
        return int((await session.exec(stmt)).one())


async def test_the_first_prompt_matches_nothing_and_is_recorded(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await record(migrated_sessions, "job-1", PROMPT) is None

    assert await count(migrated_sessions, PromptSignature, "job-1") == 1
    assert await count(migrated_sessions, PromptBand, "job-1") == BANDS
    assert await count(migrated_sessions, PromptSimilarityLog, "job-1") == 0


async def test_an_identical_prompt_matches_the_earliest_exactly(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await record(migrated_sessions, "job-1", PROMPT, at=T0)
    await record(migrated_sessions, "job-2", "  " + PROMPT.upper(), at=T0 + timedelta(seconds=1))

    match = await record(migrated_sessions, "job-3", PROMPT, at=T0 + timedelta(seconds=2))

    assert match == SimilarityMatch(matched_job_id="job-1", score=1.0, method="exact")
    async with migrated_sessions() as session:
        log = (await session.exec(select(PromptSimilarityLog).where(PromptSimilarityLog.job_id == "job-3"))).one()
    assert (log.matched_job_id, log.score, log.method, log.tenant_id, log.key_id) == ("job-1", 1.0, "exact", "t1", "k1")


async def test_an_exact_match_of_a_near_duplicate_is_that_near_duplicate(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    edited = PROMPT.replace("Europe", "Asia")
    await record(migrated_sessions, "job-1", PROMPT)
    await record(migrated_sessions, "job-2", edited)  # logged as a minhash match of job-1

    match = await record(migrated_sessions, "job-3", edited)

    assert match == SimilarityMatch(matched_job_id="job-2", score=1.0, method="exact")


async def test_a_near_duplicate_matches_by_minhash(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    await record(migrated_sessions, "job-1", PROMPT)
    await record(migrated_sessions, "job-other", UNRELATED)

    match = await record(migrated_sessions, "job-2", PROMPT.replace("Europe", "Asia"))

    assert match is not None
    assert match.matched_job_id == "job-1"
    assert match.method == "minhash"
    assert 0.9 <= match.score < 1.0


async def test_the_threshold_decides_a_near_match(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    await record(migrated_sessions, "job-1", PROMPT)
    edited = PROMPT.replace("Europe", "Asia")

    assert await record(migrated_sessions, "job-2", edited, threshold=0.999) is None
    assert await count(migrated_sessions, PromptSimilarityLog, "job-2") == 0


async def test_an_unrelated_prompt_matches_nothing(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    await record(migrated_sessions, "job-1", PROMPT)

    assert await record(migrated_sessions, "job-2", UNRELATED) is None
    assert await count(migrated_sessions, PromptSimilarityLog, "job-2") == 0


async def test_another_tenants_prompts_never_match(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    await record(migrated_sessions, "job-a", PROMPT, tenant_id="t1")

    assert await record(migrated_sessions, "job-b", PROMPT, tenant_id="t2") is None
    assert await record(migrated_sessions, "job-c", PROMPT.replace("Europe", "Asia"), tenant_id="t2") is not None
    match = await record(migrated_sessions, "job-d", PROMPT, tenant_id="t1")
    assert match is not None
    assert match.matched_job_id == "job-a"


async def test_recording_twice_writes_once_and_returns_the_same_match(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await record(migrated_sessions, "job-1", PROMPT, at=T0)
    first = await record(migrated_sessions, "job-2", PROMPT.replace("Europe", "Asia"), at=T0 + timedelta(seconds=1))
    # A closer prompt recorded in between must not change what the retried job reports.
    await record(migrated_sessions, "job-3", PROMPT.replace("Europe", "Asia"), at=T0 + timedelta(seconds=2))

    again = await record(migrated_sessions, "job-2", PROMPT.replace("Europe", "Asia"), at=T0 + timedelta(seconds=3))

    assert first is not None
    assert again == first
    assert await count(migrated_sessions, PromptSignature, "job-2") == 1
    assert await count(migrated_sessions, PromptBand, "job-2") == BANDS
    assert await count(migrated_sessions, PromptSimilarityLog, "job-2") == 1


async def test_recording_an_unmatched_prompt_twice_still_matches_nothing(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await record(migrated_sessions, "job-1", PROMPT) is None
    assert await record(migrated_sessions, "job-1", PROMPT) is None
    assert await count(migrated_sessions, PromptSimilarityLog, "job-1") == 0


async def test_a_prompt_signed_without_logging_is_recorded_but_not_matched(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await record(migrated_sessions, "job-1", PROMPT)
    async with migrated_sessions() as session, session.begin():
        match = await queries.record_prompt(
            session,
            job_id="job-2",
            tenant_id="t1",
            key_id="k1",
            print_=printed(PROMPT),
            threshold=0.9,
            created_at=T0,
            log_match=False,
        )

    assert match is None
    assert await count(migrated_sessions, PromptSignature, "job-2") == 1
    assert await count(migrated_sessions, PromptBand, "job-2") == BANDS
    assert await count(migrated_sessions, PromptSimilarityLog, "job-2") == 0
    # Signed prompts are still found by later ones.
    third = await record(migrated_sessions, "job-3", PROMPT.replace("Europe", "Asia"))
    assert third is not None
    assert third.method == "minhash"


async def test_an_empty_prompt_is_neither_matched_nor_recorded(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    empty = prompt_print(prompt_text([]))
    for job_id in ("job-1", "job-2"):
        async with migrated_sessions() as session, session.begin():
            match = await queries.record_prompt(
                session, job_id=job_id, tenant_id="t1", key_id=None, print_=empty, threshold=0.9, created_at=T0
            )
        assert match is None
    assert await count(migrated_sessions, PromptSignature, "job-2") == 0


async def test_find_similar_can_be_restricted_to_some_jobs(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    await record(migrated_sessions, "job-1", PROMPT)
    await record(migrated_sessions, "job-2", PROMPT.replace("Europe", "Asia"))
    async with migrated_sessions() as session, session.begin():
        session.add(
            ResponseCacheEntry(
                job_id="job-2",
                tenant_id="t1",
                route="fast",
                fingerprint="f",
                exact_hash="h",
                answer={},
                usage={},
                provider="sim",
                model="sim-1",
                expires_at=T0 + timedelta(hours=1),
            )
        )
    cached = select(ResponseCacheEntry.job_id).where(ResponseCacheEntry.tenant_id == "t1")

    async with migrated_sessions() as session:
        unrestricted = await queries.find_similar(session, tenant_id="t1", print_=printed(PROMPT), threshold=0.9)
        among_cached = await queries.find_similar(
            session, tenant_id="t1", print_=printed(PROMPT), threshold=0.9, among=cached
        )
        among_list = await queries.find_similar(
            session, tenant_id="t1", print_=printed(PROMPT), threshold=0.9, among=["job-2"]
        )
        unrelated = await queries.find_similar(
            session, tenant_id="t1", print_=printed(UNRELATED), threshold=0.9, among=["job-1", "job-2"]
        )

    assert unrestricted == SimilarityMatch(matched_job_id="job-1", score=1.0, method="exact")
    assert among_cached is not None
    assert (among_cached.matched_job_id, among_cached.method) == ("job-2", "minhash")
    assert among_list == among_cached
    assert unrelated is None


async def test_near_duplicate_share_over_a_window(migrated_sessions: async_sessionmaker[AsyncSession]) -> None:
    minute = timedelta(minutes=1)
    await record(migrated_sessions, "job-0", PROMPT, at=T0 - minute)  # before the window: the original
    await record(migrated_sessions, "job-1", PROMPT, at=T0)  # exact
    await record(migrated_sessions, "job-2", PROMPT.replace("Europe", "Asia"), at=T0 + minute)  # near
    await record(migrated_sessions, "job-3", UNRELATED, at=T0 + 2 * minute)  # new
    await record(migrated_sessions, "job-4", UNRELATED + " Thanks.", at=T0 + 3 * minute)  # near
    await record(migrated_sessions, "job-5", PROMPT, at=T0 + 4 * minute, key_id="k2")  # another key
    await record(migrated_sessions, "job-6", PROMPT, at=T0 + 4 * minute, tenant_id="t2")  # another tenant
    await record(migrated_sessions, "job-7", PROMPT, at=T0 + 10 * minute)  # after the window (end is exclusive)

    async with migrated_sessions() as session:
        share = await queries.near_duplicate_share(session, tenant_id="t1", key_id="k1", start=T0, end=T0 + 10 * minute)
        other_key = await queries.near_duplicate_share(
            session, tenant_id="t1", key_id="k2", start=T0, end=T0 + 10 * minute
        )
        no_key = await queries.near_duplicate_share(
            session, tenant_id="t1", key_id=None, start=T0, end=T0 + 10 * minute
        )
        empty_window = await queries.near_duplicate_share(
            session, tenant_id="t1", key_id="k1", start=T0 - timedelta(days=2), end=T0 - timedelta(days=1)
        )

    assert share == pytest.approx(3 / 4)
    assert other_key == 1.0
    assert no_key == 0.0
    assert empty_window == 0.0
