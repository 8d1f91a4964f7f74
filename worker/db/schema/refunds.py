"""Terminations, refunds and the credit notes backing them, each keyed by reseller first."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from worker.db.schema.metadata import created_at, metadata

# A subscription is terminated once within its reseller: the primary key is the guard.
terminations = Table(
    "terminations",
    metadata,
    Column("subscription_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("request_id", Text, nullable=True),
    Column("terminated_at", DateTime(timezone=True), nullable=False),
    Column("currency", Text, nullable=True),
    Column("refund_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("rule", Text, nullable=True),
    Column("no_refund_reason", Text, nullable=True),
    Column("requested_by", Text, nullable=True),
    Column("reason", Text, nullable=True),
    created_at(),
    PrimaryKeyConstraint("reseller_id", "subscription_id"),
    UniqueConstraint("reseller_id", "request_id"),
    CheckConstraint("cause IN ('customer_request', 'expired')", name="cause"),
    CheckConstraint("refund_minor >= 0", name="refund_not_negative"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", Text, nullable=False),
    # One refund per request, subscription and credit note: guarded by the inbox, the termination's
    # key and the credit note's key, all written in the same transaction (migration 0003).
    Column("request_id", Text, nullable=False),
    Column("subscription_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("policy_amount_minor", BigInteger, nullable=False),
    Column("method", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("months_refunded", Integer, nullable=False),
    Column("cycle_months", Integer, nullable=False),
    Column("credit_note_id", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    created_at(),
    PrimaryKeyConstraint("reseller_id", "refund_id"),
    # No foreign key to terminations since migration 0012: its per-row check was the costliest part
    # of a termination batch; a refund is written only with its termination, in one transaction.
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("method IN ('account_credit', 'credit_note')", name="method"),
)

# Credit notes backing refunds: the worker's own (numbered without gaps per reseller) and the
# operator's, sent earlier from the invoice app (no number of ours). The primary key makes one
# credit note back one refund only, within its reseller.
credit_notes = Table(
    "credit_notes",
    metadata,
    Column("credit_note_id", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("number", BigInteger, nullable=True),
    Column("issued_by_worker", Boolean, nullable=False),
    Column("refund_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    created_at(),
    PrimaryKeyConstraint("reseller_id", "credit_note_id"),
    UniqueConstraint("reseller_id", "number"),
    CheckConstraint("issued_by_worker = (number IS NOT NULL)", name="numbered_iff_ours"),
    # Migration 0006: how an invoice app shows the worker's own note (null on the operator's, and on
    # notes a release before 0006 wrote during a rollout, which 0006 could not backfill).
    Column("display_number", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("amounts_include_tax", Boolean, nullable=True),
)

# The last credit-note number given per reseller. Incremented in the refund's own transaction, so
# a rolled-back refund gives its number back: no gaps.
credit_note_sequences = Table(
    "credit_note_sequences",
    metadata,
    Column("reseller_id", Text, primary_key=True),
    Column("last_number", BigInteger, nullable=False),
)
