"""model_cost_logs: the usage details of each billed call (cache reads and writes, reasoning tokens).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("cached_input_tokens", "cache_write_input_tokens", "reasoning_tokens")


def upgrade() -> None:
    # Batch mode: SQLite recreates the table; PostgreSQL gets plain ALTER TABLEs. Rows billed before this
    # revision had no details, hence 0.
    with op.batch_alter_table("model_cost_logs") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("model_cost_logs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
