"""Observe: per-sink delivery state on the outbox (`event_logs`).

`exported_at` (never written) becomes `warehouse_exported_at`; Langfuse and the OTLP trace export get their own
columns, each indexed with the id so a sink's pending rows are read oldest first.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SINKS = ("warehouse", "langfuse", "otlp")


def upgrade() -> None:
    with op.batch_alter_table("event_logs") as batch:
        batch.alter_column("exported_at", new_column_name="warehouse_exported_at")
        batch.add_column(sa.Column("langfuse_exported_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("otlp_exported_at", sa.DateTime(timezone=True), nullable=True))
    for sink in _SINKS:
        op.create_index(f"ix_event_logs_pending_{sink}", "event_logs", [f"{sink}_exported_at", "id"])
    op.create_index("ix_event_logs_tenant_created", "event_logs", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_event_logs_tenant_created", table_name="event_logs")
    for sink in _SINKS:
        op.drop_index(f"ix_event_logs_pending_{sink}", table_name="event_logs")
    with op.batch_alter_table("event_logs") as batch:
        batch.drop_column("otlp_exported_at")
        batch.drop_column("langfuse_exported_at")
        batch.alter_column("warehouse_exported_at", new_column_name="exported_at")
