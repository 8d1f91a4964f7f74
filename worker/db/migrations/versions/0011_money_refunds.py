"""Money refunds through the payment service (contract section 9): instructions, payments, and the
ledger's instruction

Two new tables keyed by reseller first, and one nullable column of `balance_ledger` (added only:
the release before this one keeps writing refunds and adjustments during the rollout, and neither
reads nor writes the new tables).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status = 'instructed'"
_NOT_REPORTED = "status = 'instructed' AND overdue_reported_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "money_refund_instructions",
        sa.Column("reseller_id", sa.Text(), nullable=False),
        sa.Column("instruction_id", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("debited_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instructed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("overdue_reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settlement_ce_id", sa.Text(), nullable=True),
        sa.Column("settlement_detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("reseller_id", "instruction_id", name=op.f("pk_money_refund_instructions")),
        sa.UniqueConstraint(
            "reseller_id", "request_id", name=op.f("uq_money_refund_instructions_reseller_id_request_id")
        ),
        sa.CheckConstraint(
            "status IN ('instructed', 'succeeded', 'failed')",
            name=op.f("ck_money_refund_instructions_status"),
        ),
        sa.CheckConstraint(
            "method IN ('charge_back', 'cancel_payment')", name=op.f("ck_money_refund_instructions_method")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_money_refund_instructions_amount_positive")),
        sa.CheckConstraint(
            "debited_minor IN (0, amount_minor)",
            name=op.f("ck_money_refund_instructions_debits_all_or_nothing"),
        ),
        sa.CheckConstraint(
            "(status = 'instructed') = (settled_at IS NULL)",
            name=op.f("ck_money_refund_instructions_settled_iff_when"),
        ),
        sa.CheckConstraint(
            "due_at >= instructed_at", name=op.f("ck_money_refund_instructions_due_after_instructed")
        ),
    )
    op.create_index(
        "ix_money_refund_instructions_overdue",
        "money_refund_instructions",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text(_NOT_REPORTED),
    )
    op.create_index(
        "ix_money_refund_instructions_open",
        "money_refund_instructions",
        ["instructed_at"],
        unique=False,
        postgresql_where=sa.text(_OPEN),
    )
    op.create_table(
        "money_refund_payments",
        sa.Column("reseller_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("taken_minor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint(
            "reseller_id", "account_id", "payment_id", name=op.f("pk_money_refund_payments")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_money_refund_payments_amount_positive")),
        sa.CheckConstraint(
            "taken_minor BETWEEN 0 AND amount_minor",
            name=op.f("ck_money_refund_payments_taken_within_amount"),
        ),
    )
    op.add_column("balance_ledger", sa.Column("instruction_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("balance_ledger", "instruction_id")
    op.drop_table("money_refund_payments")
    op.drop_index(
        "ix_money_refund_instructions_open",
        table_name="money_refund_instructions",
        postgresql_where=sa.text(_OPEN),
    )
    op.drop_index(
        "ix_money_refund_instructions_overdue",
        table_name="money_refund_instructions",
        postgresql_where=sa.text(_NOT_REPORTED),
    )
    op.drop_table("money_refund_instructions")
