"""Money: priced cost rows, prompt similarity, the response cache, feature flags and the audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COST_COLUMNS = (
    sa.Column("key_id", sa.String(length=64), nullable=True),
    # Rows billed before this revision were each a job's first call.
    sa.Column("call_seq", sa.Integer(), server_default="1", nullable=False),
    sa.Column("route", sa.String(length=200), nullable=True),
    # Every row before this revision was billed at a price it knew (an unknown one was billed at 0).
    sa.Column("price_known", sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column("price_source", sa.String(length=32), nullable=True),
    sa.Column("price_name", sa.String(length=200), nullable=True),
    sa.Column("input_per_mtok", sa.Float(), nullable=True),
    sa.Column("output_per_mtok", sa.Float(), nullable=True),
    sa.Column("cached_input_per_mtok", sa.Float(), nullable=True),
    sa.Column("cache_write_per_mtok", sa.Float(), nullable=True),
    sa.Column("reasoning_per_mtok", sa.Float(), nullable=True),
    sa.Column("upstream_latency_ms", sa.Float(), nullable=True),
    sa.Column("outcome", sa.String(length=16), server_default="success", nullable=False),
    sa.Column("saved_usd", sa.Float(), nullable=True),
    sa.Column("policy_version", sa.Integer(), nullable=True),
)


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("model_cost_logs") as batch:
        batch.alter_column("cost_usd", existing_type=sa.Float(), nullable=True)
        for column in COST_COLUMNS:
            batch.add_column(column)
    op.create_index("ix_model_cost_logs_tenant_created", "model_cost_logs", ["tenant_id", "created_at"])

    op.create_table(
        "prompt_signatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("exact_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_prompt_signatures_tenant_hash", "prompt_signatures", ["tenant_id", "exact_hash"])

    op.create_table(
        "prompt_bands",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("band_key", sa.String(length=300), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("band_hash", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_prompt_bands_tenant_band", "prompt_bands", ["tenant_id", "band_hash"])

    op.create_table(
        "prompt_similarity_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False, unique=True),
        sa.Column("matched_job_id", sa.String(length=255), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_prompt_similarity_logs_tenant_key_created", "prompt_similarity_logs", ["tenant_id", "key_id", "created_at"]
    )

    op.create_table(
        "response_cache",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("exact_hash", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        _created_at(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_response_cache_lookup", "response_cache", ["tenant_id", "route", "fingerprint", "exact_hash"])

    op.create_table(
        "feature_flags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("rollout_percent", sa.Integer(), server_default="100", nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", "tenant_id", name="uq_feature_flags_key_tenant"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_key_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_tenant_id", "audit_log", ["tenant_id"])


def downgrade() -> None:
    for table in ("audit_log", "feature_flags", "response_cache", "prompt_similarity_logs", "prompt_bands"):
        op.drop_table(table)
    op.drop_table("prompt_signatures")
    op.drop_index("ix_model_cost_logs_tenant_created", table_name="model_cost_logs")
    with op.batch_alter_table("model_cost_logs") as batch:
        for column in reversed(COST_COLUMNS):
            batch.drop_column(column.name)
        batch.alter_column("cost_usd", existing_type=sa.Float(), nullable=False)
