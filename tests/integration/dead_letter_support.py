"""For the dead-letter tests: producing with known timestamps, reading a dead-letter topic as raw
records, and an unexpected database error for chosen ce_ids (a trigger in the test's database, so
the real worker fails for real, with nothing patched)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.harness import Raw, seek_past_last_batch
from worker.dlq.recoverer import read_number

Header = tuple[str, bytes]


@dataclass(frozen=True)
class Produced:
    message: Raw
    partition: int
    offset: int
    timestamp_ms: int


async def produce(bootstrap: str, messages: Sequence[Raw], timestamp_ms: int) -> list[Produced]:
    """Each message, in order, with the record timestamp given; returns where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=2)
    await producer.start()
    try:
        pending = [
            await producer.send(m.topic, m.value, key=m.key, headers=m.headers, timestamp_ms=timestamp_ms)
            for m in messages
        ]
        landed = await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return [
        Produced(m, md.partition, md.offset, timestamp_ms) for m, md in zip(messages, landed, strict=True)
    ]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]

    def header(self, name: str) -> bytes:
        values = [value for header, value in self.headers if header == name]
        assert len(values) == 1, f"{name}: {values}"
        return values[0]

    def number(self, name: str) -> int:
        return read_number(self.header(name))


class RecordWatcher:
    """Reads topics from their ends at the time it starts, without a consumer group, as raw records."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topics = topics
        self.received: list[Record] = []

    async def __aenter__(self) -> RecordWatcher:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()  # no public way to refresh metadata
        partitions = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in self._consumer.partitions_for_topic(topic) or ()
        ]
        assert partitions, f"none of {self._topics} exists"
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # pin the start now, before anything is published
            await seek_past_last_batch(self._consumer, partition)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def poll(self) -> None:
        for records in (await self._consumer.getmany(timeout_ms=200)).values():
            self.received += [
                Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
                for r in records
            ]

    def with_keys(self, *keys: bytes) -> list[Record]:
        return [record for record in self.received if record.key in keys]

    async def wait_for(
        self, predicate: Callable[[list[Record]], bool], within: float = 30.0, settle: float = 0.0
    ) -> list[Record]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate(self.received):
            if loop.time() > deadline:
                raise AssertionError(f"timed out; received so far: {self.received}")
            await self.poll()
        settled = loop.time() + settle
        while loop.time() < settled:
            await self.poll()
        return self.received

    async def keys_arrived(self, *keys: bytes, within: float = 30.0, settle: float = 0.0) -> list[Record]:
        """Waits until each key has a record, then returns the records of these keys."""
        await self.wait_for(lambda got: set(keys) <= {r.key for r in got}, within, settle)
        return self.with_keys(*keys)


class InjectedFaults:
    """Makes the worker's inbox insert fail with an unexpected error (SQLSTATE P0001) for chosen
    ce_ids, and counts the attempts in a sequence (which, unlike a table, survives the rollback)."""

    _INSTALL = (
        "CREATE TABLE IF NOT EXISTS test_injected_faults (ce_id text PRIMARY KEY, counter text NOT NULL)",
        """
        CREATE OR REPLACE FUNCTION test_injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            attempts text;
        BEGIN
            SELECT f.counter INTO attempts FROM test_injected_faults f WHERE f.ce_id = NEW.ce_id;
            IF FOUND THEN
                PERFORM nextval(attempts::regclass);
                RAISE EXCEPTION 'injected fault for ce_id %', NEW.ce_id;
            END IF;
            RETURN NEW;
        END $$
        """,
        "DROP TRIGGER IF EXISTS test_injected_fault ON inbox",
        "CREATE TRIGGER test_injected_fault BEFORE INSERT ON inbox "
        "FOR EACH ROW EXECUTE FUNCTION test_injected_fault()",
    )
    _REMOVE = (
        "DROP TRIGGER IF EXISTS test_injected_fault ON inbox",
        "DROP FUNCTION IF EXISTS test_injected_fault()",
        "DROP TABLE IF EXISTS test_injected_faults",
    )

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._counters: dict[str, str] = {}

    async def __aenter__(self) -> InjectedFaults:
        await self._run(self._INSTALL)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._run([*self._REMOVE, *(f"DROP SEQUENCE IF EXISTS {c}" for c in self._counters.values())])

    async def fail(self, ce_id: str) -> None:
        counter = f"test_fault_{uuid.uuid4().hex[:12]}"
        self._counters[ce_id] = counter
        async with self._engine.begin() as conn:
            await conn.execute(text(f"CREATE SEQUENCE {counter}"))
            await conn.execute(
                text("INSERT INTO test_injected_faults VALUES (:ce_id, :counter)"),
                {"ce_id": ce_id, "counter": counter},
            )

    async def heal(self, ce_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM test_injected_faults WHERE ce_id = :ce_id"), {"ce_id": ce_id}
            )

    async def attempts(self, ce_id: str) -> int:
        async with self._engine.connect() as conn:
            row: Any = (
                await conn.execute(text(f"SELECT last_value, is_called FROM {self._counters[ce_id]}"))
            ).one()
        return int(row.last_value) if row.is_called else 0

    async def _run(self, statements: Sequence[str]) -> None:
        async with self._engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
