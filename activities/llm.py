"""The activities of a job: route plan, upstream call, cost and lifecycle rows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.bookkeeping import JOB_FLAGS, cached_answer, event_rows, record_postflight
from activities.providers import call_provider
from activities.relay import Relay
from domain.cache_keys import cacheable
from domain.errors import DomainError
from domain.flags import RESPONSE_CACHE
from domain.pricing import resolve_price
from domain.routing import call_mode, serving
from schemas.calls import (
    CallModelInput,
    CallModelOutput,
    PlannedDeployment,
    PostflightInput,
    PostflightOutput,
    PreflightInput,
    PreflightOutput,
    RecordEventsInput,
)
from schemas.failures import CallFailureDetails
from schemas.routes import RoutesConfig
from store import queries
from store.flag_cache import FlagCache


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
        serialize_writes: bool = False,
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
        self._writes: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Lock() if serialize_writes else contextlib.nullcontext()
        )
        """SQLite takes one writer at a time and makes the others wait in sleeps of up to 100 ms (its busy
        handler), which at concurrency 10 doubled p99; queued here instead, the next transaction starts the moment
        the last one commits. PostgreSQL's writers do not wait on each other, so it has no lock."""
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
        if job_flags[RESPONSE_CACHE] and cacheable(input.kind, input.params) and input.messages:
            async with self._sessions() as session:
                cached = await cached_answer(
                    session, input, threshold=self._cache_near_duplicate, now=datetime.now(UTC)
                )
        return PreflightOutput(deployments=plan, flags=job_flags, cached=cached)

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
        """The job's bookkeeping, in one transaction and once (`record_postflight`): the cost row, the prompt's
        similarity, the answer for the response cache and the pending events."""
        async with self._writes, self._sessions() as session, session.begin():
            cost = await record_postflight(
                session,
                input,
                similarity_threshold=self._similarity_threshold,
                cache_ttl_s=self._cache_ttl_s,
                now=datetime.now(UTC),
            )
        return PostflightOutput(cost_usd=cost)

    @activity.defn
    async def record_events(self, input: RecordEventsInput) -> None:
        """Lifecycle events of a job that parks, fails or is cancelled (postflight writes the others)."""
        async with self._writes, self._sessions() as session, session.begin():
            await queries.insert_events(session, event_rows(input.job_id, input.tenant_id, input.events))


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
