"""What preflight and postflight do with money: find a cached answer, and write a job's cost row, its prompt's
similarity, its answer for the cache and its events — once, in one transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.cache_keys import cacheable, request_fingerprint
from domain.flags import RESPONSE_CACHE, SIMILARITY_LOGGING, TRACK_MODEL_COSTS
from domain.pricing import cost_usd
from domain.similarity import prompt_print, prompt_text
from ops.metrics import COUNTED_EVENTS, WrittenFacts
from schemas.calls import CachedAnswer, JobEvent, PostflightInput, PreflightInput
from schemas.contracts import cost_key
from schemas.jobs import JobResult, Usage
from store import queries

JOB_FLAGS = (TRACK_MODEL_COSTS, SIMILARITY_LOGGING, RESPONSE_CACHE)
"""The flags a job's bookkeeping follows; preflight hands their values to the workflow."""


async def cached_answer(
    session: AsyncSession, input: PreflightInput, *, threshold: float, now: datetime
) -> CachedAnswer | None:
    """An unexpired answer of the tenant to the same request (`request_fingerprint`) with the same or a
    near-identical prompt. Never the job's own: a job run again after its process died has kept its answer
    already, and must not take it for a hit."""
    found = await queries.find_cached_answer(
        session,
        tenant_id=input.tenant_id,
        route=input.model,
        fingerprint=request_fingerprint(input.model, input.params, input.messages),
        print_=prompt_print(prompt_text(input.messages)),
        threshold=threshold,
        now=now,
        exclude_job_id=input.job_id,
    )
    if found is None:
        return None
    entry, score, method = found
    return CachedAnswer(
        job_id=entry.job_id,
        answer=JobResult.model_validate(entry.answer),
        usage=Usage.model_validate(entry.usage),
        provider=entry.provider,
        model=entry.model,
        saved_usd=entry.cost_usd,
        score=score,
        method=method,
    )


async def record_postflight(
    session: AsyncSession,
    input: PostflightInput,
    *,
    similarity_threshold: float,
    cache_ttl_s: float,
    now: datetime,
    written: WrittenFacts | None = None,
) -> float | None:
    """Write the job's bookkeeping; returns its cost (None: unpriced). `written` collects the rows it wrote, for
    the metrics to count once the transaction commits.

    The cost row is the first write: its key (job and call number, the same for a provider's answer and a
    cache hit) says whether a run of this job already did all this — a retried activity, or the job run again after its
    process died before the server recorded the task. Then the rest is skipped, so the two runs never both
    count (say, a call and then a cache hit).
    """
    flags = input.flags
    hit = input.outcome == "cache_hit"
    cost = 0.0 if hit else cost_usd(input.deployment.price, input.usage)
    similarity_on = flags.get(SIMILARITY_LOGGING, True)
    keep_answer = (
        flags.get(RESPONSE_CACHE, False)
        and not hit
        and input.answer is not None
        and input.route is not None
        and bool(input.messages)
        and cacheable(input.kind, input.params)
    )
    print_ = prompt_print(prompt_text(input.messages)) if input.messages and (similarity_on or keep_answer) else None
    # Reads before the first write: SQLite holds its one write lock from the first write to the commit, and
    # every other job's postflight in the process waits on it meanwhile.
    match = None
    if print_ is not None and similarity_on:
        match = await queries.match_prompt(
            session, job_id=input.job_id, tenant_id=input.tenant_id, print_=print_, threshold=similarity_threshold
        )
    if flags.get(TRACK_MODEL_COSTS, True):
        row = _cost_row(input, cost, now)
        if not await queries.insert_cost_log(session, **row):
            return cost
        if written is not None:
            written.add_cost(
                provider=row["provider"],
                model=row["model"],
                cost_usd=cost,
                input_tokens=row["input_tokens"],
                output_tokens=row["output_tokens"],
            )
    if print_ is not None:
        # The cache finds near-identical prompts through their signatures, so a kept answer's prompt is signed
        # even when similarity logging is off (then without a similarity row).
        await queries.write_prompt(
            session,
            job_id=input.job_id,
            tenant_id=input.tenant_id,
            key_id=input.key_id,
            print_=print_,
            match=match,
            created_at=now,
            keep_bands=keep_answer,
        )
    if keep_answer and print_ is not None and input.answer is not None and input.route is not None:
        await queries.insert_cached_answer(
            session,
            job_id=input.job_id,
            tenant_id=input.tenant_id,
            route=input.route,
            fingerprint=request_fingerprint(input.route, input.params, input.messages),
            exact_hash=print_.exact_hash,
            answer=input.answer.model_dump(mode="json"),
            usage=input.usage.model_dump(mode="json"),
            provider=input.deployment.provider,
            model=input.deployment.model,
            cost_usd=cost,
            created_at=now,
            expires_at=now + timedelta(seconds=cache_ttl_s),
        )
    await write_events(
        session, input.job_id, input.tenant_id, input.key_id, input.events, route=input.route, written=written
    )
    return cost


