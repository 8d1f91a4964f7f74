"""read progress for the expiry timers' low watermark; expiry timers set aside

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "read_progress",
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("read_through", sa.DateTime(timezone=True), nullable=True),
        sa.Column("caught_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("topic", "kafka_partition", name=op.f("pk_read_progress")),
    )
    op.create_table(
        "expiry_timer_failures",
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("expiry_ce_id", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "expiry_ce_id", name=op.f("pk_expiry_timer_failures")),
    )


def downgrade() -> None:
    op.drop_table("expiry_timer_failures")
    op.drop_table("read_progress")
