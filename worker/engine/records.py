"""Kafka records as the worker sees them, independent of the client library that carried them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

Headers = tuple[tuple[str, bytes | None], ...]
"""As Kafka carries them: a header value may be null (aiokafka gives None)."""


@dataclass(frozen=True, slots=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


# Sends records and returns once the broker has acknowledged every one (raises otherwise).
SendAll = Callable[[Sequence[OutboundRecord]], Awaitable[None]]


def next_offsets(records: Sequence[InboundRecord]) -> dict[tuple[str, int], int]:
    """The offsets to commit once `records` are done: one past the last record per partition."""
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets
