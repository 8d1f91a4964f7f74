"""Telemetry that tells the truth while a dependency is away: each gauge source refreshed on its
own, dependencies reported up or down, lag from committed offsets, every series there from the
start, dead letters logged, and an outage logged as it starts, now and then, and as it ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import TopicPartition
from pydantic import TypeAdapter, ValidationError

from schemas.errors import InvalidEnvelope, InvalidEventData, NotJson
from schemas.topics import INPUT_TOPICS
from worker.domain.errors import DomainError
from worker.engine.failures import (
    FailureKind,
    IdempotencyConflict,
    PoisonMessage,
    RetriesExhausted,
    failure_reason,
)
from worker.engine.outage import Outage, OutageLog, RetryPolicy
from worker.engine.outbox import OutboxRelay
from worker.engine.records import InboundRecord, OutboundRecord
from worker.ops.gauge_sources import DatabaseGauges, read_consumer_lag
from worker.ops.logs import RepeatLimiter
from worker.ops.metrics import DEAD_LETTER_REASONS, WorkerMetrics

TOPIC = "termination-requested"
UP = DatabaseGauges(outbox_backlog=3, outbox_oldest_age_seconds=30.0, expiry_timers_due=1)


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def database_away() -> DatabaseGauges:
    raise ConnectionRefusedError(111, "Connect call failed")


async def broker_away() -> dict[tuple[str, int], int]:
    raise ConnectionError("the broker did not answer a ping")


async def database_up() -> DatabaseGauges:
    return UP


async def lag_of_seven() -> dict[tuple[str, int], int]:
    return {(TOPIC, 0): 7}


async def never_answers() -> Any:
    await asyncio.Event().wait()


async def test_a_database_away_does_not_stop_the_lag_gauge() -> None:
    metrics = WorkerMetrics()
    await metrics.gauges.refresh_from(database=database_up, broker=lag_of_seven, within=1)
    await metrics.gauges.refresh_from(database=database_away, broker=lambda: _lag(9), within=1)

    assert sample(metrics, "refund_worker_consumer_lag", topic=TOPIC, partition="0") == 9
    assert sample(metrics, "refund_worker_outbox_backlog") == 3  # its last value, not 0
    assert sample(metrics, "refund_worker_dependency_up", dependency="database") == 0
    assert sample(metrics, "refund_worker_dependency_up", dependency="broker") == 1


async def test_a_broker_away_does_not_freeze_the_outbox_gauges() -> None:
    metrics = WorkerMetrics()
    await metrics.gauges.refresh_from(database=database_up, broker=broker_away, within=1)

    assert sample(metrics, "refund_worker_outbox_backlog") == 3
    assert sample(metrics, "refund_worker_outbox_oldest_age_seconds") == 30
    assert sample(metrics, "refund_worker_expiry_timers_due") == 1
    assert sample(metrics, "refund_worker_dependency_up", dependency="broker") == 0
    assert sample(metrics, "refund_worker_dependency_up", dependency="database") == 1


async def test_a_source_that_does_not_answer_times_out_without_holding_up_the_other() -> None:
    metrics = WorkerMetrics()
    await asyncio.wait_for(
        metrics.gauges.refresh_from(database=never_answers, broker=lag_of_seven, within=0.05), 2
    )

    assert sample(metrics, "refund_worker_consumer_lag", topic=TOPIC, partition="0") == 7
    assert sample(metrics, "refund_worker_dependency_up", dependency="database") == 0


async def test_refresh_timestamps_say_how_old_each_sources_gauges_are() -> None:
    metrics = WorkerMetrics()
    assert sample(metrics, "refund_worker_gauges_refreshed_timestamp_seconds", source="database") == 0
    await metrics.gauges.refresh_from(database=database_up, broker=lag_of_seven, within=1)
    first = sample(metrics, "refund_worker_gauges_refreshed_timestamp_seconds", source="broker")
    assert first is not None
    assert first > 0

    await asyncio.sleep(0.01)
    await metrics.gauges.refresh_from(database=database_up, broker=broker_away, within=1)
    assert sample(metrics, "refund_worker_gauges_refreshed_timestamp_seconds", source="broker") == first
    database = sample(metrics, "refund_worker_gauges_refreshed_timestamp_seconds", source="database")
    assert database is not None
    assert database > first


async def test_a_source_away_for_many_scrapes_is_logged_when_it_goes_and_when_it_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = WorkerMetrics()
    with caplog.at_level(logging.WARNING, logger="worker.ops.observability"):
        for _ in range(20):
            await metrics.gauges.refresh_from(database=database_away, broker=lag_of_seven, within=1)
        await metrics.gauges.refresh_from(database=database_up, broker=lag_of_seven, within=1)

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("database (metrics) unavailable (ConnectionRefusedError")
    assert messages[1].startswith("database (metrics) is back after")
    assert all(record.exc_info is None for record in caplog.records)
    assert sample(metrics, "refund_worker_dependency_up", dependency="database") == 1


async def _lag(value: int) -> dict[tuple[str, int], int]:
    return {(TOPIC, 0): value}


class Consumer:
    """Offsets as aiokafka's consumer reports them; the position runs ahead of what is committed."""

    def __init__(self, ends: dict[int, int], committed: dict[int, int | None], beginnings: dict[int, int]):
        self.partitions = {TopicPartition(TOPIC, number) for number in ends}
        self.ends, self._committed, self.beginnings = ends, committed, beginnings

    def assignment(self) -> set[TopicPartition]:
        return self.partitions

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {partition: self.ends[partition.partition] for partition in partitions}

    async def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {partition: self.beginnings[partition.partition] for partition in partitions}

    async def committed(self, partition: TopicPartition) -> int | None:
        return self._committed[partition.partition]

    async def position(self, partition: TopicPartition) -> int:
        return self.ends[partition.partition]  # everything fetched, as with a batch in hand


