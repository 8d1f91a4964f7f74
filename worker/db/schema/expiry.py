"""The expiry use case's tables (worker/expiry/): timers, renewals seen, timers set aside, and how
far the inputs are read. A subscription's rows are keyed by reseller first."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)

from worker.db.schema.metadata import created_at, metadata

# One expiry timer per subscription, for its latest known expiry. Pending timers fire at
# due_at = expired_at + EXPIRY_GRACE_DAYS; the partial index serves that look-up.
expiry_timers = Table(
    "expiry_timers",
    metadata,
    Column("subscription_id", Text, nullable=False),
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
    created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("reseller_id", "subscription_id"),
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
    created_at(),
    PrimaryKeyConstraint("reseller_id", "subscription_id", "renewed_at"),
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
    # Migration 0007: the reseller first in the key.
    Column("reseller_id", Text, nullable=False),
    PrimaryKeyConstraint("reseller_id", "subscription_id", "expiry_ce_id"),
)

# How far each input partition has been read into this database (migration 0004), for the low
# watermarks of the expiry timers (subscription-renewed, docs/expiry.md) and of the overdue money
# refunds (payment-refund-settled, docs/money-refunds.md; worker/domain/watermark.py):
# `read_through` is the latest event time read (written with each batch), `caught_up_at` the latest
# time the consumer group had read the partition to its end (written by the timer loops, from the
# broker's offsets). A partition carries every reseller's events: nothing here is a reseller's.
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
