"""The load generator's two ends: publishing requests and reading their answers, and the audit
that every request took effect exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select

from bench.statements import request
from schemas.envelope import binary_headers
from schemas.topics import TOPICS, Topic
from worker.db.bulk import wanted
from worker.db.schema.balances import account_balances, balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.refunds import terminations
from worker.engine.records import OutboundRecord
from worker.engine.runtime import ProducerSender, create_engine

REQUESTED = Topic.TERMINATION_REQUESTED.value
TERMINATED = Topic.SUBSCRIPTION_TERMINATED.value
# The embedded broker answers a waiting fetch only at its deadline, so the reader's wait is added to
# each latency it measures (aiokafka's 500 ms: up to half a second) and sets how often it asks: at
# 5 ms, 200 fetches a second, which in a backlog cost the broker 8-10 µs and the reader 10 µs a
# request for a precision the backlog's seconds of queueing do not need (docs/performance.md).
READER_FETCH_WAIT_MS = 5
"""At a fixed offered rate, where the latency is what is measured."""
BACKLOG_READER_FETCH_WAIT_MS = 50
"""In a backlog, where the latency is queueing and the sustained rate is what is measured."""


class Answers:
    """Reads subscription-terminated from its current end; the time each request was answered."""

    def __init__(self, bootstrap: str, fetch_wait_ms: int = READER_FETCH_WAIT_MS) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=fetch_wait_ms
        )
        self.answered: dict[str, float] = {}
        self.ce_ids: dict[str, set[str]] = {}

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()  # the topic may be minutes old
        partitions = [
            TopicPartition(TERMINATED, p) for p in self._consumer.partitions_for_topic(TERMINATED) or ()
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:
            await self._consumer.position(partition)

    async def until(self, wanted: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.answered.keys() and time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    request_id = json.loads(record.value)["request_id"]
                    self.answered.setdefault(request_id, now)
                    self.ce_ids.setdefault(request_id, set()).add(dict(record.headers)["ce_id"].decode())

    async def stop(self) -> None:
        await self._consumer.stop()


async def publish_all(
    bootstrap: str, messages: list[tuple[str, bytes, bytes]], rate: int = 0
) -> dict[str, float]:
    """Publish as fast as the broker acknowledges, or at `rate` per second; returns when each
    ce_id was sent. Chunks go as one batch per partition, partitioned as Kafka's default partitioner
    does (the worker's own sender, worker/engine/runtime.py): a future per record cost the load
    generator more than the broker spent on the request."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5, max_batch_size=512 * 1024
    )
    send = ProducerSender(producer)
    ce_type = TOPICS[Topic.TERMINATION_REQUESTED].ce_type
    sent: dict[str, float] = {}
    chunk = PACED_CHUNK if rate else BACKLOG_CHUNK
    await producer.start()
    try:
        pending = []
        start = time.monotonic()
        for first in range(0, len(messages), chunk):
            if rate:  # pace in chunks of PACED_CHUNK, so latency is not queueing
                await asyncio.sleep(max(0.0, start + first / rate - time.monotonic()))
            now, records = datetime.now(UTC), []
            for ce_id, key, value in messages[first : first + chunk]:
                headers = binary_headers(event_id=ce_id, source="/bench", ce_type=ce_type, time=now)
                records.append(OutboundRecord(REQUESTED, key, value, tuple(headers)))
            sent_at = time.monotonic()
            sent.update((ce_id, sent_at) for ce_id, _, _ in messages[first : first + chunk])
            pending.append(asyncio.ensure_future(send(records)))
            await asyncio.sleep(0)  # let this chunk start sending while the next is built
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


PACED_CHUNK = 100
BACKLOG_CHUNK = 1000


async def warm_up(bootstrap: str, answers: Answers, run: str, accounts: int) -> None:
    """One request answered: the workers have migrated, joined the group and are consuming."""
    message = request(0, f"{run}w", accounts)
    await publish_all(bootstrap, [message])
    await answers.until({message[0]}, timeout_s=120)
    if message[0] not in answers.answered:
        raise SystemExit("the worker did not answer a warm-up request within 120 s")


async def audit(database_url: str, ce_ids: set[str], answers: Answers) -> list[str]:
    """Problems found; none means every request took effect exactly once."""
    problems = []
    missing = ce_ids - answers.answered.keys()
    if missing:
        problems.append(f"{len(missing)} requests never answered")
    reissued = [r for r in ce_ids if len(answers.ce_ids.get(r, ())) > 1]
    if reissued:
        problems.append(f"{len(reissued)} requests answered under more than one ce_id")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            ids, wanted_ids = {"ids": list(ce_ids)}, wanted("ids")
            handled = await conn.scalar(
                select(func.count()).select_from(wanted_ids.join(inbox, inbox.c.ce_id == wanted_ids.c.id)),
                ids,
            )
            ended = await conn.scalar(
                select(func.count()).select_from(
                    wanted_ids.join(terminations, terminations.c.request_id == wanted_ids.c.id)
                ),
                ids,
            )
            if handled != len(ce_ids) or ended != len(ce_ids):
                problems.append(f"inbox {handled} / terminations {ended} for {len(ce_ids)} requests")
            balances = await conn.scalar(select(func.sum(account_balances.c.balance_minor)))
            ledger = await conn.scalar(select(func.sum(balance_ledger.c.delta_minor)))
            if balances != ledger:
                problems.append(f"balances {balances} differ from the ledger {ledger}")
    finally:
        await engine.dispose()
    return problems
