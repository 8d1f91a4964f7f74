"""The invoice app's credit notes (contract section 10, worker/credit_notes/), keyed by reseller first.

A note is recorded as it arrives and then used at most once: linked to the refund it is
(`refund_id`: linked automatically to its subscription's termination, or named by the operator),
or reported as a conflict with the subscription's account-credit refund (`conflict_refund_id`),
never both. The worker's own notes, and every note that backs a refund, are in `credit_notes`.
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
    text,
)

from worker.db.schema.metadata import created_at, metadata

invoice_credit_notes = Table(
    "invoice_credit_notes",
    metadata,
    Column("credit_note_id", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("subscription_id", Text, nullable=True),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("number", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("ce_id", Text, nullable=False),
    Column("refund_id", Text, nullable=True),
    Column("conflict_refund_id", Text, nullable=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
    created_at(),
    PrimaryKeyConstraint("reseller_id", "credit_note_id"),
    CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    CheckConstraint("refund_id IS NULL OR conflict_refund_id IS NULL", name="linked_or_conflict"),
    CheckConstraint(
        "(used_at IS NULL) = (refund_id IS NULL AND conflict_refund_id IS NULL)", name="used_iff_when"
    ),
    # A termination probes its subscription's unused notes.
    Index(
        "ix_invoice_credit_notes_unused",
        "reseller_id",
        "subscription_id",
        postgresql_where=text(
            "subscription_id IS NOT NULL AND refund_id IS NULL AND conflict_refund_id IS NULL"
        ),
    ),
)
