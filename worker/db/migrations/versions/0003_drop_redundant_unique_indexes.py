"""Drop unique indexes that guard nothing another key does not already guard

Every request's refund row and its credit note are written together with its termination, so
the termination's primary key (one per subscription), the inbox (one per ce_id) and the credit
note's primary key (one refund per note) already keep them single; these four indexes only cost
an index insertion per refund.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DROPPED = (
    ("refunds", "uq_refunds_request_id", ["request_id"]),
    ("refunds", "uq_refunds_subscription_id", ["subscription_id"]),
    ("refunds", "uq_refunds_credit_note_id", ["credit_note_id"]),
    ("credit_notes", "uq_credit_notes_refund_id", ["refund_id"]),
)


def upgrade() -> None:
    for table, name, _ in _DROPPED:
        op.drop_constraint(op.f(name), table, type_="unique")


def downgrade() -> None:
    for table, name, columns in _DROPPED:
        op.create_unique_constraint(op.f(name), table, columns)
