"""The activities of a job: route plan, upstream call, cost and lifecycle rows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers import call_provider
from activities.relay import Relay
from domain.cache_keys import cacheable, request_fingerprint
from domain.errors import DomainError
from domain.flags import RESPONSE_CACHE, SIMILARITY_LOGGING, TRACK_MODEL_COSTS
from domain.pricing import cost_usd, resolve_price
from domain.routing import call_mode, serving
from domain.similarity import prompt_print, prompt_text
from schemas.calls import (
    CachedAnswer,
    CallModelInput,
    CallModelOutput,
    JobEvent,
    PlannedDeployment,
    PostflightInput,
    PostflightOutput,
    PreflightInput,
    PreflightOutput,
    RecordEventsInput,
)
from schemas.contracts import cost_key
from schemas.failures import CallFailureDetails
from schemas.jobs import JobResult, Usage
from schemas.routes import RoutesConfig
from store import queries
from store.flag_cache import FlagCache

JOB_FLAGS = (TRACK_MODEL_COSTS, SIMILARITY_LOGGING, RESPONSE_CACHE)
"""The flags a job's bookkeeping follows; preflight hands their values to the workflow."""


class LLMActivities:
    """Holds what the activities need, built once in the worker: secrets come in here, never in inputs."""

    def __init__(
        self,
        *,
        routes: RoutesConfig,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        upstream_keys: Mapping[str, str],
        relay_token: Callable[[str], str] | None = None,
        local_call_max_s: float,
        flags: FlagCache,
        similarity_threshold: float,
        cache_ttl_s: float,
        cache_near_duplicate: float,
    ) -> None:
        self._routes = routes
        self._sessions = sessions
        self._http = http
        self._upstream_keys = upstream_keys
        """Provider name -> API key, read from the environment once by the worker (`Settings.upstream_keys`)."""
        self._relay_token = relay_token
        """Signs a job's relay to the API replica streaming it (`Settings.relay_token`); None: no relay."""
        self._local_call_max_s = local_call_max_s
        """`call: auto` deployments whose timeout is at most this run as local activities (`call_mode`)."""
        self._flags = flags
        """Feature flags per tenant, read from the database at most every few seconds (`FlagCache`)."""
        self._similarity_threshold = similarity_threshold
        self._cache_ttl_s = cache_ttl_s
        self._cache_near_duplicate = cache_near_duplicate

    @activity.defn
    async def preflight(self, input: PreflightInput) -> PreflightOutput:
        """The route plan (the deployments of the model alias, in order, with prices resolved), the flags the
        job's bookkeeping follows and, for a tenant with the response cache on, an earlier answer to reuse.

        No I/O but the cache lookup (flags come from the process's cache): lifecycle events wait in the workflow
        and are written with the job's next bookkeeping (postflight, or the park/fail flush), so a job that
        succeeds costs one database transaction.
        """
        try:
            # Skips the deployments that cannot honour the request; none left is the job's error.
            deployments = serving(
                self._routes, input.model, kind=input.kind, params=input.params, messages=input.messages
            )
        except DomainError as err:
            raise ApplicationError(err.message, type=err.code, non_retryable=True) from err
        plan = []
        for deployment in deployments:
            provider = self._routes.providers[deployment.provider]
            plan.append(
                PlannedDeployment(
                    provider=deployment.provider,
                    model=deployment.model,
                    region=provider.region,
                    price=resolve_price(deployment.model, deployment.price, provider_kind=provider.kind),
                    timeout_s=provider.timeout_s,
                    retry=provider.retry,
                    call=call_mode(
                        provider.call,
                        provider.timeout_s,
                        local_call_max_s=self._local_call_max_s,
                        synchronous=input.synchronous,
                    ),
                    type=deployment.type,
                )
            )
        flags = await self._flags.enabled(input.tenant_id)  # cached in the process: no query per job
        job_flags = {key: key in flags for key in JOB_FLAGS}
        cached = None
        if job_flags[RESPONSE_CACHE] and cacheable(input.kind, input.params):
            cached = await self._cached_answer(input)
        return PreflightOutput(deployments=plan, flags=job_flags, cached=cached)

    async def _cached_answer(self, input: PreflightInput) -> CachedAnswer | None:
        print_ = prompt_print(prompt_text(input.messages))
        async with self._sessions() as session:
            entry, score, method = await queries.find_cached_answer(
                session,
                tenant_id=input.tenant_id,
                route=input.model,
                fingerprint=request_fingerprint(input.model, input.params),
                print_=print_,
                threshold=self._cache_near_duplicate,
                now=datetime.now(UTC),
            ) or (None, 0.0, "")
        if entry is None:
            return None
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

    @activity.defn
    async def call_model(self, input: CallModelInput) -> CallModelOutput:
        provider = self._routes.providers[input.deployment.provider]
        info = activity.info()
        attempt = info.attempt
        relay = self._relay(input, attempt)
        completed = False
        try:
            async with _heartbeating(info.heartbeat_timeout):
                output = await call_provider(
                    self._http,
                    provider,
                    input,
                    api_key=self._upstream_keys.get(input.deployment.provider),
                    heartbeat=activity.heartbeat,
                    on_chunk=relay.send if relay else None,
                )
            completed = True
        except ApplicationError as err:
            # History keeps only the last attempt's failure; carrying the attempt number lets the job
            # report how many calls a deployment took.
            raise ApplicationError(
                err.message,
                CallFailureDetails(attempt=attempt),
                type=err.type,
                non_retryable=err.non_retryable,
                next_retry_delay=err.next_retry_delay,
            ) from err
        finally:
            # Whatever ended the call (an answer, a failure, a timeout, a cancel, a shutdown), its relay
            # body ends too, so neither side holds the connection open.
            if relay:
                await relay.close(completed=completed)
        return output.model_copy(update={"attempt": attempt})

    def _relay(self, input: CallModelInput, attempt: int) -> Relay | None:
        if not input.relay_url or self._relay_token is None:
            return None
        return Relay(
            self._http,
            base_url=input.relay_url,
            job_id=input.job_id,
            token=self._relay_token(input.job_id),
            call_seq=input.call_seq,
            attempt=attempt,
        )

    @activity.defn
    async def postflight(self, input: PostflightInput) -> PostflightOutput:
        """The job's bookkeeping, in one transaction and once: the cost row, the prompt's similarity, the answer
        for the response cache and the pending events, each keyed by the job (and call number)."""
        flags = input.flags
        hit = input.outcome == "cache_hit"
        cost = 0.0 if hit else cost_usd(input.deployment.price, input.usage)
        now = datetime.now(UTC)
        print_ = prompt_print(prompt_text(input.messages)) if input.messages else None
        keep_answer = (
            flags.get(RESPONSE_CACHE, False)
            and not hit
            and input.answer is not None
            and print_ is not None
            and cacheable(input.kind, input.params)
        )
        async with self._sessions() as session, session.begin():
            if flags.get(TRACK_MODEL_COSTS, True):
                await queries.insert_cost_log(session, **_cost_row(input, cost, now))
            if print_ is not None and (flags.get(SIMILARITY_LOGGING, True) or keep_answer):
                # The cache finds near-identical prompts through their signatures, so a kept answer's prompt
                # is signed even when similarity logging is off (then without a similarity row).
                await queries.record_prompt(
                    session,
                    job_id=input.job_id,
                    tenant_id=input.tenant_id,
                    key_id=input.key_id,
                    print_=print_,
                    threshold=self._similarity_threshold,
                    created_at=now,
                    log_match=flags.get(SIMILARITY_LOGGING, True),
                )
            if keep_answer and print_ is not None and input.answer is not None and input.route is not None:
                await queries.insert_cached_answer(
                    session,
                    job_id=input.job_id,
                    tenant_id=input.tenant_id,
                    route=input.route,
                    fingerprint=request_fingerprint(input.route, input.params),
                    print_=print_,
                    answer=input.answer.model_dump(mode="json"),
                    usage=input.usage.model_dump(mode="json"),
                    provider=input.deployment.provider,
                    model=input.deployment.model,
                    cost_usd=cost,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self._cache_ttl_s),
                )
            await queries.insert_events(session, _event_rows(input.job_id, input.tenant_id, input.events))
        return PostflightOutput(cost_usd=cost)

    @activity.defn
    async def record_events(self, input: RecordEventsInput) -> None:
        """Lifecycle events of a job that parks, fails or is cancelled (postflight writes the others)."""
        async with self._sessions() as session, session.begin():
            await queries.insert_events(session, _event_rows(input.job_id, input.tenant_id, input.events))


