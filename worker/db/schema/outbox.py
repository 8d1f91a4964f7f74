"""Events to publish, written in the same transaction as the decision that caused them.

The event_id is the output's ce_id, fixed here (derived from the reseller and the request), so a
re-publish after a crash carries the same id. It differs across resellers: the outbox holds no
identifier a reseller chose.

Each transaction's events are one batch: a row of `outbox_batches` (published or not) and its events
in `outbox_events`, in order. Publishing marks the batch, not each event, so an event is written
once and never rewritten, and carries only the primary key's index (no foreign key to its batch,
whose per-row check would cost as much as the row; the writer stores both in one transaction).
Migration 0013, docs/performance.md "Issue 13: the fourth round".

`outbox` is the release before's table, one row per event marked sent one by one: this release
publishes what that one left unsent (worker/engine/outbox.py), and writes nothing to it, so the
release before, still running during a rollout, never publishes this one's events. A later release
drops it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Integer, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from worker.db.schema.metadata import created_at, metadata

outbox_batches = Table(
    "outbox_batches",
    metadata,
    Column("batch", BigInteger, Identity(), primary_key=True),
    Column("events", Integer, nullable=False),
    created_at(),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Index("ix_outbox_batches_unpublished", "batch", postgresql_where=text("published_at IS NULL")),
)

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("batch", BigInteger, primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("ce_type", Text, nullable=False),
    Column("ce_time", DateTime(timezone=True), nullable=False),
    # The data as JSON text, exactly as published: not JSONB, which PostgreSQL would parse on the
    # way in (`body::jsonb` reads it as JSON).
    Column("body", Text, nullable=False),
)

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
    created_at(),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Index("ix_outbox_unsent", "seq", postgresql_where=text("sent_at IS NULL")),
)
