"""The activities of a job: route plan, upstream call, cost and lifecycle rows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers import call_provider
from domain.pricing import cost_usd, resolve_price
from schemas import errors
from schemas.calls import (
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
from schemas.routes import RoutesConfig
from store import queries


class LLMActivities:
    """Holds what the activities need; built once in the worker. Secrets are read here, not from inputs."""

    def __init__(
        self,
        *,
        routes: RoutesConfig,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        upstream_keys: Mapping[str, str],
    ) -> None:
        self._routes = routes
        self._sessions = sessions
        self._http = http
        self._upstream_keys = upstream_keys
        """Provider name -> API key, read from the environment once by the worker (`Settings.upstream_keys`)."""

    @activity.defn
    async def preflight(self, input: PreflightInput) -> PreflightOutput:
        """The route plan: the deployments of the model alias, in order, with prices resolved.

        No I/O: lifecycle events wait in the workflow and are written with the job's next bookkeeping
        (postflight, or the park/fail flush), so a job that succeeds costs one database transaction.
        """
        deployments = self._routes.routes.get(input.model)
        if deployments is None:
            raise ApplicationError(f"no route for model {input.model!r}", type=errors.UNKNOWN_MODEL, non_retryable=True)
        plan = []
        for deployment in deployments:
            provider = self._routes.providers[deployment.provider]
            plan.append(
                PlannedDeployment(
                    provider=deployment.provider,
                    model=deployment.model,
                    region=provider.region,
                    price=resolve_price(deployment.model, deployment.price),
                    timeout_s=provider.timeout_s,
                    retry=provider.retry,
                    call=provider.call,
                )
            )
        return PreflightOutput(deployments=plan)

    @activity.defn
    async def call_model(self, input: CallModelInput) -> CallModelOutput:
        provider = self._routes.providers[input.deployment.provider]
        attempt = activity.info().attempt
        try:
            output = await call_provider(
                self._http,
                provider,
                input,
                api_key=self._upstream_keys.get(input.deployment.provider),
                heartbeat=activity.heartbeat,
            )
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
        return output.model_copy(update={"attempt": attempt})

    @activity.defn
    async def postflight(self, input: PostflightInput) -> PostflightOutput:
        """Bill the successful call and write its events, once: keys derive from the job and call number."""
        cost = cost_usd(input.deployment.price, input.usage.input_tokens, input.usage.output_tokens)
        async with self._sessions() as session, session.begin():
            await queries.insert_cost_log(
                session,
                idempotency_key=cost_key(input.job_id, input.call_seq),
                job_id=input.job_id,
                tenant_id=input.tenant_id,
                provider=input.deployment.provider,
                model=input.deployment.model,
                input_tokens=input.usage.input_tokens,
                output_tokens=input.usage.output_tokens,
                cost_usd=cost,
                created_at=datetime.now(UTC),
            )
            await queries.insert_events(session, _event_rows(input.job_id, input.tenant_id, input.events))
        return PostflightOutput(cost_usd=cost)

    @activity.defn
    async def record_events(self, input: RecordEventsInput) -> None:
        """Lifecycle events of a job that parks, fails or is cancelled (postflight writes the others)."""
        async with self._sessions() as session, session.begin():
            await queries.insert_events(session, _event_rows(input.job_id, input.tenant_id, input.events))


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
