"""The tables of operator adjustments (contract section 8), keyed by reseller first. Migration 0008.

`adjustments` holds each applied adjustment once (a refusal writes nothing but its inbox row and its
event); a reversal names what it takes back in `reverses`, unique per reseller, so a target is
reversed once whatever two batches race. `transactions` keeps each refunded charge's full amount as
first stated and what its unreversed refunds took. The balance changes themselves are rows of
`balance_ledger` (worker/db/schema/balances.py), which nothing ever updates or deletes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from worker.db.schema.metadata import metadata

adjustments = Table(
    "adjustments",
    metadata,
    Column("reseller_id", Text, nullable=False),
    Column("adjustment_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("delta_minor", BigInteger, nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("balance_version", BigInteger, nullable=False),
    Column("transaction_id", Text, nullable=True),
    Column("reverses", Text, nullable=True),
    Column("refund_id", Text, nullable=True),
    Column("reason", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("reseller_id", "adjustment_id"),
    UniqueConstraint("reseller_id", "reverses"),
    CheckConstraint("kind IN ('credit', 'correction', 'transaction_refund', 'reversal')", name="kind"),
    CheckConstraint("balance_minor >= 0", name="balance_not_negative"),
    CheckConstraint("(kind = 'reversal') = (reverses IS NOT NULL)", name="reversal_iff_target"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("reseller_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("transaction_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("reseller_id", "account_id", "transaction_id"),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("refunded_minor BETWEEN 0 AND amount_minor", name="refunded_within_amount"),
)
