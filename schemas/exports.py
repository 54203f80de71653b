"""What the export workflow and its sinks exchange: the outbox rows a batch carries, and a batch's outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

SinkName = Literal["warehouse", "langfuse", "otlp"]
"""Each sink has its own delivery column on `event_logs` (`<sink>_exported_at`) and its own flag."""

SINK_FLAGS: dict[SinkName, str] = {
    "warehouse": "enable_warehouse_export",
    "langfuse": "enable_langfuse_export",
    "otlp": "enable_async_trace_export",
}
"""A tenant whose flag is off has its rows marked for that sink without being sent."""

TERMINAL_JOB_EVENTS = frozenset({"job.succeeded", "job.failed", "job.cancelled", "job.cache_hit"})
"""The events after which a job's trace is whole: the Langfuse and OTLP sinks send one trace per such event."""


class OutboxEvent(BaseModel):
    """One `event_logs` row as a sink sees it."""

    id: int
    tenant_id: str
    job_id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime


class ExportBatchInput(BaseModel):
    sink: SinkName
    batch_size: int
    max_age_s: float
    """A batch smaller than `batch_size` waits until its oldest row is this old."""


class ExportBatchOutput(BaseModel):
    selected: int
    """Rows read from the outbox for this sink (0: nothing was due)."""
    sent: int
    """Of those, the rows the sink accepted (the rest were not for it, or their tenant's flag was off)."""
    more: bool
    """Another full batch is waiting: export again at once."""
    wait_s: float
    """Nothing was due: how long until the oldest pending row is due (or `max_age_s` with none pending)."""


EXPORT_WORKFLOW_TYPE = "ExportWorkflow"
EXPORT_WORKFLOW_ID_PREFIX = "kintsugi-export-"
"""One export workflow per sink in a namespace: `kintsugi-export-<sink>` (`export_workflow_id`)."""


def export_workflow_id(sink: SinkName, *, prefix: str = EXPORT_WORKFLOW_ID_PREFIX) -> str:
    return f"{prefix}{sink}"


class ExportWorkflowInput(BaseModel):
    """What an export workflow runs with; carried over unchanged when it continues as new."""

    sink: SinkName
    batch_size: int
    max_age_s: float
