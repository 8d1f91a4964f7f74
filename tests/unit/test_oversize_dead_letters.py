"""A dead letter too large for the broker is still dead-lettered: its value cut to fit, a header
saying so, and the whole original kept in PostgreSQL; its batch is never rewound for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from schemas.errors import NotJson
from schemas.limits import DEAD_LETTER_MAX_BYTES, KEY_MAX_BYTES
from worker.dlq.recoverer import (
    EXCEPTION_MESSAGE,
    HEADERS_DROPPED,
    VALUE_TRUNCATED,
    dead_letter,
    fit_for_broker,
    record_size,
)
from worker.engine.database import Parameters
from worker.engine.outage import RetryPolicy
from worker.engine.pipeline import Applied, BatchPipeline
from worker.engine.records import InboundRecord, OutboundRecord

MEGABYTE = 1_048_576


def inbound(
    value: bytes, key: bytes = b"sub-1", headers: tuple[tuple[str, bytes], ...] = ()
) -> InboundRecord:
    return InboundRecord(
        "termination-requested", 2, 77, key, value, (("ce_id", b"ce-1"), *headers), 1_700_000
    )


def letter_of(record: InboundRecord) -> OutboundRecord:
    return dead_letter(record, NotJson("not JSON"), group="group", reason="not_json")


def header(letter: OutboundRecord, name: str) -> bytes | None:
    values = [value for key, value in letter.headers if key == name]
    return values[-1] if values else None


def test_a_dead_letter_that_fits_is_left_alone() -> None:
    letter = letter_of(inbound(b"x" * 500_000))
    assert fit_for_broker(letter) == (letter, False)


def test_an_oversize_value_is_cut_to_fit_with_a_header_giving_its_length() -> None:
    value = b"x" * (2 * MEGABYTE)
    letter, cut = fit_for_broker(letter_of(inbound(value)))

    assert cut
    assert record_size(letter) <= DEAD_LETTER_MAX_BYTES
    assert letter.value is not None
    assert value.startswith(letter.value)
    assert len(letter.value) > DEAD_LETTER_MAX_BYTES - 10_000  # cut to fit, not emptied
    assert header(letter, VALUE_TRUNCATED) == b"%d" % len(value)
    assert header(letter, EXCEPTION_MESSAGE) == b"not JSON"
    assert (letter.key, header(letter, "ce_id")) == (b"sub-1", b"ce-1")


def test_a_key_and_headers_too_large_even_without_the_value_are_dropped_or_cut() -> None:
    huge = tuple((f"h{i}", b"y" * 100_000) for i in range(15))
    letter, cut = fit_for_broker(letter_of(inbound(b"{}", key=b"k" * MEGABYTE, headers=huge)))

    assert cut
    assert record_size(letter) <= DEAD_LETTER_MAX_BYTES
    assert letter.key == b"k" * KEY_MAX_BYTES
    assert header(letter, HEADERS_DROPPED) == b"16"  # ce_id and the fifteen
    assert header(letter, "ce_id") is None
    assert header(letter, VALUE_TRUNCATED) == b"2"


class Connection:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def execute(self, statement: object, parameters: Parameters = None) -> None:
        rows = [parameters] if isinstance(parameters, Mapping) else parameters or []
        self._database.kept += [dict(row) for row in rows]


class Database:
    """Stands in for the engine; refuses `down_for` connections first."""

    def __init__(self, down_for: int = 0) -> None:
        self.down_for = down_for
        self.kept: list[dict[str, Any]] = []

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Connection]:
        if self.down_for > 0:
            self.down_for -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        yield Connection(self)

    connect = begin


class Broker:
    """Acknowledges what the real producer would send, and refuses what it would refuse."""

    def __init__(self) -> None:
        self.acknowledged: list[OutboundRecord] = []

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        for record in records:
            if record_size(record) > MEGABYTE:
                raise ValueError("MessageSizeTooLargeError: the producer refuses it")
        self.acknowledged += records


async def nothing_to_apply(conn: Connection, commands: Sequence[str]) -> Applied:
    return Applied([])


def refuse_everything(record: InboundRecord) -> str:
    raise NotJson("value is not JSON")


async def test_an_oversize_poison_message_is_dead_lettered_cut_and_kept_whole_in_the_database() -> None:
    database, broker = Database(down_for=2), Broker()
    pipeline = BatchPipeline(
        engine=database,
        parse=refuse_everything,
        apply=nothing_to_apply,
        send_all=broker,
        consumer_group="group",
        retry=RetryPolicy(backoff_seconds=0.0),
    )
    original = inbound(b"{" * (MEGABYTE + 100))
    small = original._replace(offset=78, value=b"{")

    report = await pipeline.process([original, small])

    assert report.offsets == {("termination-requested", 2): 79}
    assert [header(letter, VALUE_TRUNCATED) for letter in broker.acknowledged] == [
        b"%d" % (MEGABYTE + 100),
        None,
    ]
    [kept] = database.kept
    assert (kept["original_topic"], kept["original_partition"], kept["original_offset"]) == (
        "termination-requested",
        2,
        77,
    )
    assert (kept["key"], kept["value"], kept["failure_reason"]) == (b"sub-1", original.value, "not_json")
    assert (kept["header_names"], kept["header_values"]) == ([b"ce_id"], [b"ce-1"])


async def test_a_message_the_parser_fails_on_unexpectedly_is_dead_lettered_not_rewound() -> None:
    def buggy(record: InboundRecord) -> str:
        if record.offset == 77:
            raise RecursionError("maximum recursion depth exceeded")
        return "ok"

    applied: list[str] = []

    async def apply(conn: Connection, commands: Sequence[str]) -> Applied:
        applied.extend(commands)
        return Applied([])

    broker = Broker()
    pipeline = BatchPipeline(
        engine=Database(),
        parse=buggy,
        apply=apply,
        send_all=broker,
        consumer_group="group",
        retry=RetryPolicy(backoff_seconds=0.0),
    )
    first = inbound(b"{}")
    report = await pipeline.process([first, first._replace(offset=78)])

    assert report.offsets == {("termination-requested", 2): 79}
    assert applied == ["ok"]
    [letter] = broker.acknowledged
    assert header(letter, "kafka_dlt-failure-reason") == b"unexpected"
    assert header(letter, "kafka_dlt-exception-fqcn") == b"builtins.RecursionError"
