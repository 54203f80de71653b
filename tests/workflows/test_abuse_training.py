"""AbuseTrainingWorkflow on the time-skipping server with fake activities (registered under the real names), its
recorded history replayed, and the hourly schedule created idempotently on a real dev server.

Re-record the history after changing the workflow's commands: `python -m tests.workflows.test_abuse_training`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.abuse import HISTORY, TENANT_PAGE
from schemas.abuse import (
    AbuseTrainingInput,
    AbuseTrainingOutput,
    TenantsWithHistoryInput,
    TenantsWithHistoryOutput,
    TrainTenantInput,
    TrainTenantOutput,
)
from settings import Settings
from tests.support.common import HISTORIES
from workflows.abuse_training import EVERY, AbuseTrainingWorkflow, ensure_abuse_training_schedule

RECORDED = HISTORIES / "abuse_training" / "three_tenants.json"
"""Beside, not among, the job histories: `tests/workflows/test_replay.py` expects exactly one per job scenario."""


class FakeTraining:
    """The training activities, scripted: which tenants have history, and how each one's training goes."""

    def __init__(
        self, tenants: list[str], *, little: Collection[str] = (), failing: dict[str, int] | None = None
    ) -> None:
        self.tenants = sorted(tenants)
        self.little = set(little)
        self.failing = dict(failing or {})
        """Tenant -> attempts that fail before one succeeds (more than the retry policy allows: never)."""
        self.listings: list[TenantsWithHistoryInput] = []
        self.attempts: list[TrainTenantInput] = []

    @activity.defn(name="tenants_with_history")
    async def tenants_with_history(self, input: TenantsWithHistoryInput) -> TenantsWithHistoryOutput:
        self.listings.append(input)
        after = [t for t in self.tenants if input.after is None or t > input.after]
        return TenantsWithHistoryOutput(tenant_ids=after[: input.limit])

    @activity.defn(name="train_tenant")
    async def train_tenant(self, input: TrainTenantInput) -> TrainTenantOutput:
        self.attempts.append(input)
        if self.failing.get(input.tenant_id, 0) > 0:
            self.failing[input.tenant_id] -= 1
            raise ApplicationError(f"database unavailable for {input.tenant_id}")
        if input.tenant_id in self.little:
            return TrainTenantOutput(tenant_id=input.tenant_id, outcome="too_little_history", windows=12)
        return TrainTenantOutput(tenant_id=input.tenant_id, outcome="trained", windows=500)

    def trained(self, tenant_id: str) -> int:
        return sum(1 for a in self.attempts if a.tenant_id == tenant_id)


