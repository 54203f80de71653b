"""LLMJobWorkflow stays deterministic: recorded histories, of this revision and older ones, and a fresh one,
replay without a mismatch.

A mismatch means a change to the workflow would break the jobs that are running when it is deployed. So a
change to the commands the workflow issues (which activities, timers, search-attribute upserts, in which order)
goes under a new `JobInput.revision`: bump `schemas.jobs.JOB_REVISION`, keep the old path for jobs of the older
revision (`if self._input.revision >= N`), move `tests/fixtures/histories/*.json` to
`tests/fixtures/histories/revision-<old>/` and re-record (`python -m tests.support.record_histories`). Every
older revision's histories keep replaying here, which proves its jobs in flight survive the deploy; a revision's
path and histories may go once no job of it can still be running.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from domain.traces.history import first_payload
from schemas.jobs import JOB_REVISION
from tests.support.common import HELLO, HISTORIES
from tests.support.harness import Harness
from tests.support.record_histories import SCENARIOS
from tests.support.replay import replayer

OLDER_REVISIONS = sorted(HISTORIES.glob("revision-*/*.json"))
"""Histories recorded by earlier revisions of the workflow, which the current code must still replay."""
RECORDED = [*(HISTORIES / f"{name}.json" for name in sorted(SCENARIOS)), *OLDER_REVISIONS]


def _name(path: Path) -> str:
    return str(path.relative_to(HISTORIES).with_suffix(""))


def _revision(path: Path) -> int:
    """The `JobInput.revision` a recorded job was started with (absent, 1, before revisions)."""
    start = json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
    job_input = first_payload(start["input"])
    return int(job_input.get("revision", 1))


def _recorded(path: Path) -> WorkflowHistory:
    raw = json.loads(path.read_text())
    workflow_id = raw["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    return WorkflowHistory.from_json(workflow_id, raw)


def test_every_scenario_has_a_recorded_history() -> None:
    assert sorted(p.stem for p in HISTORIES.glob("*.json")) == sorted(SCENARIOS)


@pytest.mark.parametrize("path", RECORDED, ids=_name)
def test_each_history_is_of_the_revision_it_is_filed_under(path: Path) -> None:
    filed_under = int(path.parent.name.removeprefix("revision-")) if path.parent != HISTORIES else JOB_REVISION

    assert _revision(path) == filed_under


@pytest.mark.parametrize("path", RECORDED, ids=_name)
async def test_recorded_history_replays(path: Path) -> None:
    result = await replayer().replay_workflow(_recorded(path))

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
