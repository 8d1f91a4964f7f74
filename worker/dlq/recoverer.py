"""Dead letters: a message that cannot be processed goes, unchanged, to `<topic>-dlt`.

The added headers are named as Spring Kafka's DeadLetterPublishingRecoverer names them, and the
partition, offset and timestamp are encoded as Spring encodes them (big-endian 4-byte int and
8-byte longs), so the tools SREs know still read them. Headers of an earlier dead-lettering are
replaced, never piled up, when a replayed message fails again.
"""

from __future__ import annotations

import struct
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from schemas.limits import DEAD_LETTER_MAX_BYTES, KEY_MAX_BYTES
from schemas.topics import dead_letter_topic
from worker.engine.failures import RetriesExhausted
from worker.engine.records import Headers, InboundRecord, OutboundRecord

DLT_PREFIX = "kafka_dlt-"
ORIGINAL_TOPIC = "kafka_dlt-original-topic"
ORIGINAL_PARTITION = "kafka_dlt-original-partition"
ORIGINAL_OFFSET = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"
ORIGINAL_CONSUMER_GROUP = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN = "kafka_dlt-exception-fqcn"
EXCEPTION_MESSAGE = "kafka_dlt-exception-message"
EXCEPTION_CAUSE_FQCN = "kafka_dlt-exception-cause-fqcn"
"""As Spring's, for an exception with a cause: here the error behind `RetriesExhausted`."""
EXCEPTION_STACKTRACE = "kafka_dlt-exception-stacktrace"
"""As Spring's: the formatted traceback, causes first, cut to its last _MAX_STACKTRACE_BYTES."""
# Beyond Spring's set: which failure class decided the dead-lettering (see worker/engine/failures.py).
FAILURE_REASON = "kafka_dlt-failure-reason"
# Only on a dead letter too large for the broker (fit_for_broker): the original value's length in
# bytes (ASCII digits); the value was cut to fit, and the original record is kept in PostgreSQL
# (table oversize_dead_letters). A kafka_dlt-* header: replaced at a new dead-lettering, dropped
# by a replay.
VALUE_TRUNCATED = "kafka_dlt-value-truncated"
# Only when the key and the message's own headers alone were too large: how many own headers were
# left out (the key is cut to KEY_MAX_BYTES then).
HEADERS_DROPPED = "kafka_dlt-headers-dropped"
# Not a kafka_dlt-* header, so a replayed message that fails again keeps it: where it was replayed
# from, as `<dead-letter topic>[<partition>]@<offset>`. A new replay replaces it.
REPLAYED_FROM = "refund-worker-replayed-from"

_MAX_MESSAGE_BYTES = 4096
_MAX_STACKTRACE_BYTES = 8192
_CUT = b"...\n"


