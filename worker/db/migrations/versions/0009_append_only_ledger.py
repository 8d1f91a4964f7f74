"""The ledger is append-only: PostgreSQL refuses any UPDATE, DELETE or TRUNCATE of balance_ledger

A balance is the sum of its ledger's entries, and a wrong entry is answered by its reversal
(contract section 8), never edited. The worker's code only inserts; these triggers make the
database say so too, to any client: a fix applied by hand with psql fails, naming the rule.
`refund-worker audit` still checks the sums, against what a superuser can do around the trigger.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSAL = "balance_ledger is append-only: a wrong entry is answered by its reversal, never edited"


def upgrade() -> None:
    op.execute(f"""
        CREATE FUNCTION balance_ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{REFUSAL} (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
        END
        $$
    """)
    op.execute("""
        CREATE TRIGGER balance_ledger_append_only BEFORE UPDATE OR DELETE ON balance_ledger
        FOR EACH ROW EXECUTE FUNCTION balance_ledger_refuse_change()
    """)
    op.execute("""
        CREATE TRIGGER balance_ledger_no_truncate BEFORE TRUNCATE ON balance_ledger
        FOR EACH STATEMENT EXECUTE FUNCTION balance_ledger_refuse_change()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER balance_ledger_no_truncate ON balance_ledger")
    op.execute("DROP TRIGGER balance_ledger_append_only ON balance_ledger")
    op.execute("DROP FUNCTION balance_ledger_refuse_change()")
