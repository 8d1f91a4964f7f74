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
    """`SendAll` over an aiokafka producer: returns when every record is acknowledged."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        pending = [
            await self._producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            for record in records
        ]
        await asyncio.gather(*pending)
