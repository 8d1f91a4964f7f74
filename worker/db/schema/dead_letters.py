"""The originals of dead letters too large for the broker (worker/dlq/recoverer.py, fit_for_broker).

The dead letter carries a cut value and kafka_dlt-value-truncated; the whole record is here, as it
arrived. One row per original record and consumer group, so a repeat changes nothing. A record is
not yet any reseller's (it may not even parse): keyed by where it was read.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Identity, Integer, LargeBinary, Table, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY

from worker.db.schema.metadata import created_at, metadata

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
    created_at(),
    UniqueConstraint(
        "original_topic",
        "original_partition",
        "original_offset",
        "consumer_group",
        name="uq_oversize_dead_letters_original",  # the convention's name would pass 63 characters
    ),
)
