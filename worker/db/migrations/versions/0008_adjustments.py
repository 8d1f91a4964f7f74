"""Operator adjustments (contract section 8): adjustments, transactions, and the ledger's entry names

Two new tables keyed by reseller first, and four nullable columns of `balance_ledger` (added only:
the release before this one keeps writing termination refunds during the rollout, and the ledger's
keys are left to the tenancy migration).

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGER_COLUMNS = ("adjustment_id", "kind", "transaction_id", "reverses")


def upgrade() -> None:
    op.create_table(
        "adjustments",
        sa.Column("reseller_id", sa.Text(), nullable=False),
        sa.Column("adjustment_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("balance_version", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=True),
        sa.Column("reverses", sa.Text(), nullable=True),
        sa.Column("refund_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("reseller_id", "adjustment_id", name="pk_adjustments"),
        sa.UniqueConstraint("reseller_id", "reverses", name="uq_adjustments_reseller_id_reverses"),
        sa.CheckConstraint(
            "kind IN ('credit', 'correction', 'transaction_refund', 'reversal')", name="ck_adjustments_kind"
        ),
        sa.CheckConstraint("balance_minor >= 0", name="ck_adjustments_balance_not_negative"),
        sa.CheckConstraint(
            "(kind = 'reversal') = (reverses IS NOT NULL)", name="ck_adjustments_reversal_iff_target"
        ),
    )
    op.create_table(
        "transactions",
        sa.Column("reseller_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reseller_id", "account_id", "transaction_id", name="pk_transactions"),
        sa.CheckConstraint("amount_minor > 0", name="ck_transactions_amount_positive"),
        sa.CheckConstraint(
            "refunded_minor BETWEEN 0 AND amount_minor", name="ck_transactions_refunded_within_amount"
        ),
    )
    for name in _LEDGER_COLUMNS:
        op.add_column("balance_ledger", sa.Column(name, sa.Text(), nullable=True))


def downgrade() -> None:
    for name in reversed(_LEDGER_COLUMNS):
        op.drop_column("balance_ledger", name)
    op.drop_table("transactions")
    op.drop_table("adjustments")
