"""Replaying job histories against the current workflow code, as a deploy would."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.llm_job import LLMJobWorkflow


def replayer() -> Replayer:
    return Replayer(workflows=[LLMJobWorkflow], data_converter=pydantic_data_converter)


async def assert_replays(histories: Iterable[WorkflowHistory]) -> None:
    """Every history replays on the current code without a mismatch (names the first that does not)."""
    for history in histories:
        result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{history.workflow_id}: {result.replay_failure}"
