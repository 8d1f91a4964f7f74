"""A dead letter's values as people read them: times, keys, the exception, headers, what a replay
does with it, counts. Plain strings; the tables and pages put them in `rich.text.Text`."""

from __future__ import annotations

from worker.dlq.letters import DeadLetter, utc_time
from worker.dlq.recoverer import ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TIMESTAMP, read_number
from worker.engine.records import OutboundRecord

NUMBER_HEADERS = frozenset({ORIGINAL_PARTITION, ORIGINAL_OFFSET, ORIGINAL_TIMESTAMP})
"""Spring's headers holding a binary number."""


def timestamp_text(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return "?"
    return utc_time(timestamp_ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def table_time(timestamp_ms: int) -> str:
    """RFC 3339 to the second, as --since and --until take it."""
    return utc_time(timestamp_ms).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_text(key: bytes | None) -> str:
    return "(none)" if key is None else key.decode("utf-8", "replace")


def exception_text(letter: DeadLetter) -> str:
    dlt = letter.dlt
    name = (dlt.exception_fqcn or "?").rsplit(".", 1)[-1]
    message = (dlt.exception_message or "").splitlines()[0] if dlt.exception_message else ""
    return f"{name}: {message}" if message else name


def plural(count: int, noun: str) -> str:
    """`1 dead letter`, `2 dead letters`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def header_text(name: str, value: bytes | None) -> str:
    """A header value for reading: Spring's binary numbers as numbers, text as text, else hex."""
    if value is None:
        return "(null)"
    if name in NUMBER_HEADERS:
        try:
            number = read_number(value)
        except ValueError:
            pass
        else:
            return f"{number} ({timestamp_text(number)})" if name == ORIGINAL_TIMESTAMP else str(number)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return f"0x{value.hex()} (not UTF-8)"


def replay_text(letter: DeadLetter) -> str:
    if (poison := letter.poison) is None:
        return "replay sends it back"
    return f"left by replay: permanent poison ({poison}); --include-poison sends it back"


def ce_id_text(record: OutboundRecord) -> str:
    found = [value for name, value in record.headers if name == "ce_id" and value is not None]
    return found[-1].decode("utf-8", "replace") if found else "(structured or none)"
