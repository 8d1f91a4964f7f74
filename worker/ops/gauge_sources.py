"""What the scraped gauges show, read from their sources: the outbox backlog, the due expiry timers and
the open money refunds from the database, the consumer group's lag from the broker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.db.schema.expiry import expiry_timers
from worker.db.schema.money_refunds import OPEN, money_refund_instructions
from worker.db.schema.outbox import outbox, outbox_batches
from worker.expiry.firing_store import due_clause

Lags: TypeAlias = dict[tuple[str, int], int]
"""(topic, partition) -> messages not yet committed by the group."""


@dataclass(frozen=True, slots=True)
class MoneyRefundGauges:
    """The instructions the payment service has not settled yet (whole database)."""

    open: int
    oldest_open_age_seconds: float
    """How long the oldest open one has waited since it was instructed; 0 when none."""
    overdue: int
    """Open ones past their deadline (reported overdue or about to be)."""


@dataclass(frozen=True, slots=True)
class DatabaseGauges:
    outbox_backlog: int
    outbox_oldest_age_seconds: float
    expiry_timers_due: int
    money_refunds: MoneyRefundGauges = field(default_factory=lambda: MoneyRefundGauges(0, 0.0, 0))


class CommittedOffsets(Protocol):
    """What the lag needs of a consumer (an AIOKafkaConsumer is one): its partitions, their end and
    beginning offsets, and what the group has committed."""

    def assignment(self) -> Set[TopicPartition]: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def committed(self, partition: TopicPartition) -> int | None: ...


async def read_database_gauges(engine: AsyncEngine) -> DatabaseGauges:
    async with engine.connect() as conn:
        backlog, oldest_age = await _outbox_backlog(conn)
        due = await _expiry_timers_due(conn)
        money_refunds = await _money_refunds(conn)
    return DatabaseGauges(backlog, oldest_age, due, money_refunds)


async def _outbox_backlog(conn: AsyncConnection) -> tuple[int, float]:
    """Events not yet published and the age of the oldest in seconds (0: none): the unpublished
    batches' and what the release before left unsent in its `outbox` (worker/db/schema/outbox.py)."""
    o = outbox.c
    count, age = (
        await conn.execute(
            select(func.count(), func.extract("epoch", func.now() - func.min(o.created_at))).where(
                o.sent_at.is_(None)
            )
        )
    ).one()
    counts, ages = [int(count)], [age]
    if await _exists(conn, outbox_batches.name):
        b = outbox_batches.c
        events, age = (
            await conn.execute(
                select(func.sum(b.events), func.extract("epoch", func.now() - func.min(b.created_at))).where(
                    b.published_at.is_(None)
                )
            )
        ).one()
        counts.append(int(events or 0))
        ages.append(age)
    return sum(counts), max((float(age) for age in ages if age is not None), default=0.0)


async def _exists(conn: AsyncConnection, table: str) -> bool:
    """A database whose migrations are behind may not have the table yet: nothing is in it then."""
    return bool(await conn.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": table}))


async def _expiry_timers_due(conn: AsyncConnection) -> int:
    if not await _exists(conn, expiry_timers.name):
        return 0
    due = select(func.count()).where(due_clause(func.now()))
    return int(await conn.scalar(due) or 0)


async def _money_refunds(conn: AsyncConnection) -> MoneyRefundGauges:
    if not await _exists(conn, money_refund_instructions.name):
        return MoneyRefundGauges(0, 0.0, 0)
    i = money_refund_instructions.c
    count, oldest_age, overdue = (
        await conn.execute(
            select(
                func.count(),
                func.coalesce(func.extract("epoch", func.now() - func.min(i.instructed_at)), 0),
                func.count().filter(i.due_at <= func.now()),
            ).where(text(OPEN))  # as written: the partial index of the open ones serves it
        )
    ).one()
    return MoneyRefundGauges(int(count), max(float(oldest_age), 0.0), int(overdue))


async def read_consumer_lag(consumers: Iterable[CommittedOffsets]) -> Lags:
    """For each assigned partition: the log end offset minus the group's committed offset (the
    earliest offset where the group has committed nothing yet, as `auto_offset_reset=earliest`).

    Committed, not the consumer's position: while the database is away the position runs ahead
    over the batch in hand, but nothing is committed, and the lag must say so."""
    lags: Lags = {}
    for consumer in consumers:
        assigned = sorted(consumer.assignment())
        if not assigned:
            continue
        ends: dict[TopicPartition, int] = await consumer.end_offsets(assigned)
        committed = dict(zip(assigned, await asyncio.gather(*map(consumer.committed, assigned)), strict=True))
        never = [partition for partition in assigned if committed[partition] is None]
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(never) if never else {}
        for partition in assigned:
            done = committed[partition]
            lags[(partition.topic, partition.partition)] = max(
                ends[partition] - (starts[partition] if done is None else done), 0
            )
    return lags


def consumers_of(broker: KafkaBroker) -> list[AIOKafkaConsumer]:
    found: list[Any] = [getattr(subscriber, "consumer", None) for subscriber in broker.subscribers]
    return [consumer for consumer in found if isinstance(consumer, AIOKafkaConsumer)]
