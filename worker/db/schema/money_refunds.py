"""The tables of money refunds through the payment service (contract section 9, worker/money_refunds/),
keyed by reseller first. Migration 0011.

`money_refund_instructions` holds each accepted request once, as the instruction sent to the payment
service, and how far it got: `instructed`, then `succeeded` or `failed` once settled (a refusal
writes nothing but its inbox row and its event). An open instruction past `due_at` (instructed_at +
MONEY_REFUND_TIMEOUT_HOURS) is reported overdue once (`overdue_reported_at`) and stays open.
`money_refund_payments` keeps each payment's amount as first stated and what its instructions that
did not fail took. The credits a refund takes out of the balance, and gives back when it fails, are
rows of `balance_ledger` naming the instruction (worker/db/schema/balances.py).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

from worker.db.schema.metadata import created_at, metadata

OPEN = "status = 'instructed'"
"""An instruction the payment service has not settled yet (overdue or not)."""
NOT_REPORTED = f"{OPEN} AND overdue_reported_at IS NULL"
"""An open instruction not yet reported overdue: what the overdue timer looks at."""

money_refund_instructions = Table(
    "money_refund_instructions",
    metadata,
    Column("reseller_id", Text, nullable=False),
    Column("instruction_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("debited_minor", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("instructed_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("overdue_reported_at", DateTime(timezone=True), nullable=True),
    # The payment service's settled_at, its ce_id and detail, once settled.
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("settlement_ce_id", Text, nullable=True),
    Column("settlement_detail", Text, nullable=True),
    created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("reseller_id", "instruction_id"),
    UniqueConstraint("reseller_id", "request_id"),
    CheckConstraint("status IN ('instructed', 'succeeded', 'failed')", name="status"),
    CheckConstraint("method IN ('charge_back', 'cancel_payment')", name="method"),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("debited_minor IN (0, amount_minor)", name="debits_all_or_nothing"),
    CheckConstraint("(status = 'instructed') = (settled_at IS NULL)", name="settled_iff_when"),
    CheckConstraint("due_at >= instructed_at", name="due_after_instructed"),
    Index("ix_money_refund_instructions_overdue", "due_at", postgresql_where=text(NOT_REPORTED)),
    Index("ix_money_refund_instructions_open", "instructed_at", postgresql_where=text(OPEN)),
)

money_refund_payments = Table(
    "money_refund_payments",
    metadata,
    Column("reseller_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("taken_minor", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    created_at(),
    PrimaryKeyConstraint("reseller_id", "account_id", "payment_id"),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("taken_minor BETWEEN 0 AND amount_minor", name="taken_within_amount"),
)
