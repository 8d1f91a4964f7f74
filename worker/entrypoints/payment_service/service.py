"""The simulated payment service on Kafka: it reads `payment-refund-instructed` in its own consumer
group and answers on `payment-refund-settled` by the rule in `answers` (contract section 9).

For a demo and the tests, not for production: it keeps nothing but its group's offsets, and an
instruction it cannot read is logged and skipped (the real payment service has its own rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.envelope import OutgoingMessage, parse_message
from schemas.errors import InvalidMessage
from schemas.events import validate_data
from schemas.money_refunds import PaymentRefundInstructed, SettlementStatus
from schemas.topics import TOPICS, Topic
from worker.entrypoints.payment_service.answers import settlement_for

log = logging.getLogger(__name__)

DEFAULT_GROUP = "payment-simulator"
_TOPICS = (Topic.PAYMENT_REFUND_INSTRUCTED.value, Topic.PAYMENT_REFUND_SETTLED.value)


@dataclass(frozen=True, slots=True)
class Handled:
    """One instruction read: its id and the status answered (None: the rule never answers it)."""

    instruction_id: str
    status: SettlementStatus | None


class PaymentSimulator:
    """`async with PaymentSimulator(...) as simulator:` answers instructions until the block ends.

    `consumer_options` go to the group's consumer (session and heartbeat timeouts that suit the
    broker); `client_options` to every client (TLS/SASL, worker.config.security).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str = DEFAULT_GROUP,
        partitions: int = 4,
        consumer_options: dict[str, Any] | None = None,
        **client_options: Any,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._partitions = partitions
        self._client_options = client_options
        self._group_id = group_id
        self._consumer_options = consumer_options or {}
        self._task: asyncio.Task[None] | None = None
        self.handled: list[Handled] = []

    async def __aenter__(self) -> PaymentSimulator:
        await ensure_payment_topics(self._bootstrap, self._partitions, **self._client_options)
        self._consumer, self._producer = self._clients()
        await self._producer.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._consumer.stop()
            await self._producer.stop()
            raise
        self._task = asyncio.create_task(self._answer_forever(), name="payment-simulator")
        return self

    def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
        consumer = AIOKafkaConsumer(
            Topic.PAYMENT_REFUND_INSTRUCTED.value,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,  # the embedded broker answers a waiting fetch only at its deadline
            **self._consumer_options,
            **self._client_options,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, enable_idempotence=False, linger_ms=2, **self._client_options
        )
        return consumer, producer

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
        await self._producer.stop()

    async def run_until_stopped(self) -> None:
        """Wait while it answers; returns only if the answering task ends (an unexpected error)."""
        if self._task is None:
            raise RuntimeError("the simulator has not started")
        await self._task

    async def _answer_forever(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for records in batches.values():
                await self._answer(records)
            if batches:
                await self._consumer.commit()

    async def _answer(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            settlement = self._settlement(record)
            if settlement is not None:
                await self._producer.send_and_wait(
                    settlement.topic, settlement.value, key=settlement.key, headers=settlement.headers
                )

    def _settlement(self, record: ConsumerRecord[bytes, bytes]) -> OutgoingMessage | None:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            instruction, instructed_at = read_instruction(record)
        except InvalidMessage as invalid:
            log.warning("payment simulator: skipping %s: %s", where, invalid)
            return None
        settlement = settlement_for(instruction, instructed_at)
        status = None if settlement is None else settlement.data.status
        self.handled.append(Handled(instruction.instruction_id, status))
        log.info("payment simulator: %s %s", instruction.instruction_id, status or "left unanswered")
        return None if settlement is None else settlement.message


def read_instruction(record: ConsumerRecord[bytes, bytes]) -> tuple[PaymentRefundInstructed, datetime]:
    """The instruction in a record and its `ce_time` (now, when it has none); InvalidMessage if unread."""
    event = parse_message(record.headers, record.value, record.key)
    expected = TOPICS[Topic.PAYMENT_REFUND_INSTRUCTED].ce_type
    if event.attributes.type != expected:
        raise InvalidMessage(f"ce_type {event.attributes.type!r} is not {expected!r}")
    instruction = validate_data(PaymentRefundInstructed, event.data)
    return instruction, event.attributes.time or datetime.now(UTC)


async def ensure_payment_topics(bootstrap_servers: str, partitions: int, **client_options: Any) -> None:
    """Create the instruction and settlement topics if missing (a worker that serves section 9
    creates them too; the simulator may start first)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options)
    await admin.start()
    try:
        missing = [topic for topic in _TOPICS if topic not in set(await admin.list_topics())]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, partitions, 1) for topic in missing])
    except KafkaError as error:
        log.warning("payment simulator: could not create %s: %s", ", ".join(_TOPICS), error)
    finally:
        await admin.close()
