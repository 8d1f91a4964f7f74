"""The batch pipeline's failure policy, with the database and the broker replaced by scripted fakes:
poison at once, unexpected errors bounded, outages waited out without a single dead letter."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from aiokafka.errors import KafkaConnectionError

from schemas.errors import NotJson
from tests.headers import header
from worker.engine.outage import RetryPolicy
from worker.engine.pipeline import Applied, BatchPipeline
from worker.engine.records import InboundRecord, OutboundRecord

TOPIC = "termination-requested"
NO_WAIT = RetryPolicy(unexpected_attempts=3, backoff_seconds=0.0)


class Connection:
    async def execute(self, statement: object, parameters: object = None) -> None:
        return None


class Database:
    """Stands in for the engine: `down_for` more connection attempts are refused, then it is back."""

    def __init__(self, down_for: int = 0) -> None:
        self.down_for = down_for

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Connection]:
        if self.down_for > 0:
            self.down_for -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        yield Connection()

    connect = begin


class Applier:
    """Applies commands (plain strings); `failing` ones raise what `raises` says, counted per command."""

    def __init__(self, failing: frozenset[str] = frozenset(), raises: type[Exception] = RuntimeError) -> None:
        self.failing = set(failing)
        self.raises = raises
        self.attempts: dict[str, int] = {}
        self.committed: list[str] = []

    async def __call__(self, conn: Connection, commands: Sequence[str]) -> Applied:
        for command in commands:
            self.attempts[command] = self.attempts.get(command, 0) + 1
        if culprits := self.failing.intersection(commands):
            raise self.raises(f"cannot apply {sorted(culprits)}")
        self.committed += commands
        return Applied([])


class Broker:
    """Acknowledges sends, after refusing the first `down_for` of them."""

    def __init__(self, down_for: int = 0) -> None:
        self.down_for = down_for
        self.attempts = 0
        self.acknowledged: list[OutboundRecord] = []

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        self.attempts += 1
        if self.down_for > 0:
            self.down_for -= 1
            raise KafkaConnectionError("broker away")
        self.acknowledged += records


def parse(record: InboundRecord) -> str:
    if record.value is None or not record.value.startswith(b"ok"):
        raise NotJson("value is not JSON")
    return record.value.decode()


def records(*values: bytes) -> list[InboundRecord]:
    return [
        InboundRecord(TOPIC, 0, offset, b"key", value, (("ce_id", b"%d" % offset),), 1_700_000_000_000)
        for offset, value in enumerate(values, start=100)
    ]


def pipeline(
    applier: Applier, broker: Broker, database: Database | None = None, retry: RetryPolicy = NO_WAIT
) -> BatchPipeline[Connection, str]:
    return BatchPipeline(
        engine=database or Database(),
        parse=parse,
        apply=applier,
        send_all=broker,
        consumer_group="group",
        retry=retry,
    )


def dead_lettered(broker: Broker) -> list[tuple[bytes | None, str]]:
    return [(r.value, header(r.headers, "kafka_dlt-failure-reason").decode()) for r in broker.acknowledged]


async def test_poison_is_dead_lettered_at_once_and_the_others_are_applied() -> None:
    applier, broker = Applier(), Broker()
    report = await pipeline(applier, broker).process(records(b"ok-1", b"{oops", b"ok-2"))

    assert applier.committed == ["ok-1", "ok-2"]
    assert applier.attempts == {"ok-1": 1, "ok-2": 1}
    assert dead_lettered(broker) == [(b"{oops", "not_json")]
    assert (report.processed, report.dead_lettered, report.offsets) == (2, 1, {(TOPIC, 0): 103})


async def test_an_unexpected_error_is_found_by_halving_and_has_its_retries_alone() -> None:
    values = [b"ok-%d" % n for n in range(8)]
    applier, broker = Applier(failing=frozenset({"ok-5"})), Broker()
    await pipeline(applier, broker).process(records(*values))

    # 8 -> 4 -> 2 -> 1: one attempt at each size, then its 3 attempts alone.
    assert applier.attempts["ok-5"] == 3 + 3
    assert sorted(applier.committed) == sorted(v.decode() for v in values if v != b"ok-5")
    assert dead_lettered(broker) == [(b"ok-5", "retries_exhausted")]
    headers = dict(broker.acknowledged[0].headers)
    assert headers["kafka_dlt-exception-cause-fqcn"] == b"builtins.RuntimeError"
    assert headers["kafka_dlt-exception-message"] == b"RuntimeError: cannot apply ['ok-5'] (after 3 attempts)"


async def test_retry_attempts_are_configurable() -> None:
    applier, broker = Applier(failing=frozenset({"ok-1"})), Broker()
    await pipeline(applier, broker, retry=RetryPolicy(unexpected_attempts=5, backoff_seconds=0.0)).process(
        records(b"ok-1")
    )
    assert applier.attempts == {"ok-1": 5}
    assert len(broker.acknowledged) == 1


def test_backoff_doubles_from_the_configured_delay_up_to_its_ceiling() -> None:
    policy = RetryPolicy(backoff_seconds=0.5, max_backoff_seconds=3.0)
    assert [policy.backoff(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_database_outage_is_waited_out_and_dead_letters_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    applier, broker, database = Applier(), Broker(), Database(down_for=4)
    with caplog.at_level(logging.WARNING, logger="worker.engine.pipeline"):
        report = await pipeline(applier, broker, database).process(records(b"ok-1", b"ok-2"))

    assert applier.committed == ["ok-1", "ok-2"]
    assert broker.attempts == 0
    assert report.dead_lettered == 0
    messages = [record.getMessage() for record in caplog.records]
    assert sum("database unavailable" in m for m in messages) == 1  # once, not once per retry
    assert "database is back after" in messages[-1]
    assert "4 failed attempts" in messages[-1]


async def test_errors_nobody_classified_as_an_outage_dead_letter_nothing_while_the_database_is_away() -> None:
    # While the server is away the pool may hand out a dead connection whose error classify() cannot
    # place; before an exhausted message goes to the dead letters, the pipeline asks the database
    # (a fresh connection) whether it answers at all.
    class DeadPool(Database):
        @asynccontextmanager
        async def begin(self) -> AsyncIterator[Connection]:
            yield Connection()

    class Disguised(Applier):
        def __init__(self, database: Database) -> None:
            super().__init__()
            self.database = database
            self.failed = 0

        async def __call__(self, conn: Connection, commands: Sequence[str]) -> Applied:
            if self.database.down_for > 0:
                self.failed += 1
                raise RuntimeError("server closed the connection unexpectedly")
            return await super().__call__(conn, commands)

    database = DeadPool(down_for=2)  # the probes after two rounds of 3 attempts find it away
    applier, broker = Disguised(database), Broker()
    await pipeline(applier, broker, database).process(records(b"ok-1"))

    assert applier.failed == 6
    assert applier.committed == ["ok-1"]
    assert broker.acknowledged == []


async def test_dead_letters_wait_for_the_broker_and_are_sent_when_it_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    applier, broker = Applier(), Broker(down_for=3)
    with caplog.at_level(logging.WARNING, logger="worker.engine.pipeline"):
        report = await pipeline(applier, broker).process(records(b"{oops", b"ok-1"))

    assert broker.attempts == 4
    assert dead_lettered(broker) == [(b"{oops", "not_json")]
    assert report.offsets == {(TOPIC, 0): 102}
    messages = [record.getMessage() for record in caplog.records]
    assert sum("broker (dead letters) unavailable" in m for m in messages) == 1
    assert "broker (dead letters) is back" in messages[-1]
    assert "3 failed attempts" in messages[-1]


async def test_a_send_failure_that_is_no_outage_fails_the_batch_for_the_handler_to_rewind() -> None:
    class Refusing(Broker):
        async def __call__(self, records: Sequence[OutboundRecord]) -> None:
            raise ValueError("record too large")

    with pytest.raises(ValueError, match="record too large"):
        await pipeline(Applier(), Refusing()).process(records(b"{oops"))
