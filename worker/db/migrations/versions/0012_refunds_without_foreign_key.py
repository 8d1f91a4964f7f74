"""The refunds' foreign key to terminations, dropped: its check cost PostgreSQL more than every other
statement of a termination batch together

`COPY refunds` fired the key's trigger for every row, a look-up and a row lock of the termination
written moments before in the same transaction: 57 µs of the server's CPU per request, of 144 in all
(bench/statement_cost.py, docs/performance.md "Issue 13"). The worker writes a refund only in the
transaction that writes its termination (worker/terminations/store.py), and the crash test's audit
checks that every refund has one. Dropping a constraint needs nothing from the release before this
one, which goes on writing both rows during the rollout.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEY = "fk_refunds_reseller_id_terminations"
_COLUMNS = ["reseller_id", "subscription_id"]


def upgrade() -> None:
    op.drop_constraint(_FOREIGN_KEY, "refunds", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(_FOREIGN_KEY, "refunds", "terminations", _COLUMNS, _COLUMNS)
