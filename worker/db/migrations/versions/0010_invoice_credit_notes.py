"""The invoice app's credit notes (contract section 10): recorded, then linked to a refund or reported
as a conflict

A new table; nothing existing changes, so the release before this one runs on during the rollout
(it neither reads nor writes the table).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNUSED = "subscription_id IS NOT NULL AND refund_id IS NULL AND conflict_refund_id IS NULL"


def upgrade() -> None:
    op.create_table(
        "invoice_credit_notes",
        sa.Column("credit_note_id", sa.Text(), nullable=False),
        sa.Column("reseller_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("subscription_id", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ce_id", sa.Text(), nullable=False),
        sa.Column("refund_id", sa.Text(), nullable=True),
        sa.Column("conflict_refund_id", sa.Text(), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_invoice_credit_notes_amount_not_negative")),
        sa.CheckConstraint(
            "refund_id IS NULL OR conflict_refund_id IS NULL",
            name=op.f("ck_invoice_credit_notes_linked_or_conflict"),
        ),
        sa.CheckConstraint(
            "(used_at IS NULL) = (refund_id IS NULL AND conflict_refund_id IS NULL)",
            name=op.f("ck_invoice_credit_notes_used_iff_when"),
        ),
        sa.PrimaryKeyConstraint("reseller_id", "credit_note_id", name=op.f("pk_invoice_credit_notes")),
    )
    op.create_index(
        "ix_invoice_credit_notes_unused",
        "invoice_credit_notes",
        ["reseller_id", "subscription_id"],
        unique=False,
        postgresql_where=sa.text(_UNUSED),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_invoice_credit_notes_unused", table_name="invoice_credit_notes", postgresql_where=sa.text(_UNUSED)
    )
    op.drop_table("invoice_credit_notes")
