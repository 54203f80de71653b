"""Traces of what the recorded job histories do not hold: child workflows (recursively, read by the loader) and
an activity being retried right now (known only from `describe()`).

Both run tiny test-only workflows on the dev server (`temporal` fixture), read their histories back as the
loader does, and build the trace.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from google.protobuf.json_format import MessageToDict
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ChildWorkflowError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from client.job_traces import read_child_histories
from domain.traces.build import build_trace, walk
from domain.traces.otlp import span_id_of, trace_to_otlp
from domain.traces.pending import pending_activities
from schemas.traces import Span
from tests.domain.test_trace_otlp import decode, spans_of

QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3)


@activity.defn
async def flaky() -> str:
    if activity.info().attempt == 1:
        raise ApplicationError("first attempt fails", type="upstream_error")
    return "ok"


@activity.defn
async def tally() -> int:
    return 1


@activity.defn
async def always_fails() -> None:
    raise ApplicationError("upstream down", type="upstream_error")


@workflow.defn
class Leaf:
    @workflow.run
    async def run(self) -> str:
        return str(
            await workflow.execute_activity(
                flaky, start_to_close_timeout=timedelta(seconds=5), retry_policy=QUICK_RETRY
            )
        )


@workflow.defn
class Middle:
    @workflow.run
    async def run(self) -> str:
        await workflow.execute_local_activity(tally, start_to_close_timeout=timedelta(seconds=5))
        return str(await workflow.execute_child_workflow(Leaf.run, id=f"{workflow.info().workflow_id}-leaf"))


@workflow.defn
class Refusing:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("refused", type="policy_refused", non_retryable=True)


@workflow.defn
class Parent:
    @workflow.run
    async def run(self) -> str:
        base = workflow.info().workflow_id
        result = await workflow.execute_child_workflow(Middle.run, id=f"{base}-middle")
        try:
            await workflow.execute_child_workflow(Refusing.run, id=f"{base}-refusing")
        except ChildWorkflowError:
            pass
        return result


@workflow.defn
class Stuck:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            always_fails,
            activity_id="call-1",
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(hours=1), maximum_attempts=5),
        )


def worker(temporal: Client, task_queue: str) -> Worker:
    return Worker(
        temporal,
        task_queue=task_queue,
        workflows=[Parent, Middle, Leaf, Refusing, Stuck],
        activities=[flaky, tally, always_fails],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


def children(span: Span) -> list[tuple[str, str, str]]:
    return [(child.kind, child.name, child.status) for child in span.children]


async def test_child_workflows_are_spans_filled_from_their_own_histories(temporal: Client) -> None:
    task_queue = f"tq-{uuid.uuid4().hex[:10]}"
    async with worker(temporal, task_queue):
        handle = await temporal.start_workflow(Parent.run, id=f"parent-{task_queue}", task_queue=task_queue)
        assert await handle.result() == "ok"
    history = (await handle.fetch_history()).to_json_dict()

    found = await read_child_histories(temporal, history)
    trace = build_trace(handle.id, history, child_history=lambda wid, rid: found.get((wid, rid)))

    assert children(trace.root) == [
        ("child_workflow", "Middle", "ok"),
        ("child_workflow", "Refusing", "error"),
    ]
    middle, refusing = trace.root.children
    assert refusing.attributes["failure"]["type"] == "policy_refused"
    assert children(middle) == [("local_activity", "tally", "ok"), ("child_workflow", "Leaf", "ok")]
    [call] = middle.children[1].children
    assert (call.kind, call.name, call.status, call.attributes["attempts"]) == ("activity", "flaky", "ok", 2)
    assert call.attributes["last_failure"]["message"] == "first attempt fails"
    assert [event.name for event in call.events] == ["attempt 2 started", "attempt 2 succeeded"]
    spans = walk(trace.root)
    assert len({span.span_id for span in spans}) == len(spans)
    for span in spans:
        assert all(child.parent_id == span.span_id for child in span.children)

    # One trace for a collector: the grandchild's call hangs under the grandchild's span.
    exported = {span.span_id: span for span in spans_of(decode(trace_to_otlp(trace)))}
    leaf_span = exported[bytes.fromhex(span_id_of(trace.job_id, middle.children[1].span_id))]
    assert exported[bytes.fromhex(span_id_of(trace.job_id, call.span_id))].parent_span_id == leaf_span.span_id
    assert len(exported) == len(spans)


async def test_a_child_whose_history_is_gone_is_a_span_without_children(temporal: Client) -> None:
    task_queue = f"tq-{uuid.uuid4().hex[:10]}"
    async with worker(temporal, task_queue):
        handle = await temporal.start_workflow(Parent.run, id=f"parent-{task_queue}", task_queue=task_queue)
        await handle.result()
    history = (await handle.fetch_history()).to_json_dict()

    trace = build_trace(handle.id, history, child_history=lambda wid, rid: None)

    assert [(span.name, span.children) for span in trace.root.children] == [("Middle", []), ("Refusing", [])]


async def until_retrying(handle: WorkflowHandle[Stuck, None]) -> dict[str, object]:
    """The description once the activity's first attempt failed and its second waits for its backoff."""
    for _ in range(500):
        description = MessageToDict((await handle.describe()).raw_description)
        pending = description.get("pendingActivities") or []
        if pending and pending[0].get("attempt", 1) >= 2:
            return description
        await asyncio.sleep(0.01)
    raise AssertionError("the activity never failed its first attempt")


async def test_an_activity_waiting_to_retry_shows_its_attempt_next_retry_and_last_failure(temporal: Client) -> None:
    task_queue = f"tq-{uuid.uuid4().hex[:10]}"
    async with worker(temporal, task_queue):
        handle = await temporal.start_workflow(Stuck.run, id=f"stuck-{task_queue}", task_queue=task_queue)
        try:
            description = await until_retrying(handle)
            history = (await handle.fetch_history()).to_json_dict()
        finally:
            await handle.terminate("test over")

    trace = build_trace(handle.id, history, pending=pending_activities(description))

    [call] = trace.root.children
    assert (call.status, call.end_time) == ("running", None)
    assert call.attributes["attempts"] == 2 and call.attributes["maximum_attempts"] == 5
    assert call.attributes["state"] == "scheduled"
    assert call.attributes["last_failure"] == {"message": "upstream down", "type": "upstream_error"}
    assert call.attributes["next_attempt_at"] > call.start_time.isoformat()
