"""Running the real worker in-process against the session's broker and database, and talking to it
the way the portals and downstream services do: CloudEvents in, CloudEvents out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.envelope import binary_headers
from schemas.topics import OUTPUT_TOPICS, TOPICS, Topic
from worker.app import Services, Worker, build_worker
from worker.config.settings import Settings
from worker.engine.topics_admin import ensure_topics

SOURCE = "/tests/portal"
OUTPUT_TOPIC_NAMES = tuple(topic.value for topic in OUTPUT_TOPICS)


def worker_settings(
    kafka_bootstrap: str, database_url: str, group_settings: dict[str, int], **overrides: Any
) -> Settings:
    """Settings for a worker of the shared test group (unless `consumer_group` is overridden)."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "database_url": database_url,
        "consumer_group": "refund-worker-tests",
        "kafka_session_timeout_ms": group_settings["session_timeout_ms"],
        "kafka_heartbeat_interval_ms": group_settings["heartbeat_interval_ms"],
        "outbox_poll_seconds": 0.2,
        "retry_backoff_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    assert settings.kafka_bootstrap_servers is not None
    assert settings.database_url is not None
    worker = build_worker(settings, Services(settings.kafka_bootstrap_servers, settings.database_url))
    try:  # stopped even when its start is interrupted: a worker left running consumes later tests' topics
        await worker.app.start()
        yield worker
    finally:
        await worker.app.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def termination_data(**fields: Any) -> dict[str, Any]:
    """A valid termination-requested data object (yearly SGD 120.00 from 2021-04-01, asked on day 11)."""
    data: dict[str, Any] = {
        "subscription_id": unique("sub"),
        "account_id": unique("acc"),
        "reseller_id": unique("res"),
        "product": "SIP Trunk",
        "cycle_start": "2021-04-01",
        "cycle_months": 12,
        "amount_paid": "120.00",
        "currency": "SGD",
        "timezone": "Asia/Singapore",
        "allow_refund": True,
        "requested_at": "2021-04-12T10:00:00+08:00",
        "requested_by": "operator@reseller.example",
        "reason": "customer asked",
        "credit_note": None,
    }
    data.update(fields)
    return data


