"""One dead letter as read from a dead-letter topic, and the record that replaying it sends. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from schemas.errors import InvalidMessage
from schemas.topics import DEAD_LETTER_SUFFIX, dead_letter_topic
from worker.dlq.recoverer import (
    REPLAYED_FROM,
    DeadLetterHeaders,
    read_dead_letter_headers,
    without_dead_letter_headers,
)
from worker.domain.errors import DomainError
from worker.engine.failures import PoisonMessage
from worker.engine.records import Headers, OutboundRecord

POISON_REASONS = frozenset(
    {
        "not_json",
        "invalid_envelope",
        "invalid_data",
        "idempotency_conflict",
        "account_mismatch",
        "domain_refused",
        "poison",
    }
)
"""The `kafka_dlt-failure-reason`s of messages wrong in themselves (worker/engine/failures.py dead-letters
them at once): replaying the same bytes can only dead-letter them again."""
KNOWN_REASONS = POISON_REASONS | {"retries_exhausted", "unexpected"}
"""Every reason the worker writes (worker/engine/failures.py, failure_reason)."""


class NotReplayable(ValueError):
    """A dead letter the replay leaves where it is; the message says why."""


def dead_letter_topic_of(name: str) -> str:
    """TOPIC as the dlq commands take it: a dead-letter topic as is, a source topic's `<name>-dlt`."""
    return name if name.endswith(DEAD_LETTER_SUFFIX) else dead_letter_topic(name)


def source_topic_of(dead_letter_topic_name: str) -> str:
    return dead_letter_topic_name.removesuffix(DEAD_LETTER_SUFFIX)


def location(topic: str, partition: int, offset: int) -> str:
    """`topic[partition]@offset`, as the worker's logs name a record."""
    return f"{topic}[{partition}]@{offset}"


def utc_time(timestamp_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=timestamp_ms)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    """When it was dead-lettered (the dead-letter record's timestamp)."""
    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def location(self) -> str:
        return location(self.topic, self.partition, self.offset)

    @property
    def dlt(self) -> DeadLetterHeaders:
        return read_dead_letter_headers(self.headers)

    @property
    def original_location(self) -> str | None:
        dlt = self.dlt
        if dlt.original_topic is None or dlt.original_partition is None or dlt.original_offset is None:
            return dlt.original_topic
        return location(dlt.original_topic, dlt.original_partition, dlt.original_offset)

    @property
    def reason(self) -> str | None:
        return self.dlt.failure_reason

    @property
    def poison(self) -> str | None:
        """Why this dead letter is permanent poison (its reason, or its exception's class when the
        reason says nothing the worker knows), or None when a replay may succeed."""
        dlt = self.dlt
        if dlt.failure_reason in POISON_REASONS:
            return dlt.failure_reason
        fqcn = dlt.exception_fqcn
        if fqcn is not None and fqcn in _poison_classes():
            return fqcn.rsplit(".", 1)[-1]
        return None

    def header(self, name: str) -> bytes | None:
        """The last value of a header, as Kafka clients read a repeated one."""
        found = [value for header, value in self.headers if header == name]
        return found[-1] if found else None


def replay_record(letter: DeadLetter) -> OutboundRecord:
    """What goes back: to the original topic, with the original key, value and headers, without the
    kafka_dlt-* ones, and with a header naming this dead letter (replacing an earlier replay's)."""
    target = letter.dlt.original_topic
    if target is None:
        raise NotReplayable("it has no kafka_dlt-original-topic header")
    expected = source_topic_of(letter.topic)
    if target != expected:
        raise NotReplayable(f"its original topic {target!r} is not {expected!r}, this topic's source")
    kept = tuple(
        (name, value) for name, value in without_dead_letter_headers(letter.headers) if name != REPLAYED_FROM
    )
    return OutboundRecord(
        topic=target,
        key=letter.key,
        value=letter.value,
        headers=(*kept, (REPLAYED_FROM, letter.location.encode())),
    )


@cache
def _poison_classes() -> frozenset[str]:
    """Qualified names of the errors the worker treats as poison, for dead letters without a
    reason it knows (written by an older worker or another tool)."""
    found: set[str] = set()
    pending: list[type[BaseException]] = [InvalidMessage, PoisonMessage, DomainError]
    while pending:
        kind = pending.pop()
        found.add(f"{kind.__module__}.{kind.__qualname__}")
        if kind.__module__ in _FORMER_MODULES:
            found.add(f"{_FORMER_MODULES[kind.__module__]}.{kind.__qualname__}")
        pending += kind.__subclasses__()
    return frozenset(found)


# Where these errors lived before the 2026-12 restructure: dead letters written then name them so.
_FORMER_MODULES = {"worker.engine.failures": "worker.failures"}
