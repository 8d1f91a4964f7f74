"""The schema, as SQLAlchemy Core tables. Alembic migrations in worker/db/migrations create it.

Money is stored as a whole number of the currency's minor unit beside its ISO 4217 code.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _now() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


# Every input event handled, by (topic, ce_id): the idempotency key. The hash of the data tells a
# redelivery (same hash: nothing to do) from a reused id with another payload (a conflict).
inbox = Table(
    "inbox",
    metadata,
    Column("topic", Text, nullable=False),
    Column("ce_id", Text, nullable=False),
    Column("payload_sha256", LargeBinary, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("kafka_partition", Integer, nullable=True),
    Column("kafka_offset", BigInteger, nullable=True),
    _now(),
    PrimaryKeyConstraint("topic", "ce_id"),
)

# A subscription is terminated once: the primary key is the guard.
terminations = Table(
    "terminations",
    metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("request_id", Text, nullable=True, unique=True),
    Column("terminated_at", DateTime(timezone=True), nullable=False),
    Column("currency", Text, nullable=True),
    Column("refund_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("rule", Text, nullable=True),
    Column("no_refund_reason", Text, nullable=True),
    Column("requested_by", Text, nullable=True),
    Column("reason", Text, nullable=True),
    _now(),
    CheckConstraint("cause IN ('customer_request', 'expired')", name="cause"),
    CheckConstraint("refund_minor >= 0", name="refund_not_negative"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", Text, primary_key=True),
    # One refund per request, subscription and credit note: guarded by the inbox, the termination's
    # key and the credit note's key, all written in the same transaction (migration 0003).
    Column("request_id", Text, nullable=False),
    Column("subscription_id", Text, ForeignKey("terminations.subscription_id"), nullable=False),
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
    _now(),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("method IN ('account_credit', 'credit_note')", name="method"),
)

# Credit notes backing refunds: the worker's own (numbered without gaps per reseller) and the
# operator's, sent earlier from the invoice app (no number of ours). The primary key makes one
# credit note back one refund only.
credit_notes = Table(
    "credit_notes",
    metadata,
    Column("credit_note_id", Text, primary_key=True),
    Column("reseller_id", Text, nullable=False),
    Column("number", BigInteger, nullable=True),
    Column("issued_by_worker", Boolean, nullable=False),
    Column("refund_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    _now(),
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

account_balances = Table(
    "account_balances",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("balance_version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("account_id", "currency"),
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
    _now(),
    UniqueConstraint("account_id", "currency", "balance_version"),
    # Migration 0008: an operator adjustment's entry (worker/db/adjustment_tables.py); null on a
    # termination's refund, whose entry names its refund_id.
    Column("adjustment_id", Text, nullable=True),
    Column("kind", Text, nullable=True),
    Column("transaction_id", Text, nullable=True),
    Column("reverses", Text, nullable=True),
)

# Events to publish, written in the same transaction as the decision that caused them. The
# event_id is the output's ce_id, fixed here, so a re-publish after a crash carries the same id.
outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("ce_type", Text, nullable=False),
    Column("ce_time", DateTime(timezone=True), nullable=False),
    Column("data", JSONB, nullable=False),
    _now(),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Index("ix_outbox_unsent", "seq", postgresql_where=text("sent_at IS NULL")),
)

# One expiry timer per subscription, for its latest known expiry (worker/expiry/). Pending
# timers fire at due_at = expired_at + EXPIRY_GRACE_DAYS; the partial index serves that look-up.
expiry_timers = Table(
    "expiry_timers",
    metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("expired_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False),
    Column("cancelled_by", Text, nullable=True),
    Column("renewed_at", DateTime(timezone=True), nullable=True),
    Column("expiry_ce_id", Text, nullable=False),
    Column("renewal_ce_id", Text, nullable=True),
    Column("fired_at", DateTime(timezone=True), nullable=True),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("state IN ('pending', 'cancelled', 'fired')", name="state"),
    CheckConstraint("cancelled_by IN ('renewal', 'request')", name="cancelled_by"),
    CheckConstraint("(state = 'cancelled') = (cancelled_by IS NOT NULL)", name="cancelled_iff_why"),
    CheckConstraint("(state = 'fired') = (fired_at IS NOT NULL)", name="fired_iff_when"),
    CheckConstraint("due_at >= expired_at", name="due_after_expiry"),
    Index("ix_expiry_timers_pending_due", "due_at", postgresql_where=text("state = 'pending'")),
)

# Every renewal seen, whatever the timers held when it arrived: renewals and expiries come on
# different topics in no fixed order, so an expiry arriving after a renewal inside its grace
# period finds the renewal here and is born cancelled.
subscription_renewals = Table(
    "subscription_renewals",
    metadata,
    Column("subscription_id", Text, nullable=False),
    Column("renewed_at", DateTime(timezone=True), nullable=False),
    Column("account_id", Text, nullable=False),
    Column("reseller_id", Text, nullable=False),
    Column("ce_id", Text, nullable=False),
    _now(),
    PrimaryKeyConstraint("subscription_id", "renewed_at"),
)

# The originals of dead letters too large for the broker (worker/dlq/recoverer.py, fit_for_broker):
# the dead letter carries a cut value and kafka_dlt-value-truncated; the whole record is here, as
# it arrived. One row per original record and consumer group, so a repeat changes nothing.
oversize_dead_letters = Table(
    "oversize_dead_letters",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("original_topic", Text, nullable=False),
    Column("original_partition", Integer, nullable=False),
    Column("original_offset", BigInteger, nullable=False),
    Column("consumer_group", Text, nullable=False),
    Column("dead_letter_topic", Text, nullable=False),
    Column("failure_reason", Text, nullable=False),
    Column("original_timestamp_ms", BigInteger, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    # Header names and values as bytes, side by side: a name may hold what text cannot (a NUL).
    Column("header_names", ARRAY(LargeBinary), nullable=False),
    Column("header_values", ARRAY(LargeBinary), nullable=False),
    _now(),
    UniqueConstraint(
        "original_topic",
        "original_partition",
        "original_offset",
        "consumer_group",
        name="uq_oversize_dead_letters_original",  # the convention's name would pass 63 characters
    ),
)

# How far each input partition has been read into this database (migration 0004), for the expiry
# timers' low watermark (worker/domain/grace_period.py, docs/expiry.md): `read_through` is the latest
# event time read (written with each batch), `caught_up_at` the latest time the consumer group had
# read the partition to its end (written by the timer loop, from the broker's offsets).
read_progress = Table(
    "read_progress",
    metadata,
    Column("topic", Text, nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("read_through", DateTime(timezone=True), nullable=True),
    Column("caught_up_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("topic", "kafka_partition"),
)

# Expiry timers set aside because they could not fire (a value the worker cannot handle), with
# the error; keyed by the expiry that armed the timer, so a later expiry re-arms a timer that
# fires. The others go on firing (worker/expiry/firing.py).
expiry_timer_failures = Table(
    "expiry_timer_failures",
    metadata,
    Column("subscription_id", Text, nullable=False),
    Column("expiry_ce_id", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("subscription_id", "expiry_ce_id"),
)