def _cost_row(input: PostflightInput, cost: float | None, now: datetime) -> dict[str, Any]:
    """The `model_cost_logs` row of the job's answered call: a provider's, or a cache hit's (no tokens spent,
    cost 0, `saved_usd` what the call would have cost)."""
    price = input.deployment.price
    hit = input.cached is not None
    usage = Usage(input_tokens=0, output_tokens=0) if hit else input.usage
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
        "price_known": hit or price.known,
        "price_source": price.source,
        "price_name": price.name,
        "input_per_mtok": price.input_per_mtok if price.known else None,
        "output_per_mtok": price.output_per_mtok if price.known else None,
        "cached_input_per_mtok": price.cached_input_per_mtok,
        "cache_write_per_mtok": price.cache_write_per_mtok,
        "reasoning_per_mtok": price.reasoning_per_mtok,
        "upstream_latency_ms": None if input.latency_ms is None else round(input.latency_ms, 1),
        "outcome": input.outcome,
        "saved_usd": input.cached.saved_usd if input.cached is not None else None,
        "created_at": now,
    }


def _event_rows(job_id: str, tenant_id: str, events: list[JobEvent]) -> list[dict[str, object]]:
    return [
        {
            "event_key": event.key,
            "tenant_id": tenant_id,
            "job_id": job_id,
            "type": event.type,
            "payload": event.data,
            "created_at": event.at,
        }
        for event in events
    ]


@contextlib.asynccontextmanager
async def _heartbeating(every: timedelta | None) -> AsyncIterator[None]:
    """Heartbeat while the call runs when the workflow gave it a heartbeat timeout (`every`; a streamed call),
    so a slow first token is not taken for a dead worker."""
    if not every:
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every.total_seconds() / 4)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
