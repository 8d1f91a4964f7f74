"""oversize dead letters: the originals of dead letters cut to fit the broker

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oversize_dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("original_topic", sa.Text(), nullable=False),
        sa.Column("original_partition", sa.Integer(), nullable=False),
        sa.Column("original_offset", sa.BigInteger(), nullable=False),
        sa.Column("consumer_group", sa.Text(), nullable=False),
        sa.Column("dead_letter_topic", sa.Text(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=False),
        sa.Column("original_timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("header_names", postgresql.ARRAY(sa.LargeBinary()), nullable=False),
        sa.Column("header_values", postgresql.ARRAY(sa.LargeBinary()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oversize_dead_letters")),
        sa.UniqueConstraint(
            "original_topic",
            "original_partition",
            "original_offset",
            "consumer_group",
            name="uq_oversize_dead_letters_original",
        ),
    )


def downgrade() -> None:
    op.drop_table("oversize_dead_letters")
