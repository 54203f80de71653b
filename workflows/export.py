"""ExportWorkflow: one per sink, for as long as the sink is configured, draining the outbox (`event_logs`).

It only paces the work: the activity reads a batch, delivers it and marks it, or says how long until a batch is
due. A batch that fails is retried with backoff, without end: a sink that is down delays delivery and loses
nothing. The run continues as new every few hundred batches, so its history stays small. The `flush` signal
sends whatever is pending at once (operators and tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy

with workflow.unsafe.imports_passed_through():
    from activities.exports.outbox import ExportActivities
    from schemas.exports import (
        EXPORT_WORKFLOW_ID_PREFIX,
        EXPORT_WORKFLOW_TYPE,
        ExportBatchInput,
        ExportWorkflowInput,
        SinkName,
        export_workflow_id,
    )

if TYPE_CHECKING:
    from temporalio.client import Client

    from settings import Settings

EXPORT_TIMEOUT = timedelta(minutes=5)
EXPORT_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
"""The activity heartbeats every 5 s while a sink delivers: a dead worker's batch is retried after this."""
EXPORT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
)
"""Unlimited: a batch is retried until the sink takes it, at most a minute apart, so nothing is given up."""
BATCHES_PER_RUN = 200
"""Then the run continues as new (sooner if the server suggests it): a batch adds ~10 events to the history."""
MIN_WAIT = timedelta(milliseconds=100)


@workflow.defn(name=EXPORT_WORKFLOW_TYPE)
class ExportWorkflow:
    def __init__(self) -> None:
        self._flush = False

    @workflow.run
    async def run(self, input: ExportWorkflowInput) -> None:
        for _ in range(BATCHES_PER_RUN):
            # A flush makes anything pending due now, however young.
            max_age_s = 0.0 if self._flush else input.max_age_s
            self._flush = False
            result = await workflow.execute_activity_method(
                ExportActivities.export_batch,
                ExportBatchInput(sink=input.sink, batch_size=input.batch_size, max_age_s=max_age_s),
                start_to_close_timeout=EXPORT_TIMEOUT,
                heartbeat_timeout=EXPORT_HEARTBEAT_TIMEOUT,
                retry_policy=EXPORT_RETRY,
            )
            if workflow.info().is_continue_as_new_suggested():
                break
            if result.more:
                continue
            wait = max(timedelta(seconds=result.wait_s), MIN_WAIT)
            try:
                await workflow.wait_condition(lambda: self._flush, timeout=wait)
            except TimeoutError:
                pass
        workflow.continue_as_new(input)

    @workflow.signal
    def flush(self) -> None:
        """Export what is pending now instead of waiting for a full batch or the oldest row's age."""
        self._flush = True


async def ensure_export_workflows(
    client: Client,
    settings: Settings,
    sinks: Sequence[SinkName],
    *,
    id_prefix: str = EXPORT_WORKFLOW_ID_PREFIX,
) -> None:
    """Start the export workflow of each sink, or find it running: every worker calls this at start, the first
    starts it, the others (and restarts) find it. A running workflow keeps the batch size and age it was
    started with (terminate it to apply new settings; the next worker start begins a fresh one)."""
    for sink in sinks:
        await client.start_workflow(
            ExportWorkflow.run,
            ExportWorkflowInput(sink=sink, batch_size=settings.export_batch_size, max_age_s=settings.export_max_age_s),
            id=export_workflow_id(sink, prefix=id_prefix),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
