"""How far an input topic has been read into the database: what the low watermarks are made of, of the
expiry timers (subscription-renewed) and of the overdue money refunds (payment-refund-settled).

Two kinds of evidence, per (topic, partition), in the table read_progress (docs/expiry.md):

- `record_read`: the latest event time a batch read from a partition, written in that batch's
  own transaction, so the row never claims more than the database holds.
- `ReadProbe` + `record_caught_up`: whether the consumer group had read a partition to its end.
  The probe notes the clock, then asks the broker for the partitions' end offsets, then for the
  group's committed offsets. The group commits an offset only after the database commit of
  everything below it, so a committed offset at or past the end means every record published
  before that clock reading is stored. It answers for every partition, whichever worker (or
  none) holds it, and for a partition that is empty.

worker.domain.watermark.low_watermark turns the rows into the watermark.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.schema.expiry import read_progress
from worker.domain.watermark import ReadProgress, low_watermark
from worker.engine.clock import utc_now

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """What the broker said at `at`: the topic's partitions, and those the group had read to their end."""

    at: datetime
    partitions: frozenset[int]
    caught_up: frozenset[int]


async def record_read(
    conn: AsyncConnection, topic: str, read_through: Mapping[int, datetime], now: datetime
) -> None:
    """Raise each partition's `read_through` to the given event time (never lowers it)."""
    if not read_through:
        return
    rows = [
        {"topic": topic, "kafka_partition": partition, "read_through": instant, "updated_at": now}
        for partition, instant in sorted(read_through.items())  # key order: no deadlock between batches
    ]
    add = insert(read_progress).values(rows)
    await conn.execute(
        add.on_conflict_do_update(
            index_elements=[read_progress.c.topic, read_progress.c.kafka_partition],
            set_={
                "read_through": func.greatest(read_progress.c.read_through, add.excluded.read_through),
                "updated_at": add.excluded.updated_at,
            },
        )
    )


async def record_caught_up(
    conn: AsyncConnection, topic: str, caught: CaughtUp, *, stored: Iterable[ReadProgress]
) -> None:
    """A row for every partition the broker listed; `caught_up_at` raised for those read to their end.

    Rows a batch is writing right now are skipped (FOR UPDATE SKIP LOCKED), so the firing never
    waits for an input batch: it counts this probe's answer anyway (`as_progress`), and the next
    probe records it. Only partitions not `stored` yet are inserted (an insert that meets a row
    being updated would wait for it).
    """
    p = read_progress.c
    known = {row.partition for row in stored}
    missing = [
        {"topic": topic, "kafka_partition": n, "updated_at": caught.at}
        for n in sorted(caught.partitions - known)
    ]
    if missing:
        await conn.execute(insert(read_progress).values(missing).on_conflict_do_nothing())
    if not caught.caught_up:
        return
    free = (
        select(p.kafka_partition)
        .where(p.topic == topic, p.kafka_partition.in_(sorted(caught.caught_up)))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    await conn.execute(
        update(read_progress)
        .where(p.topic == topic, p.kafka_partition.in_(free))
        .values(caught_up_at=func.greatest(p.caught_up_at, caught.at), updated_at=caught.at)
    )


def as_progress(caught: CaughtUp) -> list[ReadProgress]:
    """The probe's answer as progress rows, to count beside the stored ones."""
    return [ReadProgress(partition, caught_up_at=caught.at) for partition in sorted(caught.caught_up)]


async def progress_of(conn: AsyncConnection, topic: str) -> list[ReadProgress]:
    p = read_progress.c
    rows = await conn.execute(
        select(p.kafka_partition, p.read_through, p.caught_up_at).where(p.topic == topic)
    )
    return [ReadProgress(partition, through, caught) for partition, through, caught in rows]


async def topic_watermark(
    conn: AsyncConnection, topic: str, reads: CaughtUp | None, now: datetime
) -> datetime | None:
    """The low watermark of `topic` (worker.domain.watermark.low_watermark): from the stored progress,
    and from `reads`, what the broker just said of the group's progress, recorded first."""
    progress = await progress_of(conn, topic)
    if reads is None:
        return low_watermark(progress, now=now)
    await record_caught_up(conn, topic, reads, stored=progress)
    return low_watermark([*progress, *as_progress(reads)], now=now, partitions=reads.partitions)


class ReadProbe:
    """Asks the broker how far `group_id` has read `topic` (see the module's docstring).

    Holds a consumer without a group (for end offsets; it joins nothing) and an admin client (for
    the partitions and the group's committed offsets), started on first use and dropped after a
    failure, so the next probe reconnects.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str,
        topic: str,
        timeout_seconds: float = PROBE_TIMEOUT_SECONDS,
        clock: Callable[[], datetime] = utc_now,
        **client_options: Any,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._group = group_id
        self._topic = topic
        self._timeout = timeout_seconds
        self._clock = clock
        self._options = client_options
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None

    async def probe(self) -> CaughtUp:
        try:
            async with asyncio.timeout(self._timeout):  # end_offsets can wait forever on a lost partition
                return await self._probe()
        except BaseException:
            await self.close()
            raise

    async def _probe(self) -> CaughtUp:
        admin, consumer = await self._started()
        described = await admin.describe_topics([self._topic])
        partitions = frozenset(
            int(p["partition"])
            for entry in described
            if entry.get("topic") == self._topic
            for p in entry.get("partitions") or ()
        )
        at = self._clock()  # before the end offsets: whatever was published before is below them
        wanted = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        if not wanted:
            return CaughtUp(at, frozenset(), frozenset())
        ends = await consumer.end_offsets(wanted)
        committed = await admin.list_consumer_group_offsets(self._group, partitions=wanted)
        read_to = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        never_committed = [tp for tp in wanted if tp not in read_to]
        if never_committed:  # the group starts those at the earliest offset (auto_offset_reset)
            read_to.update(await consumer.beginning_offsets(never_committed))
        caught_up = frozenset(tp.partition for tp in wanted if read_to[tp] >= ends[tp])
        return CaughtUp(at, partitions, caught_up)

    async def _started(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._clients is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap, client_id="refund-worker-read-probe", **self._options
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id="refund-worker-read-probe",
                group_id=None,
                enable_auto_commit=False,
                **self._options,
            )
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await admin.close()
                await consumer.stop()
                raise
            self._clients = (admin, consumer)
        return self._clients

    async def close(self) -> None:
        clients, self._clients = self._clients, None
        if clients is None:
            return
        admin, consumer = clients
        try:
            await consumer.stop()
        finally:
            await admin.close()
