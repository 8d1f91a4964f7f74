"""The inbox: every input event handled, by (reseller_id, topic, ce_id), the idempotency key.

A ce_id is unique within its reseller only (contract section 7). The hash of the data tells a
redelivery (same hash: nothing to do) from a reused id with another payload (a conflict).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, PrimaryKeyConstraint, Table, Text

from worker.db.schema.metadata import created_at, metadata

inbox = Table(
    "inbox",
    metadata,
    Column("topic", Text, nullable=False),
    Column("ce_id", Text, nullable=False),
    Column("payload_sha256", LargeBinary, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("kafka_partition", Integer, nullable=True),
    Column("kafka_offset", BigInteger, nullable=True),
    created_at(),
    # Migration 0007: the reseller first in the key.
    Column("reseller_id", Text, nullable=False),
    PrimaryKeyConstraint("reseller_id", "topic", "ce_id"),
)
