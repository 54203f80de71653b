"""The Kintsugi worker: runs job workflows and their activities on the task queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextvars import Context
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.abuse import AbuseScorer, AbuseTrainingActivities
from activities.exports.outbox import ExportActivities
from activities.exports.registry import build_sinks, close_sinks, exporter_http
from activities.llm import LLMActivities
from client.connect import connect
from ops.metrics import serve_metrics
from ops.telemetry import instrument_upstream, start_tracing
from ops.temporal_metrics import metrics_runtime
from settings import Settings
from store.engine import create_engine, session_factory
from store.flag_cache import FlagCache, environment_flag_defaults
from store.policy_cache import PolicyCache
from store.rate_limits import RateLimiter, build_rate_limiter
from workflows.abuse_training import AbuseTrainingWorkflow, ensure_abuse_training_schedule
from workflows.export import ExportWorkflow, ensure_export_workflows
from workflows.llm_job import LLMJobWorkflow

WORKFLOWS = [LLMJobWorkflow, AbuseTrainingWorkflow, ExportWorkflow]
"""Every worker on the task queue registers every workflow, so a workflow task can land on any of them."""

GRACEFUL_SHUTDOWN = timedelta(seconds=8)

log = logging.getLogger("kintsugi.worker")


def build_activities(
    settings: Settings,
    engine: AsyncEngine,
    http: httpx.AsyncClient,
    *,
    flags: FlagCache | None = None,
    policies: PolicyCache | None = None,
    rate_limiter: RateLimiter | None = None,
) -> LLMActivities:
    """The activities' holder: routes, sessions, the shared HTTP client, feature flags, policies, and the
    secrets read from settings (upstream keys, relay tokens), so none of them travels in a workflow input.

    `flags`, `policies`: the API process passes its own caches, so a change it makes is in force at once for the
    jobs it runs. `rate_limiter`: where postflight settles the TPM the API charged (None: not settled here).
    """
    sessions = session_factory(engine)
    return LLMActivities(
        routes=settings.routes,
        sessions=sessions,
        http=http,
        upstream_keys=settings.upstream_keys(),
        relay_token=settings.relay_token,
        local_call_max_s=settings.local_call_max_s,
        flags=flags or FlagCache(sessions, defaults=environment_flag_defaults(), ttl_s=settings.flag_cache_ttl_s),
        similarity_threshold=settings.similarity_threshold,
        cache_ttl_s=settings.cache_ttl_s,
        cache_near_duplicate=settings.cache_near_duplicate,
        policies=policies or PolicyCache(sessions, ttl_s=settings.flag_cache_ttl_s),
        abuse=AbuseScorer(sessions),
        rate_limiter=rate_limiter,
        serialize_writes=engine.dialect.name == "sqlite",
    )


def build_worker(
    client: Client,
    settings: Settings,
    activities: LLMActivities,
    *,
    in_api: bool = False,
    abuse: AbuseTrainingActivities | None = None,
    exports: ExportActivities | None = None,
) -> Worker:
    """The worker of `kintsugi worker`, or with `in_api` the API process's own (`api_worker`).

    `abuse`: the abuse training's activities, which `kintsugi worker` runs; a worker without them (the API's,
    which takes no remote activities) still runs the training workflow's tasks.
    `exports`: the export workflows' activity, likewise only on `kintsugi worker`.
    """
    runner = SandboxedWorkflowRunner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner()
    return Worker(
        client,
        task_queue=settings.task_queue,
        # The API's worker takes workflow tasks (with their local activities) and leaves ordinary activities,
        # the long calls, to the shared workers.
        no_remote_activities=in_api,
        workflows=WORKFLOWS,
        workflow_runner=runner,
        activities=[
            activities.preflight,
            activities.call_model,
            activities.postflight,
            activities.record_events,
            *((abuse.tenants_with_history, abuse.train_tenant) if abuse is not None else ()),
            *((exports.export_batch,) if exports is not None else ()),
        ],
        max_concurrent_activities=200,
        max_concurrent_local_activities=200,
        # A job calling locally holds its workflow-task slot for the whole call: as many slots as local calls,
        # or eager starts are refused (and jobs queue) while local-call slots are still free.
        max_concurrent_workflow_tasks=200,
        # On SIGTERM, calls in flight get this long to finish (and be billed) before they are cancelled
        # and retried elsewhere; `kintsugi up` waits 10 s before it kills.
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


def upstream_http() -> httpx.AsyncClient:
    """The HTTP client of upstream calls. Temporal owns retries: it makes exactly one request per attempt.
    With tracing on, each request is a span and carries its `traceparent` to the provider."""
    return instrument_upstream(
        httpx.AsyncClient(limits=httpx.Limits(max_connections=500, max_keepalive_connections=100))
    )


@contextlib.asynccontextmanager
async def api_worker(
    client: Client,
    settings: Settings,
    engine: AsyncEngine,
    *,
    flags: FlagCache | None = None,
    policies: PolicyCache | None = None,
    rate_limiter: RateLimiter | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """The API process's worker, on `client` itself: the server hands a job started eagerly on this client
    (`start_job(synchronous=True)`) straight to it. Yields the task it runs in (done: the worker has stopped,
    which readiness reports); shut down gracefully on exit, like `kintsugi worker`."""
    async with upstream_http() as http:
        activities = build_activities(settings, engine, http, flags=flags, policies=policies, rate_limiter=rate_limiter)
        worker = build_worker(client, settings, activities, in_api=True)
        # A task of its own, in a fresh context: not a part of whichever request happened to connect first.
        running = asyncio.get_running_loop().create_task(worker.run(), name="api-worker", context=Context())
        try:
            yield running
        finally:
            if not running.done():
                await worker.shutdown()
            await asyncio.wait([running])
            if not running.cancelled() and running.exception() is not None:
                log.error("the API's worker had stopped: %r", running.exception())


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM); in-flight activities get a graceful shutdown."""
    stop = stop or asyncio.Event()
    start_tracing("kintsugi-worker")
    # One port for our metrics and the SDK's: its runtime records into the registry this port serves.
    stop_metrics = serve_metrics(settings.worker_metrics_port)
    client = await connect(settings, runtime=metrics_runtime() if stop_metrics is not None else None)
    engine = create_engine(settings.effective_database_url)
    rate_limiter = build_rate_limiter(settings, session_factory(engine))
    try:
        # Every worker makes sure the hourly abuse training is scheduled: the first creates it, the rest find it.
        try:
            await ensure_abuse_training_schedule(client, settings)
        except RPCError as err:
            # Jobs matter more than the hourly training: run them, and say what the server answered.
            log.error("the abuse training schedule could not be ensured: %s", err)
        async with upstream_http() as http, exporter_http() as export_http, contextlib.AsyncExitStack() as stack:
            sessions = session_factory(engine)
            abuse = AbuseTrainingActivities(sessions)
            flags = FlagCache(sessions, defaults=environment_flag_defaults(), ttl_s=settings.flag_cache_ttl_s)
            activities = build_activities(settings, engine, http, flags=flags, rate_limiter=rate_limiter)
            # The sinks whose endpoint is configured here; each gets its export workflow (one per namespace).
            sinks = build_sinks(settings, export_http, temporal=client, sessions=sessions)
            stack.callback(close_sinks, sinks)
            exports = ExportActivities(sessions, flags=flags, sinks=sinks)
            try:
                await ensure_export_workflows(client, settings, [sink.name for sink in exports.sinks])
            except RPCError as err:
                log.error("the export workflows could not be ensured: %s", err)
            worker = build_worker(client, settings, activities, abuse=abuse, exports=exports)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            async with worker:
                log.info("worker polling %s on %s", settings.task_queue, settings.temporal_address)
                await stop.wait()
    finally:
        if stop_metrics is not None:
            stop_metrics()
        await rate_limiter.aclose()
        await engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(Settings()))


if __name__ == "__main__":
    main()