def _cost_row(input: PostflightInput, cost: float | None, now: datetime) -> dict[str, Any]:
    """The `model_cost_logs` row of the job's answer: a provider's call, or a cache hit (no tokens spent, cost 0,
    `saved_usd` what the answer cost when it was made)."""
    price = input.deployment.price
    hit = input.outcome == "cache_hit"
    usage = Usage(input_tokens=0, output_tokens=0) if hit else input.usage
    priced = hit or price.known
    return {
        "idempotency_key": cost_key(input.job_id, input.call_seq),
        "job_id": input.job_id,
        "tenant_id": input.tenant_id,
        "key_id": input.key_id,
        "call_seq": input.call_seq,
        "route": input.route,
        "provider": input.deployment.provider,
        "model": input.deployment.model,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_input_tokens": usage.cache_write_input_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_usd": cost,
        "price_known": priced,
        "price_source": price.source,
        "price_name": price.name,
        "input_per_mtok": price.input_per_mtok if price.known else None,
        "output_per_mtok": price.output_per_mtok if price.known else None,
        "cached_input_per_mtok": price.cached_input_per_mtok,
        "cache_write_per_mtok": price.cache_write_per_mtok,
        "reasoning_per_mtok": price.reasoning_per_mtok,
        "upstream_latency_ms": None if input.latency_ms is None else round(input.latency_ms, 1),
        "outcome": input.outcome,
        "saved_usd": input.cached.saved_usd if hit and input.cached is not None else None,
        "policy_version": input.policy_version,
        "created_at": now,
    }


async def write_events(
    session: AsyncSession,
    job_id: str,
    tenant_id: str,
    key_id: str | None,
    events: list[JobEvent],
    *,
    route: str | None,
    written: WrittenFacts | None,
) -> None:
    """Append the job's events to the outbox (once each, by key), and tell `written` those newly written.

    `route`: the job's model alias; None looks it up (its `job.started` event) when a counted event needs it.
    """
    rows = event_rows(job_id, tenant_id, key_id, events)
    new_keys = await queries.insert_events(session, rows)
    # Only the rows written now count: a retried write finds them there, and a workflow task run again (the
    # server refused its completion) may write some of its events anew and find the rest.
    new = [event for event, row in zip(events, rows, strict=True) if row["event_key"] in new_keys]
    if written is None or not any(e.type in COUNTED_EVENTS for e in new):
        return
    written.add_events(route or await _route_of(session, job_id, tenant_id, new), ((e.type, e.data) for e in new))


async def _route_of(session: AsyncSession, job_id: str, tenant_id: str, events: list[JobEvent]) -> str:
    """The model alias the job was started on, from its `job.started` event (this batch's, or an earlier one:
    a job that parked wrote it then). Off the hot path: postflight knows its route."""
    started = [e.data for e in events if e.type == "job.started"]
    if not started:
        started = [
            row.payload for row in await queries.events_for_job(session, job_id, tenant_id) if row.type == "job.started"
        ]
    return str(started[0].get("model", "")) if started else ""


def event_rows(job_id: str, tenant_id: str, key_id: str | None, events: list[JobEvent]) -> list[dict[str, object]]:
    return [
        {
            "event_key": event.key,
            "tenant_id": tenant_id,
            "key_id": key_id,
            "job_id": job_id,
            "type": event.type,
            "payload": event.data,
            "created_at": event.at,
        }
        for event in events
    ]
