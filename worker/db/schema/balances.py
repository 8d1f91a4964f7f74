"""Accounts' available credits and their append-only ledger, keyed by reseller first."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

from worker.db.schema.metadata import created_at, metadata

account_balances = Table(
    "account_balances",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("balance_version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("reseller_id", "account_id", "currency"),
)

# Append-only: every change of an account's available credits, one row per balance_version.
balance_ledger = Table(
    "balance_ledger",
    metadata,
    Column("entry_id", BigInteger, Identity(), primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("balance_version", BigInteger, nullable=False),
    Column("delta_minor", BigInteger, nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("cause", Text, nullable=False),
    Column("refund_id", Text, nullable=True),
    Column("event_id", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    created_at(),
    # Migration 0007: the reseller first in the key.
    Column("reseller_id", Text, nullable=False),
    # Migration 0008: an operator adjustment's entry (worker/db/schema/adjustments.py); null on a
    # termination's refund, whose entry names its refund_id.
    Column("adjustment_id", Text, nullable=True),
    Column("kind", Text, nullable=True),
    Column("transaction_id", Text, nullable=True),
    Column("reverses", Text, nullable=True),
    # Migration 0011: a money refund's entry (worker/db/schema/money_refunds.py): the credits it took,
    # or gave back when the payment service could not return the money.
    Column("instruction_id", Text, nullable=True),
    UniqueConstraint(
        "reseller_id",
        "account_id",
        "currency",
        "balance_version",
        name="uq_balance_ledger_reseller_account_currency_version",  # the convention's passes 63
    ),
)
