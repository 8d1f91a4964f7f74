"""The outbox in batches: one row per transaction's events, marked published once, and the events as
text, written once

The release before stored each event as a JSONB row of `outbox` and marked each one sent with an
UPDATE, which wrote every row and its index entries twice: the outbox was about half of
PostgreSQL's time per termination (62.7 of 132.8 µs, docs/performance.md "Issue 13: the fourth
round"; with the commit's WAL, less now). This adds
`outbox_batches` and `outbox_events` (worker/db/schema/outbox.py) and leaves `outbox` as it is: the
release before, running during a rollout, goes on writing and marking its own rows there, which
this release publishes too, and never sees this release's. A later release drops `outbox`.

The way down moves what is unpublished into `outbox`, where the release before publishes it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNPUBLISHED = "published_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "outbox_batches",
        sa.Column("batch", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("batch", name=op.f("pk_outbox_batches")),
    )
    op.create_index(
        "ix_outbox_batches_unpublished",
        "outbox_batches",
        ["batch"],
        unique=False,
        postgresql_where=sa.text(_UNPUBLISHED),
    )
    op.create_table(
        "outbox_events",
        sa.Column("batch", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("ce_type", sa.Text(), nullable=False),
        sa.Column("ce_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("batch", "position", name=op.f("pk_outbox_events")),
    )


def downgrade() -> None:
    op.execute("""
        INSERT INTO outbox (event_id, topic, key, ce_type, ce_time, data, created_at)
        SELECT e.event_id, e.topic, e.key, e.ce_type, e.ce_time, e.body::jsonb, b.created_at
        FROM outbox_batches AS b JOIN outbox_events AS e ON e.batch = b.batch
        WHERE b.published_at IS NULL
        ORDER BY e.batch, e.position
        ON CONFLICT (event_id) DO NOTHING
    """)
    op.drop_table("outbox_events")
    op.drop_index(
        "ix_outbox_batches_unpublished", table_name="outbox_batches", postgresql_where=sa.text(_UNPUBLISHED)
    )
    op.drop_table("outbox_batches")
