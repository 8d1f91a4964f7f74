"""The producer sender sends keyed records as one batch per partition, each key on the partition
aiokafka's default partitioner gives it (where `send` would put it), in order."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from worker.engine.records import OutboundRecord
from worker.engine.runtime import ProducerSender


class Batch:
    def __init__(self, room: int) -> None:
        self.records: list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = []
        self.room = room

    def append(
        self, *, key: bytes, value: bytes | None, timestamp: None, headers: list[tuple[str, bytes]]
    ) -> Any:
        if len(self.records) == self.room:
            return None
        self.records.append((key, value, headers))
        return object()


class Producer:
    def __init__(self, partitions: int, room: int = 1000) -> None:
        self.partitions = partitions
        self.room = room
        self.sent: list[tuple[str, int, Batch]] = []
        self.single: list[OutboundRecord] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: list[Any]
    ) -> asyncio.Future[None]:
        self.single.append(OutboundRecord(topic, key, value, tuple(headers)))
        return await self.send_batch(Batch(0), topic, partition=-1)


def records(count: int) -> list[OutboundRecord]:
    return [
        OutboundRecord("t", f"sub-{i % 13}".encode(), f"{i}".encode(), (("ce_id", f"{i}".encode()),))
        for i in range(count)
    ]


async def test_each_key_goes_where_the_default_partitioner_puts_it_in_order_one_batch_a_partition() -> None:
    producer = Producer(partitions=8)
    given = records(100)

    await ProducerSender(producer)(given)

    partitions = [topic_partition for topic, topic_partition, _ in producer.sent]
    assert len(partitions) == len(set(partitions))
    for _, partition, batch in producer.sent:
        for key, _, _ in batch.records:
            assert DefaultPartitioner()(key, list(range(8)), []) == partition
    sent = {value for _, _, batch in producer.sent for _, value, _ in batch.records}
    assert sent == {record.value for record in given}
    for _, _, batch in producer.sent:
        values = [int(value or b"") for _, value, _ in batch.records]
        assert values == sorted(values)
    assert producer.single == []


async def test_a_full_batch_is_sent_and_another_started() -> None:
    producer = Producer(partitions=1, room=30)

    await ProducerSender(producer)(records(100))

    assert [len(batch.records) for _, _, batch in producer.sent] == [30, 30, 30, 10]
    assert [int(value or b"") for _, _, batch in producer.sent for _, value, _ in batch.records] == list(
        range(100)
    )


async def test_records_without_a_key_are_sent_one_by_one() -> None:
    producer = Producer(partitions=4)
    given = [OutboundRecord("dlt", None, b"x", ()), *records(2)]

    await ProducerSender(producer)(given)

    assert producer.single == given
