"""What the worker relies on from its infrastructure, checked against the session's real services.

Kafka: records keep key, value and headers byte for byte; a FastStream batch handler can commit
explicit offsets per partition, and a new group member resumes exactly there; a nacked batch comes
back. PostgreSQL: the session database accepts connections. The embedded services clean up.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer, KafkaMessage
from sqlalchemy import text

from worker.engine.runtime import create_engine
from worker.infra.postgres import embedded_postgres
from worker.infra.tansu import embedded_kafka

TopicFactory = Callable[[int], Awaitable[str]]
Handler = Callable[[KafkaMessage, Consumer], Awaitable[None]]

CLOUDEVENT_HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"7d3c1f0e-0000-4000-8000-000000000001"),
    ("ce_type", b"subscription.termination.requested.v1"),
    ("content-type", b"application/json"),
    ("trace", b"\xff\x00 not utf-8"),
    ("ce_id", b"a repeated key keeps its place"),
]


@pytest.fixture
async def new_topic(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Creates topics with unique names, so tests sharing a broker never see each other's records."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()

    async def create(partitions: int) -> str:
        name = f"infra-{uuid.uuid4().hex[:12]}"
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        return name

    try:
        yield create
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values_by_partition: dict[int, list[bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, values in values_by_partition.items():
            for value in values:
                await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def run_batch_subscriber(
    bootstrap: str,
    topic: str,
    group: str,
    group_settings: dict[str, int],
    handler: Handler,
    done: asyncio.Event,
) -> None:
    """Runs `handler` as a FastStream batch subscriber (manual acks) until `done` is set."""
    broker = KafkaBroker(bootstrap)
    broker.subscriber(
        topic,
        batch=True,
        max_records=10,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        session_timeout_ms=group_settings["session_timeout_ms"],
        heartbeat_interval_ms=group_settings["heartbeat_interval_ms"],
    )(handler)
    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        await broker.stop()


def batch_records(msg: KafkaMessage) -> tuple[ConsumerRecord[Any, Any], ...]:
    records = msg.raw_message
    assert isinstance(records, tuple), "a batch subscriber hands over a tuple of records"
    return records


def next_offsets(records: Iterable[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    """What to commit once `records` are done: one past the last record of each partition."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
    return offsets


async def fetch_all(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[Any, Any]]:
    records: list[ConsumerRecord[Any, Any]] = []
    async with asyncio.timeout(20):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=200)
            records.extend(record for batch in batches.values() for record in batch)
    return records


async def test_record_key_value_and_headers_arrive_byte_for_byte(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic(1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"amount": "120.00"}', key=b"sub-1", headers=CLOUDEVENT_HEADERS)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        (record,) = await fetch_all(consumer, 1)
    finally:
        await consumer.stop()

    assert (record.key, record.value) == (b"sub-1", b'{"amount": "120.00"}')
    assert list(record.headers) == CLOUDEVENT_HEADERS


async def test_new_group_member_resumes_at_the_offsets_a_batch_handler_committed_explicitly(
    kafka_bootstrap: str, kafka_group_settings: dict[str, int], new_topic: TopicFactory
) -> None:
    topic, group = await new_topic(2), f"infra-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, {0: [b"a0", b"a1", b"a2"], 1: [b"b0", b"b1", b"b2"]})
    seen: list[ConsumerRecord[Any, Any]] = []
    all_seen = asyncio.Event()

    async def handle(msg: KafkaMessage, consumer: Consumer) -> None:
        records = batch_records(msg)
        seen.extend(records)
        # As if only partition 0's database transaction committed: commit exactly its offsets.
        # A bare consumer.commit() would commit partition 1's position too and lose its records.
        await consumer.commit(
            {tp: offset for tp, offset in next_offsets(records).items() if tp.partition == 0}
        )
        if len(seen) == 6:
            all_seen.set()

    await run_batch_subscriber(kafka_bootstrap, topic, group, kafka_group_settings, handle, all_seen)

    resumed = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_group_settings,
    )
    await resumed.start()
    try:
        redelivered = await fetch_all(resumed, 3)
        assert await resumed.committed(TopicPartition(topic, 0)) == 3
        assert await resumed.committed(TopicPartition(topic, 1)) is None
    finally:
        await resumed.stop()
    assert [(r.partition, r.value) for r in redelivered] == [(1, b"b0"), (1, b"b1"), (1, b"b2")]


async def test_a_nacked_batch_is_delivered_again(
    kafka_bootstrap: str, kafka_group_settings: dict[str, int], new_topic: TopicFactory
) -> None:
    topic, group = await new_topic(1), f"infra-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, {0: [b"r0", b"r1", b"r2"]})
    deliveries: list[list[bytes]] = []
    committed = asyncio.Event()

    async def handle(msg: KafkaMessage, consumer: Consumer) -> None:
        records = batch_records(msg)
        deliveries.append([record.value for record in records])
        if len(deliveries) == 1:
            # With manual acks an exception alone would not rewind: the next batch would follow,
            # and committing it would skip this one. nack() seeks each partition back.
            await msg.nack()
            return
        await consumer.commit(next_offsets(records))
        committed.set()

    await run_batch_subscriber(kafka_bootstrap, topic, group, kafka_group_settings, handle, committed)

    assert deliveries == [[b"r0", b"r1", b"r2"], [b"r0", b"r1", b"r2"]]


async def test_session_database_accepts_connections(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            name = await connection.scalar(text("SELECT current_database()"))
    finally:
        await engine.dispose()

    assert name == urlsplit(database_url).path.lstrip("/")
    assert str(name).startswith("refund_test_")


async def test_a_session_left_idle_inside_a_transaction_is_ended_so_its_locks_go(database_url: str) -> None:
    # A frozen worker must not hold its row locks for ever: PostgreSQL ends the session.
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            timeout = await connection.scalar(text("SHOW idle_in_transaction_session_timeout"))
    finally:
        await engine.dispose()

    assert timeout == "1min"


class _BodyFailed(Exception):
    def __init__(self, address: str, accepted: bool) -> None:
        super().__init__(address)
        self.address, self.accepted = address, accepted


def accepts(address: str) -> bool:
    """Whether a TCP connection to the host and port named in `address` (URL or host:port) opens."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except OSError:
        return False
    return True


def enter_and_fail(service: AbstractContextManager[str]) -> tuple[str, bool]:
    """Enters `service` and raises from its body; returns what it yielded and whether that answered."""
    try:
        with service as address:
            raise _BodyFailed(address, accepts(address))
    except _BodyFailed as failure:
        return failure.address, failure.accepted
    raise AssertionError("the context manager swallowed its body's exception")


def test_embedded_broker_stops_when_the_body_raises() -> None:
    bootstrap, accepted_inside = enter_and_fail(embedded_kafka())

    assert accepted_inside
    assert not accepts(bootstrap)


def test_embedded_postgres_stops_when_the_body_raises() -> None:
    url, accepted_inside = enter_and_fail(embedded_postgres())

    assert accepted_inside
    assert not accepts(url)
