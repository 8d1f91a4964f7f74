"""Building the worker's long-lived resources: the database engine and the Kafka producer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.config.settings import async_database_url, redacted
from worker.db.bulk import to_json
from worker.db.migrate import upgrade_to_head
from worker.engine.partitioning import murmur2, partition_of
from worker.engine.records import OutboundRecord

log = logging.getLogger(__name__)


# A worker frozen inside a transaction (SIGSTOP, a paused VM) keeps its row locks, and every other
# worker waiting on them stalls with it. PostgreSQL ends such a session after this long, so the
# group goes on; it must outlast the outbox relay's wait for the broker's acknowledgement (15 s).
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


def create_engine(
    database_url: str, *, pool_size: int = 5, connect_args: Mapping[str, Any] | None = None
) -> AsyncEngine:
    """`connect_args`: asyncpg's, e.g. TLS from worker.config.security.database_connect_args."""
    args = dict(connect_args or {})
    args["server_settings"] = {
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS),
        **args.get("server_settings", {}),
    }
    return create_async_engine(
        async_database_url(database_url),
        pool_size=pool_size,
        pool_pre_ping=True,  # a connection the database dropped is replaced, not handed out
        json_serializer=to_json,
        connect_args=args,
    )


# How long the worker waits, as it stops, for the database to answer its goodbye (asyncpg's
# Terminate, then the server closing the connection): a database cut away at shutdown must not
# keep the process from exiting. Nothing is left to commit by then.
RELEASE_SECONDS = 5.0


async def release_engine(engine: AsyncEngine, within: float = RELEASE_SECONDS) -> None:
    """`engine.dispose()`, given up after `within` seconds (the process is exiting anyway)."""
    try:
        async with asyncio.timeout(within):
            await engine.dispose()
    except TimeoutError:
        log.warning("the database did not answer the worker's goodbye within %.0fs; stopping anyway", within)


async def migrate_database(database_url: str, connect_args: Mapping[str, Any] | None = None) -> None:
    engine = create_engine(database_url, pool_size=1, connect_args=connect_args)
    try:
        log.info("migrating %s", redacted(database_url))
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


def create_producer(bootstrap_servers: str, **client_options: Any) -> AIOKafkaProducer:
    """`client_options`: TLS/SASL from worker.config.security.kafka_client_options."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        **client_options,
        acks="all",
        enable_idempotence=False,  # Tansu refuses InitProducerId; exactly-once lives in PostgreSQL
        linger_ms=2,
        max_batch_size=512 * 1024,
        request_timeout_ms=15000,
    )


class ProducerSender:
    """`SendAll` over an aiokafka producer: returns when every record is acknowledged.

    Keyed records go as one batch per partition (`send_batch`), the partition chosen as aiokafka's
    default partitioner would (murmur2 of the key over the topic's partitions in order), so a key
    lands where `send` would put it: one future per partition rather than per record, and no
    per-record partitioning through the client's metadata (issue 13). Records without a key go
    through `send` one by one.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        if any(record.key is None for record in records):
            pending = [
                await self._producer.send(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
                for record in records
            ]
            await asyncio.gather(*pending)
            return
        await asyncio.gather(*await self._send_batches(records))

    async def _send_batches(self, records: Sequence[OutboundRecord]) -> list[asyncio.Future[Any]]:
        producer, futures = self._producer, []
        partitions: dict[str, list[int]] = {}
        hashes: dict[bytes, int] = {}  # by key alone: a request's outputs to several topics share keys
        batches: dict[tuple[str, int], Any] = {}
        for record in records:
            topic, key = record.topic, record.key or b""
            every = partitions.get(topic)
            if every is None:
                every = partitions[topic] = sorted(await producer.partitions_for(topic))
            key_hash = hashes.get(key)
            if key_hash is None:
                key_hash = hashes[key] = murmur2(key)
            partition = partition_of(key_hash, every)
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if (
                batch.append(key=key, value=record.value, timestamp=None, headers=list(record.headers))
                is None
            ):
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[(topic, partition)] = producer.create_batch()
                if (
                    batch.append(key=key, value=record.value, timestamp=None, headers=list(record.headers))
                    is None
                ):
                    raise ValueError(f"a record for {topic} is larger than a whole batch")
        for (topic, partition), batch in batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