def qualified_name(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def dead_letter(record: InboundRecord, error: BaseException, *, group: str, reason: str) -> OutboundRecord:
    """The record as it arrived, with the kafka_dlt-* headers describing where and why."""
    message = str(error).encode("utf-8", "replace")[:_MAX_MESSAGE_BYTES]
    added: Headers = (
        (ORIGINAL_TOPIC, record.topic.encode()),
        (ORIGINAL_PARTITION, struct.pack(">i", record.partition)),
        (ORIGINAL_OFFSET, struct.pack(">q", record.offset)),
        (ORIGINAL_TIMESTAMP, struct.pack(">q", record.timestamp_ms)),
        (ORIGINAL_CONSUMER_GROUP, group.encode()),
        (EXCEPTION_FQCN, qualified_name(error).encode()),
        (EXCEPTION_MESSAGE, message),
        *_cause(error),
        (EXCEPTION_STACKTRACE, stacktrace(error)),
        (FAILURE_REASON, reason.encode()),
    )
    return OutboundRecord(
        topic=dead_letter_topic(record.topic),
        key=record.key,
        value=record.value,
        headers=without_dead_letter_headers(record.headers) + added,
    )


def record_size(record: OutboundRecord) -> int:
    """The record's size as the producer counts it against its max_request_size (an upper bound)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        record.key, record.value, list(record.headers)
    )
    return size


def fit_for_broker(letter: OutboundRecord, limit: int = DEAD_LETTER_MAX_BYTES) -> tuple[OutboundRecord, bool]:
    """The dead letter, or, when it is larger than `limit`, the same with its value cut to fit and
    VALUE_TRUNCATED saying so; True when it was cut. A dead letter too large to send would never
    be sent, and its batch would be rewound without end."""
    if record_size(letter) <= limit:
        return letter, False
    value = letter.value or b""
    cut = letter._replace(value=b"", headers=(*letter.headers, (VALUE_TRUNCATED, b"%d" % len(value))))
    if record_size(cut) > limit:  # the key and the message's own headers alone are too large
        own = [header for header in cut.headers if not header[0].startswith(DLT_PREFIX)]
        kept = tuple(header for header in cut.headers if header[0].startswith(DLT_PREFIX))
        key = None if letter.key is None else letter.key[:KEY_MAX_BYTES]
        cut = cut._replace(key=key, headers=(*kept, (HEADERS_DROPPED, b"%d" % len(own))))
    room = max(limit - record_size(cut) - _VARINT_SLACK, 0)
    return cut._replace(value=value[:room]), True


# A longer value also lengthens the varint that counts it: a few bytes, kept free.
_VARINT_SLACK = 16


def _cause(error: BaseException) -> Headers:
    """Only an exhausted retry names a cause: a poison error's own class already says it all."""
    cause = error.__cause__ if isinstance(error, RetriesExhausted) else None
    return () if cause is None else ((EXCEPTION_CAUSE_FQCN, qualified_name(cause).encode()),)


def stacktrace(error: BaseException) -> bytes:
    """The traceback as Python prints it, causes included (the chain alone where nothing was raised).
    A long one keeps its end, where the error and its innermost frames are, from a line's start."""
    text = "".join(traceback.format_exception(error)).encode("utf-8", "replace")
    if len(text) <= _MAX_STACKTRACE_BYTES:
        return text
    tail = text[-(_MAX_STACKTRACE_BYTES - len(_CUT)) :]
    return _CUT + tail[tail.find(b"\n") + 1 :]


def without_dead_letter_headers(headers: Headers) -> Headers:
    return tuple((name, value) for name, value in headers if not name.startswith(DLT_PREFIX))


def read_number(value: bytes) -> int:
    """A Spring-encoded partition, offset or timestamp; also plain ASCII digits from other tools."""
    if value.isdigit():  # text from another tool; Spring's binary values are never all digits in practice
        return int(value.decode("ascii"))
    if len(value) == 4:
        return int(struct.unpack(">i", value)[0])
    if len(value) == 8:
        return int(struct.unpack(">q", value)[0])
    raise ValueError(f"{value!r} is not a Spring-encoded number")


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """What the kafka_dlt-* headers of a dead letter say; None where one is missing or unreadable
    (a dead letter written by another tool, or by hand)."""

    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    original_timestamp_ms: int | None
    consumer_group: str | None
    exception_fqcn: str | None
    exception_message: str | None
    exception_cause_fqcn: str | None
    failure_reason: str | None


def read_dead_letter_headers(headers: Sequence[tuple[str, bytes | None]]) -> DeadLetterHeaders:
    """The last value of each header wins, as Spring's own reader does."""
    values = {name: value for name, value in headers if value is not None}
    return DeadLetterHeaders(
        original_topic=_text(values.get(ORIGINAL_TOPIC)),
        original_partition=_number(values.get(ORIGINAL_PARTITION)),
        original_offset=_number(values.get(ORIGINAL_OFFSET)),
        original_timestamp_ms=_number(values.get(ORIGINAL_TIMESTAMP)),
        consumer_group=_text(values.get(ORIGINAL_CONSUMER_GROUP)),
        exception_fqcn=_text(values.get(EXCEPTION_FQCN)),
        exception_message=_text(values.get(EXCEPTION_MESSAGE)),
        exception_cause_fqcn=_text(values.get(EXCEPTION_CAUSE_FQCN)),
        failure_reason=_text(values.get(FAILURE_REASON)),
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _number(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return read_number(value)
    except ValueError:
        return None
