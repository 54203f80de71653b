"""`prompt_signatures`, `prompt_bands`, `prompt_similarity_logs`: which earlier prompt of its tenant a job's
prompt repeats (`domain.similarity` makes the prints; this finds and records the matches).

Runs in every job's postflight, so a lookup is at most two statements, each bounded whatever the tenant's
size: any exact duplicate (one indexed row, which leads to the first one), else the signatures of the
likeliest band candidates.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, bindparam, column, func, insert, table, union_all
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select as ModelSelect

from domain.similarity import PromptPrint, SimilarityMatch, similarity
from store.models import PromptBand, PromptSignature, PromptSimilarityLog
from store.queries._inserts import insert_ignoring_duplicates, table_of

ROWS_PER_BAND = 32
"""Rows read per band hash: a band shared by a million prompts (a long common system prompt) still costs 32
index entries, so one lookup reads at most BANDS x 32 = 1,024 band rows. Which 32 is left to the index (in
practice the oldest): a true near-duplicate shares ~BANDS x s^ROWS ≈ 14 bands at s = 0.9, and the rarer of
them are read in full, so it still ranks among the candidates. Measured on 2,000 prompts of which 500 share
a 150-word system prompt: 40 of the 45 new templated prompts that have a match ≥ 0.9 find one (33 with 16
rows per band); the cost is in the signatures fetched, not in these rows."""
CANDIDATE_CAP = 32
"""Signatures fetched and compared per lookup, chosen by most shared bands (a pair of Jaccard s shares
BANDS x s^ROWS bands on average, so more shared bands = likelier match), then most recent. Each signature
fetched costs its JSON decoding and a comparison, ~30 µs; the recall this cap gives is under ROWS_PER_BAND."""

JobIds = Select[Any] | Collection[str]
"""Job ids as a subquery selecting one column (e.g. the unexpired `response_cache` rows of a route) or a list."""

CandidateRows = ModelSelect[int | None, str, Sequence[Any]]
ExactRows = ModelSelect[str, str, str]


async def find_similar(
    session: AsyncSession,
    *,
    tenant_id: str,
    print_: PromptPrint,
    threshold: float,
    among: JobIds | None = None,
    exclude_job_id: str | None = None,
) -> SimilarityMatch | None:
    """The tenant's best recorded prompt equal to `print_`, or at least `threshold` similar to it.

    An exact duplicate wins (score 1.0; the first recorded one); otherwise the candidate with the highest
    estimated similarity ≥ threshold (ties: the first recorded). Only the tenant's own prompts are seen.

    Args:
        among: restricts the matches to these job ids: a response-cache lookup passes
            `select(ResponseCacheEntry.job_id).where(...)` so only prompts with a live answer match.
        exclude_job_id: a job never matches itself.

    Returns:
        None for an empty print, or when nothing matches.
    """
    if print_.empty:
        return None
    exact = await _first_exact(session, tenant_id, print_.exact_hash, among, exclude_job_id)
    if exact is not None:
        return SimilarityMatch(matched_job_id=exact, score=1.0, method="exact")
    best: tuple[float, int, str] | None = None
    for row_id, job_id, signature in await _candidates(session, tenant_id, print_.bands, among, exclude_job_id):
        score = similarity(print_.signature, signature)
        if score >= threshold and (best is None or (-score, row_id) < (-best[0], best[1])):
            best = (score, row_id, job_id)
    if best is None:
        return None
    return SimilarityMatch(matched_job_id=best[2], score=best[0], method="minhash")


async def record_prompt(
    session: AsyncSession,
    *,
    job_id: str,
    tenant_id: str,
    key_id: str | None,
    print_: PromptPrint,
    threshold: float,
    created_at: datetime,
    log_match: bool = True,
    keep_bands: bool = False,
) -> SimilarityMatch | None:
    """Match a job's prompt against its tenant's earlier ones (`match_prompt`), then record it (`write_prompt`).

    Args:
        log_match: False only signs the prompt (signature and bands, which the response cache finds answers
            by) when similarity logging is off: nothing is matched or logged, and the result is None.
        keep_bands: see `write_prompt`.

    Returns:
        The best earlier match (see `find_similar`), or None; on a retry, the match the first run logged.
    """
    match = await match_prompt(session, job_id=job_id, tenant_id=tenant_id, print_=print_, threshold=threshold)
    return await write_prompt(
        session,
        job_id=job_id,
        tenant_id=tenant_id,
        key_id=key_id,
        print_=print_,
        match=match if log_match else None,
        created_at=created_at,
        keep_bands=keep_bands,
    )


async def match_prompt(
    session: AsyncSession, *, job_id: str, tenant_id: str, print_: PromptPrint, threshold: float
) -> SimilarityMatch | None:
    """The job's best earlier match (`find_similar`, never itself); reads only, so a caller can look before its
    transaction writes anything (SQLite holds its one write lock from the first write to the commit)."""
    if print_.empty:
        return None
    return await find_similar(session, tenant_id=tenant_id, print_=print_, threshold=threshold, exclude_job_id=job_id)


async def write_prompt(
    session: AsyncSession,
    *,
    job_id: str,
    tenant_id: str,
    key_id: str | None,
    print_: PromptPrint,
    match: SimilarityMatch | None,
    created_at: datetime,
    keep_bands: bool = False,
) -> SimilarityMatch | None:
    """Record a job's prompt: its signature, its bands and `match` (None: nothing to log).

    Idempotent: when the job's signature is already recorded (a retried postflight), nothing is written and
    the match logged the first time is returned. An empty print is not recorded.

    Args:
        keep_bands: write the prompt's bands even when it repeats an earlier one exactly (the response cache
            keeps its answer, and finds near-identical prompts among its own answers by their bands).
    """
    if print_.empty:
        return None
    # The signature goes first: its unique job_id tells a retry apart in the same statement that writes it.
    signature_row = {
        "job_id": job_id,
        "tenant_id": tenant_id,
        "key_id": key_id,
        "exact_hash": print_.exact_hash,
        "signature": list(print_.signature),
        "created_at": created_at,
    }
    if not await insert_ignoring_duplicates(session, table_of(PromptSignature), [signature_row], "job_id"):
        return await _logged_match(session, job_id, tenant_id)
    if match is None or match.method != "exact" or keep_bands:
        # An exact repeat adds no band an earlier prompt does not hold (the commonest case, and 32 rows saved);
        # a prompt whose answer the cache keeps needs its own, to be found among the live answers.
        band_rows = [
            {
                "band_key": f"{job_id}:{band}",
                "tenant_id": tenant_id,
                "band_hash": band_hash,
                "job_id": job_id,
                "created_at": created_at,
            }
            for band, band_hash in enumerate(print_.bands)
        ]
        # A plain insert, without RETURNING: the signature's insert above made this the job's only writer.
        await session.exec(insert(PromptBand), params=band_rows)
    if match is not None:
        log_row = {
            "job_id": job_id,
            "matched_job_id": match.matched_job_id,
            "score": match.score,
            "method": match.method,
            "tenant_id": tenant_id,
            "key_id": key_id,
            "created_at": created_at,
        }
        await insert_ignoring_duplicates(session, table_of(PromptSimilarityLog), [log_row], "job_id")
    return match


async def near_duplicate_share(
    session: AsyncSession, *, tenant_id: str, key_id: str | None, start: datetime, end: datetime
) -> float:
    """Of the key's prompts recorded in [start, end), the share that matched an earlier prompt; 0.0 if none.

    `key_id=None` means the tenant's prompts sent without a key id (the environment's admin key), not all keys.
    """
    signatures = (
        select(func.count())
        .select_from(PromptSignature)
        .where(
            PromptSignature.tenant_id == tenant_id,
            col(PromptSignature.key_id).is_(None) if key_id is None else PromptSignature.key_id == key_id,
            col(PromptSignature.created_at) >= start,
            col(PromptSignature.created_at) < end,
        )
        .scalar_subquery()
    )
    matched = (
        select(func.count())
        .select_from(PromptSimilarityLog)
        .where(
            PromptSimilarityLog.tenant_id == tenant_id,
            col(PromptSimilarityLog.key_id).is_(None) if key_id is None else PromptSimilarityLog.key_id == key_id,
            col(PromptSimilarityLog.created_at) >= start,
            col(PromptSimilarityLog.created_at) < end,
        )
        .scalar_subquery()
    )
    row = (await session.exec(select(signatures, matched))).one()
    total, duplicates = int(row[0]), int(row[1])
    return min(duplicates / total, 1.0) if total else 0.0


async def _first_exact(
    session: AsyncSession, tenant_id: str, exact_hash: str, among: JobIds | None, exclude_job_id: str | None
) -> str | None:
    """The first recorded job with this exact prompt (with `among`: any such job of the set)."""
    # Any one duplicate, no ORDER BY: every duplicate recorded after the first logged that first one as its
    # exact match, so one hop through the log reaches it from any of them. "ORDER BY id LIMIT 1" made
    # PostgreSQL walk the primary key from the oldest row: 9-17 ms for a prompt repeated 20,000 times after
    # 50,000 others, against 2.8 ms this way (and 0.8 ms for a rare prompt either way).
    params = {"tenant_id": tenant_id, "exact_hash": exact_hash, "exclude_job_id": exclude_job_id}
    stmt = _first_exact_statement(exclude_job_id is not None)
    if among is not None:
        stmt = stmt.where(col(PromptSignature.job_id).in_(among))
    row = (await session.exec(stmt.limit(1), params=params)).first()
    if row is None:
        return None
    job_id, first_job_id, method = row
    # Within `among` the first job may be outside the set, so the duplicate found is the answer.
    return first_job_id if method == "exact" and first_job_id is not None and among is None else job_id


@functools.cache
def _first_exact_statement(excluding: bool) -> ExactRows:
    # Built once per process and bound at each call, like `_candidates_statement`: building it costs more
    # Python than running it does.
    stmt = (
        select(PromptSignature.job_id, PromptSimilarityLog.matched_job_id, PromptSimilarityLog.method)
        .outerjoin(
            PromptSimilarityLog,
            (col(PromptSimilarityLog.job_id) == PromptSignature.job_id)
            & (col(PromptSimilarityLog.tenant_id) == bindparam("tenant_id")),
        )
        .where(
            PromptSignature.tenant_id == bindparam("tenant_id"), PromptSignature.exact_hash == bindparam("exact_hash")
        )
    )
    return stmt.where(PromptSignature.job_id != bindparam("exclude_job_id")) if excluding else stmt


async def _candidates(
    session: AsyncSession,
    tenant_id: str,
    bands: tuple[str, ...],
    among: JobIds | None,
    exclude_job_id: str | None,
) -> list[tuple[int, str, list[int]]]:
    """(id, job_id, signature) of the jobs sharing the most bands with the print: one statement."""
    params: dict[str, Any] = {"tenant_id": tenant_id, "exclude_job_id": exclude_job_id}
    params.update({f"band_{band}": band_hash for band, band_hash in enumerate(bands)})
    stmt = _candidates_statement(len(bands), exclude_job_id is not None, among is not None)
    if among is not None:
        if not isinstance(among, Select):
            among = select(PromptSignature.job_id).where(col(PromptSignature.job_id).in_(list(among)))
        stmt = stmt.add_cte(among.cte(_AMONG.name))
    rows = (await session.exec(stmt, params=params)).all()
    return [(row_id or 0, job_id, list(signature)) for row_id, job_id, signature in rows]


_AMONG = table("among_job_ids", column("job_id"))
"""Stands for the caller's `among` in the cached statement, which each call then gives as a CTE of that name."""


