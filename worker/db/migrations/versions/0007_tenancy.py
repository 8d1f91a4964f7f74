"""Tenancy: every table of a reseller's data keyed by reseller_id first (contract section 7)

In place, so that columns another release added survive: `reseller_id` is added where it was
missing (inbox, balance_ledger, expiry_timer_failures) and filled from the related rows, then every
primary key, unique key and foreign key that held a reseller's identifier gets `reseller_id` first.

An inbox row holds no payload, so its reseller comes from what the event left behind: the
termination it made (by request_id), the rejection it published (its subscription's or account's
termination), the timer it armed (by expiry_ce_id) or the renewal it recorded (by ce_id). A row
none of them names gets the database's one reseller if there is only one, else `''`, a reseller no
event names (a redelivery of that old event is then taken as new, and the rules still see what it
did: its termination or timer is keyed by its own reseller).

Downgrade refuses when two resellers' rows would merge under the old keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ADDED = ("inbox", "balance_ledger", "expiry_timer_failures")

# The database's one reseller, if it has only one (NULL otherwise).
_ONLY_RESELLER = """(
    SELECT min(r) FROM (
        SELECT reseller_id FROM terminations UNION SELECT reseller_id FROM expiry_timers
        UNION SELECT reseller_id FROM subscription_renewals UNION SELECT reseller_id FROM account_balances
        UNION SELECT reseller_id FROM credit_note_sequences
    ) AS known(r) HAVING count(*) = 1
)"""

_BACKFILLS = (
    """UPDATE balance_ledger AS l SET reseller_id = b.reseller_id FROM account_balances AS b
       WHERE b.account_id = l.account_id AND b.currency = l.currency""",
    """UPDATE expiry_timer_failures AS f SET reseller_id = t.reseller_id FROM expiry_timers AS t
       WHERE t.subscription_id = f.subscription_id""",
    """UPDATE inbox AS i SET reseller_id = t.reseller_id FROM terminations AS t
       WHERE i.topic = 'termination-requested' AND t.request_id = i.ce_id""",
    """UPDATE inbox AS i SET reseller_id = coalesce(
           (SELECT t.reseller_id FROM terminations AS t WHERE t.subscription_id = o.data->>'subscription_id'),
           (SELECT t.reseller_id FROM terminations AS t WHERE t.account_id = o.data->>'account_id' LIMIT 1)
       ) FROM outbox AS o
       WHERE i.reseller_id IS NULL AND i.topic = 'termination-requested'
         AND o.topic = 'termination-rejected' AND o.data->>'request_id' = i.ce_id""",
    """UPDATE inbox AS i SET reseller_id = t.reseller_id FROM expiry_timers AS t
       WHERE i.reseller_id IS NULL AND i.topic = 'subscription-expired' AND t.expiry_ce_id = i.ce_id""",
    """UPDATE inbox AS i SET reseller_id = r.reseller_id FROM subscription_renewals AS r
       WHERE i.reseller_id IS NULL AND i.topic = 'subscription-renewed' AND r.ce_id = i.ce_id""",
)


class _Key(NamedTuple):
    """A key that gets `reseller_id` first: its name and columns before 0007 and from 0007 on."""

    table: str
    kind: str  # "primary" or "unique"
    old_name: str
    old_columns: list[str]
    new_name: str
    new_columns: list[str]


def _pk(table: str, *columns: str) -> _Key:
    return _Key(table, "primary", f"pk_{table}", list(columns), f"pk_{table}", ["reseller_id", *columns])


_KEYS = (
    _pk("inbox", "topic", "ce_id"),
    _pk("terminations", "subscription_id"),
    _Key(
        "terminations",
        "unique",
        "uq_terminations_request_id",
        ["request_id"],
        "uq_terminations_reseller_id_request_id",
        ["reseller_id", "request_id"],
    ),
    _pk("refunds", "refund_id"),
    _pk("credit_notes", "credit_note_id"),
    _pk("account_balances", "account_id", "currency"),
    _Key(
        "balance_ledger",
        "unique",
        "uq_balance_ledger_account_id_currency_balance_version",
        ["account_id", "currency", "balance_version"],
        "uq_balance_ledger_reseller_account_currency_version",
        ["reseller_id", "account_id", "currency", "balance_version"],
    ),
    _pk("expiry_timers", "subscription_id"),
    _pk("subscription_renewals", "subscription_id", "renewed_at"),
    _pk("expiry_timer_failures", "subscription_id", "expiry_ce_id"),
)

# refunds -> terminations, before and from 0007 on.
_OLD_FK = ("fk_refunds_subscription_id_terminations", ["subscription_id"])
_NEW_FK = ("fk_refunds_reseller_id_terminations", ["reseller_id", "subscription_id"])


class ResellersWouldMerge(RuntimeError):
    """Downgrading would put two resellers' rows under one key of the release before 0007."""


def upgrade() -> None:
    for table in _ADDED:
        op.add_column(table, sa.Column("reseller_id", sa.Text(), nullable=True))
    for statement in _BACKFILLS:
        op.execute(sa.text(statement))
    for table in _ADDED:  # what no related row names
        op.execute(sa.text(_fallback(table)))
    for table in _ADDED:
        op.alter_column(table, "reseller_id", nullable=False)
    op.drop_constraint(_OLD_FK[0], "refunds", type_="foreignkey")
    for key in _KEYS:
        _replace(key.table, key.kind, key.old_name, key.new_name, key.new_columns)
    op.create_foreign_key(_NEW_FK[0], "refunds", "terminations", _NEW_FK[1], _NEW_FK[1])


def downgrade() -> None:
    bind = op.get_bind()
    for key in _KEYS:
        columns = ", ".join(key.old_columns)
        merged = bind.execute(sa.text(_merging(key.table, columns))).first()
        if merged is not None:
            raise ResellersWouldMerge(
                f"cannot downgrade below 0007: {key.table} holds ({columns}) = {tuple(merged)} for more "
                "than one reseller, which the schema before 0007 cannot tell apart"
            )
    op.drop_constraint(_NEW_FK[0], "refunds", type_="foreignkey")
    for key in _KEYS:
        _replace(key.table, key.kind, key.new_name, key.old_name, key.old_columns)
    op.create_foreign_key(_OLD_FK[0], "refunds", "terminations", _OLD_FK[1], _OLD_FK[1])
    for table in _ADDED:
        op.drop_column(table, "reseller_id")


def _replace(table: str, kind: str, old_name: str, new_name: str, columns: list[str]) -> None:
    op.drop_constraint(old_name, table, type_=kind)
    if kind == "primary":
        op.create_primary_key(new_name, table, columns)
    else:
        op.create_unique_constraint(new_name, table, columns)


# Table and column names below are this module's constants, never input.


def _fallback(table: str) -> str:
    return f"UPDATE {table} SET reseller_id = coalesce({_ONLY_RESELLER}, '') WHERE reseller_id IS NULL"  # noqa: S608


def _merging(table: str, columns: str) -> str:
    """The first old key two resellers share in `table`, if any (a NULL key, a request_id of an
    expiry's termination, never clashes)."""
    first = columns.split(",")[0]
    shared = "HAVING count(DISTINCT reseller_id) > 1 LIMIT 1"
    return f"SELECT {columns} FROM {table} WHERE {first} IS NOT NULL GROUP BY {columns} {shared}"  # noqa: S608
