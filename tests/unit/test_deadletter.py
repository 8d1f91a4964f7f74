"""Dead-letter records: the message unchanged, Spring Kafka's headers added, never piled up."""

from __future__ import annotations

import struct
import traceback

from schemas.errors import NotJson
from tests.headers import header
from worker.dlq.recoverer import (
    REPLAYED_FROM,
    DeadLetterHeaders,
    dead_letter,
    read_dead_letter_headers,
    read_number,
)
from worker.engine.failures import IdempotencyConflict, RetriesExhausted
from worker.engine.records import Headers, InboundRecord

ORIGINAL_HEADERS = (("ce_id", b"ce-1"), ("trace", b"\xff\x00 not utf-8"), ("ce_id", b"repeated"))


def inbound(headers: Headers = ORIGINAL_HEADERS) -> InboundRecord:
    return InboundRecord(
        topic="termination-requested",
        partition=3,
        offset=1234567890123,
        key=b"sub-1",
        value=b"{not json",
        headers=headers,
        timestamp_ms=1_700_000_000_123,
    )


def test_dead_letter_is_the_message_unchanged_with_spring_headers_after_its_own() -> None:
    error = NotJson("value is not JSON")
    error.__cause__ = ValueError("the parser's own error, which says nothing more")
    letter = dead_letter(inbound(), error, group="refund-worker", reason="not_json")

    assert (letter.topic, letter.key, letter.value) == ("termination-requested-dlt", b"sub-1", b"{not json")
    assert letter.headers[:3] == ORIGINAL_HEADERS
    assert letter.headers[3:] == (
        ("kafka_dlt-original-topic", b"termination-requested"),
        ("kafka_dlt-original-partition", b"\x00\x00\x00\x03"),
        ("kafka_dlt-original-offset", struct.pack(">q", 1234567890123)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", 1_700_000_000_123)),
        ("kafka_dlt-original-consumer-group", b"refund-worker"),
        ("kafka_dlt-exception-fqcn", b"schemas.errors.NotJson"),
        ("kafka_dlt-exception-message", b"value is not JSON"),
        (
            "kafka_dlt-exception-stacktrace",
            b"ValueError: the parser's own error, which says nothing more\n\n"
            b"The above exception was the direct cause of the following exception:\n\n"
            b"schemas.errors.NotJson: value is not JSON\n",
        ),
        ("kafka_dlt-failure-reason", b"not_json"),
    )


def test_retries_exhausted_names_the_error_behind_it_as_the_cause() -> None:
    error = RetriesExhausted(RuntimeError("boom"), 3)
    headers = dict(dead_letter(inbound(), error, group="g", reason="retries_exhausted").headers)
    assert headers["kafka_dlt-exception-fqcn"] == b"worker.engine.failures.RetriesExhausted"
    assert headers["kafka_dlt-exception-cause-fqcn"] == b"builtins.RuntimeError"
    assert headers["kafka_dlt-exception-message"] == b"RuntimeError: boom (after 3 attempts)"


def test_a_message_dead_lettered_again_has_one_set_of_headers_and_keeps_its_replay_mark() -> None:
    first = dead_letter(inbound(), NotJson("first"), group="g", reason="not_json")
    replayed = (*first.headers, (REPLAYED_FROM, b"termination-requested-dlt[0]@7"))
    again = dead_letter(
        inbound(replayed), IdempotencyConflict("second"), group="g", reason="idempotency_conflict"
    )

    names = [name for name, _ in again.headers]
    dlt_names = [name for name in names if name.startswith("kafka_dlt-")]
    assert len(dlt_names) == len(set(dlt_names)) == 9
    assert dict(again.headers)["kafka_dlt-exception-message"] == b"second"
    assert names[:4] == ["ce_id", "trace", "ce_id", REPLAYED_FROM]


def test_a_long_exception_message_is_cut_to_4096_bytes() -> None:
    letter = dead_letter(inbound(), NotJson("é" * 5000), group="g", reason="not_json")
    assert len(header(letter.headers, "kafka_dlt-exception-message")) == 4096


def raised_deep_inside(depth: int) -> NotJson:
    def fail(level: int) -> None:
        if level == 0:
            raise NotJson("the innermost frame said so")
        fail(level - 1)

    try:
        fail(depth)
    except NotJson as error:
        return error
    raise AssertionError("fail() did not raise")


def test_the_stacktrace_is_the_traceback_with_the_frames_that_raised() -> None:
    letter = dead_letter(inbound(), raised_deep_inside(3), group="g", reason="not_json")
    trace = header(letter.headers, "kafka_dlt-exception-stacktrace").decode()
    assert trace.startswith("Traceback (most recent call last):\n")
    assert trace.count("in fail\n") == 4
    assert trace.endswith("schemas.errors.NotJson: the innermost frame said so\n")


def long_chain(links: int) -> NotJson:
    """An error behind `links` others, each raised while handling the one before."""
    error: Exception = RuntimeError("the first one")
    for link in range(links):
        try:
            raise ValueError(f"link {link}") from error
        except ValueError as raised:
            error = raised
    try:
        raise NotJson("the innermost frame said so") from error
    except NotJson as last:
        return last


def test_a_long_stacktrace_keeps_its_last_8_kib_from_the_start_of_a_line() -> None:
    error = long_chain(100)
    whole = "".join(traceback.format_exception(error)).encode()
    trace = header(
        dead_letter(inbound(), error, group="g", reason="not_json").headers, "kafka_dlt-exception-stacktrace"
    )
    assert len(whole) > 20_000
    assert 8000 < len(trace) <= 8192
    kept = trace.removeprefix(b"...\n")
    assert whole.endswith(kept)
    assert whole[: -len(kept)].endswith(b"\n")  # cut between lines


def test_reading_the_headers_back_gives_what_was_written() -> None:
    error = RetriesExhausted(RuntimeError("boom"), 2)
    letter = dead_letter(inbound(), error, group="refund-worker", reason="retries_exhausted")
    assert read_dead_letter_headers(letter.headers) == DeadLetterHeaders(
        original_topic="termination-requested",
        original_partition=3,
        original_offset=1234567890123,
        original_timestamp_ms=1_700_000_000_123,
        consumer_group="refund-worker",
        exception_fqcn="worker.engine.failures.RetriesExhausted",
        exception_message="RuntimeError: boom (after 2 attempts)",
        exception_cause_fqcn="builtins.RuntimeError",
        failure_reason="retries_exhausted",
    )


def test_headers_missing_or_unreadable_read_as_none() -> None:
    read = read_dead_letter_headers([("kafka_dlt-original-offset", b"\x01\x02\x03"), ("ce_id", b"x")])
    assert read == DeadLetterHeaders(None, None, None, None, None, None, None, None, None)


def test_numbers_from_other_tools_may_be_ascii_digits() -> None:
    assert read_number(b"42") == 42
    assert read_number(struct.pack(">i", 42)) == 42
    assert read_number(struct.pack(">q", 2**40)) == 2**40