@functools.cache
def _candidates_statement(bands: int, excluding: bool, restricted: bool) -> CandidateRows:
    """Built once per process: building these 32 branches costs ~5 ms of Python (measured), several times
    what the database needs to run them; each call binds its values (and its `among` set, by name)."""
    per_band = []
    for band in range(bands):
        # Each band is limited on its own (UNION ALL of LIMITed subqueries), not the IN-list as a whole:
        # that bounds the rows read per band rather than only the rows returned. No ORDER BY id: the
        # (tenant_id, band_hash) index does not hold id on PostgreSQL, whose planner then walked the primary
        # key backwards, filtering ~3,500 rows per hot band at 2,000 prompts (O(table) as it grows).
        hits = select(PromptBand.id, PromptBand.job_id).where(
            PromptBand.tenant_id == bindparam("tenant_id"), PromptBand.band_hash == bindparam(f"band_{band}")
        )
        if excluding:
            hits = hits.where(PromptBand.job_id != bindparam("exclude_job_id"))
        if restricted:
            # Filtered before the limit, so a hot band's restricted rows are not crowded out by others.
            hits = hits.where(col(PromptBand.job_id).in_(select(_AMONG.c.job_id)))
        limited = hits.limit(ROWS_PER_BAND).subquery()
        per_band.append(select(limited.c.id, limited.c.job_id))
    shared = union_all(*per_band).subquery()
    top = (
        select(shared.c.job_id)
        .group_by(shared.c.job_id)
        .order_by(func.count().desc(), func.max(shared.c.id).desc())
        .limit(CANDIDATE_CAP)
        .subquery()
    )
    return (
        select(PromptSignature.id, PromptSignature.job_id, PromptSignature.signature)
        .join(top, top.c.job_id == PromptSignature.job_id)
        .where(PromptSignature.tenant_id == bindparam("tenant_id"))
    )


async def _logged_match(session: AsyncSession, job_id: str, tenant_id: str) -> SimilarityMatch | None:
    stmt = select(PromptSimilarityLog).where(
        PromptSimilarityLog.job_id == job_id, PromptSimilarityLog.tenant_id == tenant_id
    )
    log = (await session.exec(stmt)).first()
    if log is None:
        return None
    method: Literal["exact", "minhash"] = "exact" if log.method == "exact" else "minhash"
    return SimilarityMatch(matched_job_id=log.matched_job_id, score=log.score, method=method)
