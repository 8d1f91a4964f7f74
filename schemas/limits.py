"""The largest input the worker takes, field by field: one place, documented in docs/input-limits.md.

Anything beyond these is poison (dead-lettered at once, or a per-line error in `quote`), never work
that can stall a partition: an id too long for a btree index row, a string that makes a step slow, a
date that overflows when it is shifted to UTC, by the grace period or by a cycle's months, a
dead letter too large for the broker.
"""

from __future__ import annotations

ID_MAX_LENGTH = 128
"""Characters of an identifier: subscription_id, account_id, reseller_id, credit_note_id, ce_id.

PostgreSQL refuses a btree index row above 2,704 bytes; five ids of 128 characters of 4-byte UTF-8
(2,560 bytes) still fit one composite key."""

NAME_MAX_LENGTH = 256
"""Characters of a short human text: requested_by, product."""

REASON_MAX_LENGTH = 2000
"""Characters of the free-text reason of a termination request."""

MONEY_MAX_LENGTH = 64
"""Characters of a money string; far above any real amount (the ledger holds 18 digits)."""

AMOUNT_MAX_DIGITS = 18
"""Digits of an amount in the currency's minor units: the ledger holds amounts as BIGINT, where 18
digits always fit (and no real refund comes close)."""

CURRENCY_LENGTH = 3
"""An ISO 4217 code."""

TIME_ZONE_MAX_LENGTH = 64
"""Characters of an IANA zone name (the longest in the database has 32)."""

TIMESTAMP_MAX_LENGTH = 40
"""Characters of an RFC 3339 timestamp: 2021-04-12T10:00:00.123456789+08:00 has 35."""

EARLIEST_YEAR = 1000
LATEST_YEAR = 8999
"""Dates and timestamps (local wall-clock years) lie in EARLIEST_YEAR..LATEST_YEAR, far from Python's
and PostgreSQL's edges (year 1 and 9999), so that shifting them to UTC (offsets reach 24 h), adding
the grace period or a cycle's months never overflows."""

CYCLE_MONTHS_MAX = 1200
"""A cycle of at most a hundred years."""

PERMISSIONS_MAX_ITEMS = 100
"""Permissions of an adjustment's actor (each a short text, NAME_MAX_LENGTH): far more than any role
holds, and a bound on what one request makes the rules look through."""

ATTRIBUTE_MAX_LENGTH = 1024
"""Characters of a CloudEvents attribute other than `id` (source, type, subject, dataschema,
extensions) and of the content-type header."""

KEY_MAX_BYTES = 4 * ID_MAX_LENGTH
"""Bytes of a Kafka key: the contract's keys are ids."""

VALUE_MAX_BYTES = 256 * 1024
"""Bytes of a Kafka value (binary mode data, or a whole structured-mode event). A valid event at
every field's maximum is a few kilobytes; fields producers add beyond the contract are ignored but
still count here."""

JSON_MAX_DEPTH = 201
"""Levels of JSON arrays and objects (the outermost included), as pydantic-core's parser (jiter)
limits them; deeper is not JSON. Both modes parse with it (tests/unit/test_input_limits.py)."""

DEAD_LETTER_MAX_BYTES = 1_000_000
"""Bytes of a dead letter as the producer counts a record (aiokafka's estimate): below the
producer's default max_request_size (1,048,576) and Kafka's default message.max.bytes (1,048,588).
A larger one has its value cut to fit, and the original is kept in PostgreSQL
(`oversize_dead_letters`)."""
