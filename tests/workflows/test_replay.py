"""LLMJobWorkflow stays deterministic: recorded histories, and a fresh one, replay without a mismatch.

A failure here means a change to the workflow would break jobs that are running when it is deployed: guard
the change with `workflow.patched`, or re-record (`python -m tests.support.record_histories`) if no job can be
running the old code.
"""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.support.common import HELLO, HISTORIES
from tests.support.harness import Harness
from tests.support.record_histories import SCENARIOS
from workflows.llm_job import LLMJobWorkflow


def replayer() -> Replayer:
    return Replayer(workflows=[LLMJobWorkflow], data_converter=pydantic_data_converter)


def test_every_scenario_has_a_recorded_history() -> None:
    assert sorted(p.stem for p in HISTORIES.glob("*.json")) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_recorded_history_replays(name: str) -> None:
    raw = json.loads((HISTORIES / f"{name}.json").read_text())
    workflow_id = raw["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]

    result = await replayer().replay_workflow(WorkflowHistory.from_json(workflow_id, raw))

    assert result.replay_failure is None


async def test_fresh_parked_and_repaired_history_replays(kintsugi: Harness) -> None:
    kintsugi.upstream.configure(kintsugi.model("a"), fail_always=True, status=500)
    job = (await kintsugi.submit({"model": "primary", "messages": HELLO, "on_exhausted": "park"})).json()
    await kintsugi.wait_status(job["id"], "parked")
    kintsugi.upstream.configure(kintsugi.model("a"))
    repair = await kintsugi.http.post(f"/v1/jobs/{job['id']}/repair", json={"action": "retry"}, headers=kintsugi.admin)
    assert repair.status_code == 202, repair.text
    await kintsugi.wait_status(job["id"], "succeeded")

    history = await kintsugi.temporal.get_workflow_handle(job["id"]).fetch_history()

    result = await replayer().replay_workflow(history)
    assert result.replay_failure is None
    assert any(e.HasField("workflow_execution_update_completed_event_attributes") for e in history.events)
