"""AbuseTrainingWorkflow: every hour (a Temporal Schedule), retrain each tenant's abuse model on its last week.

The workflow only orders the work: activities list the tenants with history, a page at a time, and train each
one (reading its windows, fitting, storing the model). A tenant whose training fails after its retries is
reported and left to the next run; the others are trained regardless. Long runs continue as new with their
progress.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.abuse import HISTORY, TENANT_PAGE, AbuseTrainingActivities
    from schemas.abuse import (
        ABUSE_TRAINING_SCHEDULE_ID,
        ABUSE_TRAINING_WORKFLOW_TYPE,
        AbuseTrainingInput,
        AbuseTrainingOutput,
        TenantsWithHistoryInput,
        TrainTenantInput,
        TrainTenantOutput,
    )

if TYPE_CHECKING:
    from settings import Settings

EVERY = timedelta(hours=1)
RUN_TIMEOUT = timedelta(hours=1)
"""A run still going when the next is due gives way to it (the schedule skips overlapping runs meanwhile)."""
TRAIN_CONCURRENCY = 4
"""Tenants trained at once: fitting runs in a thread per activity, so this bounds a worker's CPU for training."""
LIST_TIMEOUT = timedelta(minutes=1)
TRAIN_TIMEOUT = timedelta(minutes=10)
LIST_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
"""Listing retries until the database answers (or the run times out): without it there is nothing to do."""
TRAIN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1), maximum_attempts=3
)
"""A tenant's training gets three attempts, then the run moves on (the next run tries again)."""


@workflow.defn(name=ABUSE_TRAINING_WORKFLOW_TYPE)
class AbuseTrainingWorkflow:
    @workflow.run
    async def run(self, input: AbuseTrainingInput) -> AbuseTrainingOutput:
        until = input.until or workflow.now()
        since = until - HISTORY
        done = input.done.model_copy(deep=True)
        after = input.after
        while True:
            page = await workflow.execute_activity_method(
                AbuseTrainingActivities.tenants_with_history,
                TenantsWithHistoryInput(since=since, until=until, after=after, limit=TENANT_PAGE),
                start_to_close_timeout=LIST_TIMEOUT,
                retry_policy=LIST_RETRY,
            )
            tenants = page.tenant_ids
            for start in range(0, len(tenants), TRAIN_CONCURRENCY):
                batch = tenants[start : start + TRAIN_CONCURRENCY]
                results = await asyncio.gather(
                    *(self._train(TrainTenantInput(tenant_id=t, since=since, until=until)) for t in batch)
                )
                for tenant_id, result in zip(batch, results, strict=True):
                    if result is None:
                        done.failed.append(tenant_id)
                    elif result.outcome == "trained":
                        done.trained += 1
                    else:
                        done.too_little_history += 1
            if len(tenants) < TENANT_PAGE:
                return done
            after = tenants[-1]
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(AbuseTrainingInput(until=until, after=after, done=done))

    async def _train(self, input: TrainTenantInput) -> TrainTenantOutput | None:
        """The tenant's outcome; None when its training failed after every attempt."""
        try:
            return await workflow.execute_activity_method(
                AbuseTrainingActivities.train_tenant,
                input,
                start_to_close_timeout=TRAIN_TIMEOUT,
                retry_policy=TRAIN_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("abuse training of tenant %s failed: %s", input.tenant_id, err.cause or err)
            return None


def training_schedule(task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AbuseTrainingWorkflow.run,
            AbuseTrainingInput(),
            id=ABUSE_TRAINING_SCHEDULE_ID,
            task_queue=task_queue,
            execution_timeout=RUN_TIMEOUT,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=EVERY)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_abuse_training_schedule(
    client: Client, settings: Settings, *, schedule_id: str = ABUSE_TRAINING_SCHEDULE_ID
) -> None:
    """Create the hourly training schedule, or bring an existing one to this task queue and interval.

    Idempotent, so every worker calls it at start: the first creates it, the others find it. An existing
    schedule keeps its state (an operator's pause survives a deploy) and is only updated when it differs.
    """
    wanted = training_schedule(settings.task_queue)
    try:
        await client.create_schedule(schedule_id, wanted)
        return
    except ScheduleAlreadyRunningError:
        pass

    def refresh(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
        schedule = current.description.schedule
        action = schedule.action
        same_queue = isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == settings.task_queue
        if same_queue and schedule.spec.intervals == wanted.spec.intervals:
            return None
        return ScheduleUpdate(schedule=dataclasses.replace(schedule, action=wanted.action, spec=wanted.spec))

    await client.get_schedule_handle(schedule_id).update(refresh)
