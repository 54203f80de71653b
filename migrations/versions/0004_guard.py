"""Guard: versioned policies and key bindings, rate-limit buckets, budgets and abuse models.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("policy_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("event_logs") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
    op.create_index("ix_event_logs_tenant_key_created", "event_logs", ["tenant_id", "key_id", "created_at"])

    op.create_table(
        "policies",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_policies_tenant_name"),
    )
    op.create_index("ix_policies_tenant_id", "policies", ["tenant_id"])

    op.create_table(
        "policy_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("policy_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("policy_id", "version", name="uq_policy_versions_policy_version"),
    )

    op.create_table(
        "rate_limit_buckets",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )

    op.create_table(
        "budget_counters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.String(length=10), nullable=False),
        sa.Column("committed_usd", sa.Float(), nullable=False),
        sa.Column("spent_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "period", "period_start", name="uq_budget_counters_period"),
    )

    op.create_table(
        "budget_reservations",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("month", sa.String(length=10), nullable=False),
        sa.Column("amount_usd", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("settled_usd", sa.Float(), nullable=True),
        _at("created_at"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_budget_reservations_job_id", "budget_reservations", ["job_id"])

    op.create_table(
        "abuse_models",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        _at("trained_at"),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("model", sa.LargeBinary(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
    )


def downgrade() -> None:
    for table in ("abuse_models", "budget_reservations", "budget_counters", "rate_limit_buckets", "policy_versions"):
        op.drop_table(table)
    op.drop_index("ix_policies_tenant_id", table_name="policies")
    op.drop_table("policies")
    op.drop_index("ix_event_logs_tenant_key_created", table_name="event_logs")
    with op.batch_alter_table("event_logs") as batch:
        batch.drop_column("key_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("policy_id")
