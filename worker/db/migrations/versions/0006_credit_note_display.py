"""Credit notes as invoice apps show them: display number, reason, whether amounts include tax

Three nullable columns, so the release before this one keeps inserting credit notes during the
rollout. The worker's notes already stored get their display number, their termination's reason
and `amounts_include_tax = true` (what the worker writes from now on); the operator's notes, chosen
from the invoice app, keep all three null.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("display_number", sa.Text), ("reason", sa.Text), ("amounts_include_tax", sa.Boolean))

# As worker.domain.never_twice.credit_note_display_number: six digits at least, never cut
# (lpad alone would cut a seventh digit).
_BACKFILL = sa.text("""
    UPDATE credit_notes AS n SET
        display_number = 'CN-' || n.reseller_id || '-'
            || CASE WHEN n.number < 1000000 THEN lpad(n.number::text, 6, '0') ELSE n.number::text END,
        reason = t.reason,
        amounts_include_tax = true
    FROM refunds AS r
    JOIN terminations AS t ON t.subscription_id = r.subscription_id
    WHERE n.issued_by_worker AND r.refund_id = n.refund_id
""")


def upgrade() -> None:
    for name, kind in _COLUMNS:  # a Column belongs to one table: a new one each run
        op.add_column("credit_notes", sa.Column(name, kind(), nullable=True))
    op.execute(_BACKFILL)


def downgrade() -> None:
    for name, _ in reversed(_COLUMNS):
        op.drop_column("credit_notes", name)
