"""The activities of a job: route plan, upstream call, cost and lifecycle rows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.abuse import AbuseScorer
from activities.bookkeeping import JOB_FLAGS, cached_answer, record_postflight, write_events
from activities.policy_gate import PolicyGate, check_answer
from activities.providers import call_provider
from activities.relay import Relay
from domain.cache_keys import cacheable
from domain.errors import DomainError
from domain.flags import GUARDRAILS, POLICY_ENGINE, RESPONSE_CACHE
from domain.guardrails.checks import has_rules
from domain.policy.evaluate import in_regions
from domain.routing import plan_route
from ops.metrics import UPSTREAM_RETRIES, UPSTREAM_SECONDS, WrittenFacts
from schemas.calls import (
    CallModelInput,
    CallModelOutput,
    PostflightInput,
    PostflightOutput,
    PreflightInput,
    PreflightOutput,
    RecordEventsInput,
)
from schemas.decisions import PolicyDecision
from schemas.failures import CallFailureDetails
from schemas.routes import RoutesConfig
from store.flag_cache import FlagCache
from store.policy_cache import PolicyCache
from store.queries import budgets
from store.rate_limits import RateLimiter


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
        policies: PolicyCache,
        abuse: AbuseScorer,
        rate_limiter: RateLimiter | None = None,
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
        self._policies = policies
        """Each key's policy, read from the database at most every few seconds (`PolicyCache`)."""
        self._gate = PolicyGate(sessions, abuse, self._writes)
        self._rate_limiter = rate_limiter
        """Settles the TPM buckets the API charged at admission with a job's real usage; None: not here."""

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
            plan = plan_route(
                self._routes,
                input.model,
                kind=input.kind,
                params=input.params,
                messages=input.messages,
                local_call_max_s=self._local_call_max_s,
                synchronous=input.synchronous,
            )
        except DomainError as err:
            raise ApplicationError(err.message, type=err.code, non_retryable=True) from err
        flags = await self._flags.enabled(input.tenant_id)  # cached in the process: no query per job
        job_flags = {key: key in flags for key in JOB_FLAGS}
        output = PreflightOutput(deployments=plan, flags=job_flags)
        near_duplicate, any_temperature = self._cache_near_duplicate, False
        if POLICY_ENGINE not in flags:
            output.decision = PolicyDecision(skipped=[POLICY_ENGINE])  # so the trace says what the job ran without
        else:
            policy = await self._policies.for_key(input.tenant_id, input.key_id)  # cached in the process too
            gated = await self._gate.decide(input, policy, plan, flags, datetime.now(UTC))
            output.decision, output.budget_key = gated.decision, gated.budget_key
            if not gated.decision.allowed:
                return output
            document = policy.document
            output.deployments = in_regions(document, plan)
            if GUARDRAILS in flags and has_rules(document.guardrails.output):
                output.output_rules = document.guardrails.output
            if document.similarity is not None:
                output.similarity_threshold = document.similarity.threshold
            if document.cache is not None:  # the policy's cache section takes over from the flag and settings
                job_flags[RESPONSE_CACHE] = document.cache.enabled
                output.cache_ttl_s = document.cache.ttl_s
                near_duplicate = document.cache.near_duplicate or near_duplicate
                any_temperature = document.cache.allow_temperature_above_zero
        cacheable_ = cacheable(input.kind, input.params, allow_temperature_above_zero=any_temperature)
        if job_flags[RESPONSE_CACHE] and cacheable_ and input.messages:
            asked = input
            if output.decision is not None and output.decision.redacted_messages is not None:
                asked = input.model_copy(update={"messages": output.decision.redacted_messages})
            async with self._sessions() as session:
                output.cached = await cached_answer(session, asked, threshold=near_duplicate, now=datetime.now(UTC))
        return output

    @activity.defn
    async def call_model(self, input: CallModelInput) -> CallModelOutput:
        provider = self._routes.providers[input.deployment.provider]
        info = activity.info()
        attempt = info.attempt
        relay = self._relay(input, attempt)
        completed = False
        deployment = input.deployment
        if attempt > 1:
            UPSTREAM_RETRIES.labels(deployment.provider, deployment.model).inc()
        started = time.perf_counter()
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
            UPSTREAM_SECONDS.labels(deployment.provider, deployment.model, "ok").observe(time.perf_counter() - started)
            if input.output_rules is not None:
                answer, verdict = await check_answer(output.answer, input.output_rules, input.params)
                output = output.model_copy(update={"answer": answer, "verdict": verdict})
        except ApplicationError as err:
            if not completed:  # the upstream's failure, not the output guardrails'
                elapsed = time.perf_counter() - started
                UPSTREAM_SECONDS.labels(deployment.provider, deployment.model, "error").observe(elapsed)
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
        now = datetime.now(UTC)
        written = WrittenFacts()
        async with self._writes, self._sessions() as session, session.begin():
            cost = await record_postflight(
                session,
                input,
                similarity_threshold=input.similarity_threshold or self._similarity_threshold,
                cache_ttl_s=input.cache_ttl_s or self._cache_ttl_s,
                now=now,
                written=written,
            )
            if input.budget_key is not None:
                await budgets.settle(session, key=input.budget_key, cost_usd=cost)
        written.count()
        if input.admitted_tokens is not None and self._rate_limiter is not None:
            await self._settle_tokens(input)
        return PostflightOutput(cost_usd=cost)

    async def _settle_tokens(self, input: PostflightInput) -> None:
        """Give the TPM buckets back what the API's estimate charged over the real usage (or take the
        shortfall), on the limiter's clock (wall time shared by every process).

        Not idempotent by itself: a retried postflight may settle twice, which errs by one job's estimate in a
        bucket that refills within a minute; the job's bookkeeping above stays exact."""
        assert self._rate_limiter is not None and input.admitted_tokens is not None
        policy = await self._policies.for_key(input.tenant_id, input.key_id)
        used = input.usage.input_tokens + input.usage.output_tokens
        await self._rate_limiter.settle(
            input.key_id, input.tenant_id, policy.document.rate, used - input.admitted_tokens, self._rate_limiter.now()
        )

    @activity.defn
    async def record_events(self, input: RecordEventsInput) -> None:
        """Lifecycle events of a job that parks, fails or is cancelled (postflight writes the others)."""
        written = WrittenFacts()
        async with self._writes, self._sessions() as session, session.begin():
            await write_events(
                session, input.job_id, input.tenant_id, input.key_id, input.events, route=None, written=written
            )
            if input.release_budget:
                await budgets.release(session, job_id=input.job_id)
        written.count()


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