async def test_lag_counts_from_the_groups_committed_offsets_not_the_consumers_position() -> None:
    consumer = Consumer(ends={0: 120, 1: 50, 2: 10}, committed={0: 100, 1: 50, 2: None}, beginnings={2: 4})
    lags = await read_consumer_lag([consumer])
    assert lags == {(TOPIC, 0): 20, (TOPIC, 1): 0, (TOPIC, 2): 6}


def test_every_counter_series_alerts_look_at_is_exported_at_zero_from_the_start() -> None:
    metrics = WorkerMetrics()
    for topic in (topic.value for topic in INPUT_TOPICS):
        assert sample(metrics, "refund_worker_messages_consumed_total", topic=topic) == 0
        for kind in FailureKind:
            assert sample(metrics, "refund_worker_messages_failed_total", topic=topic, kind=kind.value) == 0
        for reason in DEAD_LETTER_REASONS:
            assert sample(metrics, "refund_worker_dead_lettered_total", topic=topic, reason=reason) == 0
    for dependency in ("database", "broker"):
        assert sample(metrics, "refund_worker_dependency_up", dependency=dependency) == 0
    assert sample(metrics, "refund_worker_decisions_total", outcome="terminated") == 0


def invalid_int() -> ValidationError:
    try:
        TypeAdapter(int).validate_python("x")
    except ValidationError as error:
        return error
    raise AssertionError("'x' passed as an int")


@pytest.mark.parametrize(
    "error",
    [
        NotJson("x"),
        InvalidEnvelope("x"),
        InvalidEventData("x", invalid_int()),
        DomainError("x"),
        IdempotencyConflict("x"),
        PoisonMessage("x"),
        RetriesExhausted(RuntimeError("x"), 3),
        RuntimeError("x"),
    ],
)
def test_every_dead_letter_reason_has_a_series_from_the_start(error: Exception) -> None:
    assert failure_reason(error) in DEAD_LETTER_REASONS