async def run(env: WorkflowEnvironment, fake: FakeTraining, input: AbuseTrainingInput | None = None) -> Any:
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[AbuseTrainingWorkflow],
        activities=[fake.tenants_with_history, fake.train_tenant],
    ):
        handle = await env.client.start_workflow(
            AbuseTrainingWorkflow.run,
            input or AbuseTrainingInput(),
            id=f"abuse-training-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        return handle, await handle.result()


NEVER = 99
"""Attempts failing before a success: more than the training retry policy's three."""


async def test_every_tenant_with_history_is_trained_page_by_page(env: WorkflowEnvironment) -> None:
    tenants = [f"t{i:03d}" for i in range(TENANT_PAGE * 2 + 5)]
    fake = FakeTraining(tenants, little={"t001"}, failing={"t002": NEVER})

    _, result = await run(env, fake)

    assert result == AbuseTrainingOutput(trained=len(tenants) - 2, too_little_history=1, failed=["t002"])
    assert [listing.after for listing in fake.listings] == [None, "t099", "t199"]
    assert {a.tenant_id for a in fake.attempts} == set(tenants)
    # One history for the whole run: the week before it started.
    until = fake.listings[0].until
    assert {(a.since, a.until) for a in fake.attempts} == {(until - HISTORY, until)}
    assert all((listing.since, listing.until) == (until - HISTORY, until) for listing in fake.listings)


async def test_a_tenants_training_is_retried_and_one_that_keeps_failing_is_left_for_the_next_run(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeTraining(["flaky", "broken", "fine"], failing={"flaky": 2, "broken": NEVER})

    _, result = await run(env, fake)

    assert result == AbuseTrainingOutput(trained=2, failed=["broken"])
    assert (fake.trained("flaky"), fake.trained("broken"), fake.trained("fine")) == (3, 3, 1)


async def test_a_run_continued_as_new_resumes_after_its_cursor_with_its_totals(env: WorkflowEnvironment) -> None:
    fake = FakeTraining(["a", "b", "c", "d"])
    until = (await env.get_current_time()) - timedelta(hours=3)
    carried = AbuseTrainingOutput(trained=7, too_little_history=2, failed=["x"])

    _, result = await run(env, fake, AbuseTrainingInput(until=until, after="b", done=carried))

    assert result == AbuseTrainingOutput(trained=9, too_little_history=2, failed=["x"])
    assert sorted(a.tenant_id for a in fake.attempts) == ["c", "d"]
    assert fake.listings[0].since == until - HISTORY


async def test_with_no_tenant_to_train_the_run_ends_at_once(env: WorkflowEnvironment) -> None:
    _, result = await run(env, FakeTraining([]))

    assert result == AbuseTrainingOutput()


# --- replay ---------------------------------------------------------------------------------------------


def replayer() -> Replayer:
    return Replayer(workflows=[AbuseTrainingWorkflow], data_converter=pydantic_data_converter)


def scenario() -> FakeTraining:
    return FakeTraining(["acme", "globex", "initech"], little={"globex"}, failing={"initech": NEVER})


def _without_stack_traces(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_stack_traces(v) for k, v in value.items() if k != "stackTrace"}
    if isinstance(value, list):
        return [_without_stack_traces(v) for v in value]
    return value


async def test_the_recorded_history_replays() -> None:
    raw = json.loads(RECORDED.read_text())

    result = await replayer().replay_workflow(WorkflowHistory.from_json(RECORDED.stem, raw))

    assert result.replay_failure is None


async def test_a_fresh_history_replays(env: WorkflowEnvironment) -> None:
    handle, result = await run(env, scenario())
    assert result == AbuseTrainingOutput(trained=1, too_little_history=1, failed=["initech"])

    replayed = await replayer().replay_workflow(await handle.fetch_history())

    assert replayed.replay_failure is None


async def record(path: Path = RECORDED) -> None:
    """Run `scenario` on a time-skipping server and write its history (as `temporal workflow show` would)."""
    from tests.workflows.conftest import time_skipping_server

    async with time_skipping_server() as env:
        handle, _ = await run(env, scenario())
        history = await handle.fetch_history()
    text = json.dumps(_without_stack_traces(history.to_json_dict()), indent=1) + "\n"
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(path.write_text, text)
    print(f"{len(history.events)} events -> {path}")


# --- the schedule ---------------------------------------------------------------------------------------


@pytest.fixture
async def schedule_id(temporal: Client) -> AsyncIterator[str]:
    schedule_id = f"abuse-training-test-{uuid.uuid4()}"
    yield schedule_id
    await temporal.get_schedule_handle(schedule_id).delete()


def settings(task_queue: str) -> Settings:
    return Settings(env="test", admin_api_key="unused", task_queue=task_queue)


async def test_the_hourly_schedule_is_created_once_and_follows_the_task_queue(
    temporal: Client, schedule_id: str
) -> None:
    await ensure_abuse_training_schedule(temporal, settings("queue-a"), schedule_id=schedule_id)
    await ensure_abuse_training_schedule(temporal, settings("queue-a"), schedule_id=schedule_id)  # another worker
    handle = temporal.get_schedule_handle(schedule_id)
    created = await handle.describe()
    action = created.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue) == ("AbuseTrainingWorkflow", "queue-a")
    assert [spec.every for spec in created.schedule.spec.intervals] == [EVERY]

    await handle.pause(note="an operator's pause")
    await ensure_abuse_training_schedule(temporal, settings("queue-b"), schedule_id=schedule_id)  # a redeploy

    moved = await handle.describe()
    assert isinstance(moved.schedule.action, ScheduleActionStartWorkflow)
    assert moved.schedule.action.task_queue == "queue-b"
    assert moved.schedule.state.paused


if __name__ == "__main__":
    asyncio.run(record())