def adjustment_data(account_id: str, reseller_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A valid balance-adjustment-requested data object of `kind` (SGD, by a finance manager)."""
    data: dict[str, Any] = {
        "account_id": account_id,
        "reseller_id": reseller_id,
        "currency": "SGD",
        "kind": kind,
        "amount": None if kind == "reversal" else "10.00",
        "transaction": None,
        "reverses": None,
        "reason": f"a {kind} for the test",
        "requested_at": "2021-05-03T14:20:00+08:00",
        "actor": {
            "id": "finance@reseller.example",
            "reseller_id": reseller_id,
            "permissions": ["finance:manage"],
        },
    }
    data.update(fields)
    return data


def money_refund_data(account_id: str, reseller_id: str, **fields: Any) -> dict[str, Any]:
    """A valid money-refund-requested data object: a retail account's charge back of 50.00 of a 120.00
    SGD payment, not taken from the credits, by a finance manager."""
    data: dict[str, Any] = {
        "account_id": account_id,
        "reseller_id": reseller_id,
        "account_type": "retail",
        "method": "charge_back",
        "payment": {"payment_id": "pay-1", "amount": "120.00", "currency": "SGD"},
        "amount": "50.00",
        "from_balance": False,
        "reason": "the customer wants the money back",
        "requested_at": "2021-05-06T10:00:00+08:00",
        "actor": {
            "id": "finance@reseller.example",
            "reseller_id": reseller_id,
            "permissions": ["finance:manage"],
        },
    }
    data.update(fields)
    return data


def settlement_data(
    instruction_id: str, account_id: str, reseller_id: str, status: str = "succeeded", **fields: Any
) -> dict[str, Any]:
    """A valid payment-refund-settled data object for the instruction."""
    data: dict[str, Any] = {
        "instruction_id": instruction_id,
        "reseller_id": reseller_id,
        "account_id": account_id,
        "status": status,
        "detail": f"the gateway says {status}",
        "settled_at": "2021-05-07T03:29:41Z",
    }
    data.update(fields)
    return data


@dataclass(frozen=True)
class Raw:
    """A message exactly as it will be produced (for poison and envelope tests)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    partition: int | None = None
    """None: the producer's partitioner picks it by the key."""


def event(topic: Topic, data: dict[str, Any], ce_id: str | None = None) -> Raw:
    """An input event in binary content mode, keyed as the contract says."""
    spec = TOPICS[topic]
    headers = binary_headers(
        event_id=ce_id or unique("ce"), source=SOURCE, ce_type=spec.ce_type, time=datetime.now(UTC)
    )
    key = data[spec.key_field]
    if key is None and spec.key_fallback:  # a credit note for no subscription: keyed by its account
        key = data[spec.key_fallback]
    return Raw(topic.value, str(key).encode(), json.dumps(data).encode(), list(headers))


async def publish(bootstrap: str, messages: Iterable[Raw]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=2)
    await producer.start()
    try:
        pending = [
            await producer.send(m.topic, m.value, key=m.key, headers=m.headers, partition=m.partition)
            for m in messages
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _json_or_raw(value: bytes | None) -> dict[str, Any]:
    """Outputs are JSON objects; a dead letter may be anything, so keep it raw then."""
    try:
        data = json.loads(value or b"")
    except ValueError:
        return {"_raw": value}
    return data if isinstance(data, dict) else {"_raw": value}


@dataclass
class Received:
    topic: str
    key: str | None
    headers: dict[str, bytes]
    data: dict[str, Any]

    @property
    def ce_id(self) -> str:
        return self.headers["ce_id"].decode()


async def seek_past_last_batch(consumer: AIOKafkaConsumer, partition: TopicPartition) -> None:
    """After seek_to_end: past every record already there. Tansu reports a partition's end as one
    past the first record of its last record batch (a producer's batch may hold many), so without
    this a watcher would see that batch's other records as new (see worker.dlq.kafka)."""
    end = await consumer.position(partition)
    if end == 0:
        return
    consumer.seek(partition, end - 1)
    fetched = await consumer.getmany(partition, timeout_ms=300)
    last = max([end - 1, *(int(record.offset) for record in fetched.get(partition, []))])
    consumer.seek(partition, last + 1)


class OutputWatcher:
    """Reads the output topics from their ends at the time it starts, without a consumer group."""

    def __init__(
        self, bootstrap: str, topics: Sequence[str] = OUTPUT_TOPIC_NAMES, *, fetch_max_wait_ms: int = 500
    ) -> None:
        self._bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms
        )
        self._topics = topics
        self.received: list[Received] = []

    async def __aenter__(self) -> OutputWatcher:
        await ensure_topics(self._bootstrap, partitions=Settings().topic_partitions)  # as a worker would
        await self._consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in (self._consumer.partitions_for_topic(topic) or await self._partitions(topic))
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # pin the start now, before anything is published
            await seek_past_last_batch(self._consumer, partition)
        return self

    async def _partitions(self, topic: str) -> set[int]:
        await self._consumer._client.force_metadata_update()  # no public way to refresh metadata
        return self._consumer.partitions_for_topic(topic) or set()

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                self.received.append(
                    Received(
                        topic=record.topic,
                        key=record.key.decode() if record.key else None,
                        headers={name: value for name, value in record.headers},
                        data=_json_or_raw(record.value),
                    )
                )

    def about(self, request_ids: set[str]) -> list[Received]:
        return [r for r in self.received if r.data.get("request_id") in request_ids]

    async def wait_for(self, predicate: Any, within: float = 30.0, settle: float = 0.0) -> list[Received]:
        """Poll until predicate(received) is true (then `settle` seconds more, to catch extras)."""
        deadline = asyncio.get_running_loop().time() + within
        while not predicate(self.received):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out; received so far: {[(r.topic, r.data) for r in self.received]}"
                )
            await self.poll()
        end = asyncio.get_running_loop().time() + settle
        while asyncio.get_running_loop().time() < end:
            await self.poll()
        return self.received

    async def answers(
        self, request_ids: set[str], within: float = 30.0, settle: float = 0.5
    ) -> list[Received]:
        """Everything published about these requests, once each has its terminated/rejected answer."""
        final = {Topic.SUBSCRIPTION_TERMINATED.value, Topic.TERMINATION_REJECTED.value}

        def answered(received: list[Received]) -> bool:
            done = {r.data["request_id"] for r in received if r.topic in final and "request_id" in r.data}
            return request_ids <= done

        await self.wait_for(answered, within, settle)
        return self.about(request_ids)