def test_each_dead_letter_is_logged_with_what_finds_it(caplog: pytest.LogCaptureFixture) -> None:
    record = InboundRecord(TOPIC, 2, 41, b"sub-9", b"{oops", (("ce_id", b"ce-41"),), 0)
    with caplog.at_level(logging.WARNING, logger="worker.ops.observability"):
        WorkerMetrics().observer().dead_lettered(record, "not_json", FailureKind.POISON)

    (logged,) = caplog.records
    assert logged.levelno == logging.WARNING
    fields = {key: getattr(logged, key) for key in ("topic", "partition", "offset", "key", "ce_id", "reason")}
    assert fields == {
        "topic": TOPIC,
        "partition": 2,
        "offset": 41,
        "key": "sub-9",
        "ce_id": "ce-41",
        "reason": "not_json",
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_long_outage_is_logged_at_its_start_once_a_minute_and_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, logger = Clock(), logging.getLogger("tests.outage")
    outage = OutageLog("broker", meanwhile="waiting", remind_seconds=60, logger=logger, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tests.outage"):
        for _ in range(700):  # a 70 s outage, a retry every 100 ms
            outage.failed(ConnectionRefusedError(111, "Connect call failed"))
            clock.now += 0.1
        outage.ended()

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3, messages
    assert (
        messages[0] == "broker unavailable (ConnectionRefusedError: [Errno 111] Connect call failed); waiting"
    )
    assert messages[1].startswith("broker still unavailable after 60s")
    assert messages[2] == "broker is back after 70.0s and 700 failed attempts; resuming"
    assert all(record.exc_info is None for record in caplog.records)


def test_retries_are_jittered_between_half_and_all_of_the_backoff() -> None:
    outage = Outage("database", RetryPolicy(backoff_seconds=1.0, max_backoff_seconds=8.0))
    delays = [outage.failed(ConnectionRefusedError()) for _ in range(200)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(4.0 <= delay <= 8.0 for delay in delays[3:])
    assert len(set(delays[3:])) > 1  # not in step with every other worker


class Result:
    def all(self) -> list[Any]:
        return []


class Connection:
    async def execute(self, statement: object, parameters: object = None) -> Result:
        return Result()


class Database:
    """Refuses the first `down_for` transactions, then answers with an empty outbox."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.answered = asyncio.Event()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Connection]:
        if self.down_for > 0:
            self.down_for -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        self.answered.set()
        yield Connection()

    connect = begin


async def send_nothing(records: Iterable[OutboundRecord]) -> None:
    return None


async def test_the_outbox_relay_logs_an_outage_once_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = Database(down_for=12)
    relay = OutboxRelay(database, send_nothing, source="/tests", batch_size=10)
    with caplog.at_level(logging.INFO, logger="worker.engine.outbox"):
        running = asyncio.create_task(relay.run(poll_seconds=0.0001))
        while not database.answered.is_set():
            relay.wake()  # commits waking the relay while it is away must not add lines
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("outbox relay unavailable (ConnectionRefusedError")
    assert messages[1].startswith("outbox relay is back after")
    assert "12 failed attempts" in messages[1]
    assert all(record.exc_info is None for record in caplog.records)


def test_a_client_library_repeating_itself_is_let_through_once_a_minute_with_a_count() -> None:
    clock = Clock()
    limiter = RepeatLimiter(("aiokafka",), every=60, clock=clock)

    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, message, ("node 1", "refused"), None)

    passed = 0
    for _ in range(1300):  # 130 lines a second for 10 s
        passed += limiter.filter(record("aiokafka", "Unable connect to node %s: %s"))
        clock.now += 1 / 130
    assert passed == 1

    clock.now = 70.0
    late = record("aiokafka", "Unable connect to node %s: %s")
    assert limiter.filter(late)
    assert late.repeated == 1299  # type: ignore[attr-defined]
    assert limiter.filter(record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s"))
    assert all(
        limiter.filter(record("worker.engine.pipeline", "database unavailable (%s)")) for _ in range(3)
    )
