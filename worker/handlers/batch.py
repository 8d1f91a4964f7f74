"""The one way every subscriber hands a batch to its pipeline and commits.

FastStream with AckPolicy.MANUAL never commits for us, and if a handler raised, the consumer would
already be past the batch and a later commit would skip it. So this handler never lets an error
escape: on failure it waits, then rewinds the batch's partitions (`nack`) to process it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from faststream.kafka.message import KafkaMessage

from worker.engine.pipeline import BatchReport
from worker.engine.records import InboundRecord

log = logging.getLogger(__name__)

REWIND_DELAY_SECONDS = 1.0


async def raw_parser(
    records: tuple[ConsumerRecord[Any, Any], ...],
    original: Callable[[tuple[ConsumerRecord[Any, Any], ...]], Awaitable[KafkaMessage]],
) -> KafkaMessage:
    """FastStream's own parser drops a whole batch over one non-UTF-8 header; ours judges each record.
    FastStream is given the first record alone, without headers: the handler reads `raw_message`
    only, and a copy and a header decoding per record were CPU spent for nothing."""
    message = await original((dataclasses.replace(records[0], headers=()),))
    message.raw_message = records
    message.message_id = f"{records[0].offset}-{records[-1].offset}-{records[0].timestamp}"
    return message


async def raw_decoder(message: KafkaMessage) -> None:
    """No body decoding: the pipeline reads the envelope and data itself, record by record."""
    return None


def inbound(record: ConsumerRecord[Any, Any]) -> InboundRecord:
    return InboundRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
        timestamp_ms=record.timestamp,
    )


class Processor(Protocol):
    """A BatchPipeline, or worker.handlers.inputs.InputRouter over several."""

    async def process(self, records: Sequence[InboundRecord]) -> BatchReport: ...


async def handle_batch(pipeline: Processor, message: KafkaMessage, consumer: AIOKafkaConsumer) -> None:
    records = message.raw_message if isinstance(message.raw_message, tuple) else (message.raw_message,)
    try:
        report = await pipeline.process([inbound(record) for record in records])
    except Exception:  # the pipeline already retried what can be retried; do not lose the batch
        log.exception("batch of %d failed; rewinding to process it again", len(records))
        await asyncio.sleep(REWIND_DELAY_SECONDS)
        await message.nack()
        return
    await _commit(consumer, report.offsets)


async def _commit(consumer: AIOKafkaConsumer, offsets: dict[tuple[str, int], int]) -> None:
    """Commit exactly these partitions' offsets: commit() without arguments would commit them all."""
    try:
        await consumer.commit({TopicPartition(*partition): offset for partition, offset in offsets.items()})
    except (CommitFailedError, IllegalStateError) as error:
        # A rebalance took the partitions away. The database already holds the effects, so the new
        # owner's redelivery is recognised by the inbox and changes nothing.
        log.warning("offset commit refused after a rebalance (%s); the inbox absorbs the redelivery", error)
