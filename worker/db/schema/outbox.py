"""Events to publish, written in the same transaction as the decision that caused them.

The event_id is the output's ce_id, fixed here (derived from the reseller and the request), so a
re-publish after a crash carries the same id. It differs across resellers, so it stays the key
alone: the outbox holds no identifier a reseller chose.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from worker.db.schema.metadata import created_at, metadata

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
