"""The input topics, read by ONE batch subscriber; each topic's records go to that topic's pipeline.

One consumer per worker for all of termination-requested, subscription-expired,
subscription-renewed, balance-adjustment-requested, money-refund-requested, payment-refund-settled
and credit-note-issued, rather than one per topic, so that a worker is a single member of its
consumer group: each extra member makes every (re)start and rebalance slower, and the embedded
broker (Tansu) could leave a restarted multi-member worker stuck in SyncGroup for minutes.

Every topic keeps the same rules: its records are parsed, applied in one transaction, poison
dead-lettered, by its own pipeline (worker.engine.pipeline); the offsets of the whole batch are committed
once every pipeline has returned, and a failure rewinds the whole batch (handle_batch), whose
already-committed part the inbox then recognises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer, KafkaMessage

from schemas.topics import Topic
from worker.config.settings import Settings
from worker.engine.pipeline import BatchReport
from worker.engine.records import InboundRecord, next_offsets
from worker.handlers.batch import Processor, handle_batch, raw_decoder, raw_parser
from worker.infra.tansu import TANSU_GROUP_SETTINGS

KAFKA_GROUP_TIMING = {"session_timeout_ms": 10000, "heartbeat_interval_ms": 3000}

DESCRIPTIONS: Mapping[Topic, str] = MappingProxyType(
    {
        Topic.TERMINATION_REQUESTED: "Customer termination requests: decided, refunded and answered once.",
        Topic.SUBSCRIPTION_EXPIRED: (
            "Expiries: each arms a durable timer that terminates the subscription after the grace period."
        ),
        Topic.SUBSCRIPTION_RENEWED: "Renewals: one inside an expiry's grace period cancels its timer.",
        Topic.BALANCE_ADJUSTMENT_REQUESTED: (
            "Operator adjustments of an account's credits: applied or rejected once, in order per account."
        ),
        Topic.MONEY_REFUND_REQUESTED: (
            "Money back through the payment service: each request is instructed (the credits taken at "
            "once when from_balance) or rejected once, in order per account."
        ),
        Topic.PAYMENT_REFUND_SETTLED: (
            "The payment service's answers: each instruction is settled once, a failure giving the "
            "payment's amount and the debited credits back."
        ),
        Topic.CREDIT_NOTE_ISSUED: (
            "Credit notes from the invoice app: a later termination's refund is them, or, after an "
            "automatic refund as credits, a conflict is reported."
        ),
    }
)


class InputRouter:
    """Hands each topic's records of a batch to that topic's pipeline, topic by topic."""

    def __init__(self, pipelines: Mapping[Topic, Processor]) -> None:
        self._pipelines = {topic.value: pipeline for topic, pipeline in pipelines.items()}

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._pipelines)

    async def process(self, records: Sequence[InboundRecord]) -> BatchReport:
        by_topic: dict[str, list[InboundRecord]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        processed = dead_lettered = 0
        for topic, pipeline in self._pipelines.items():  # a fixed order, whatever the batch's
            if topic in by_topic:
                report = await pipeline.process(by_topic[topic])
                processed += report.processed
                dead_lettered += report.dead_lettered
        return BatchReport(processed, dead_lettered, next_offsets(records))


def subscribe_inputs(
    broker: KafkaBroker, pipelines: Mapping[Topic, Processor], consumer_options: dict[str, Any]
) -> None:
    router = InputRouter(pipelines)

    async def on_inputs(message: KafkaMessage, consumer: Consumer) -> None:
        await handle_batch(router, message, consumer)

    subscriber = broker.subscriber(
        *router.topics,
        batch=True,
        ack_policy=AckPolicy.MANUAL,
        parser=raw_parser,
        decoder=raw_decoder,
        title="inputs",
        description=" ".join(f"{topic.value}: {DESCRIPTIONS[topic]}" for topic in pipelines),
        **consumer_options,
    )
    subscriber(on_inputs)


def consumer_options(settings: Settings, *, embedded_kafka: bool) -> dict[str, Any]:
    """The input consumer's options: the group, batching, and group timeouts that suit the broker."""
    timing = TANSU_GROUP_SETTINGS if embedded_kafka else KAFKA_GROUP_TIMING
    return {
        "group_id": settings.consumer_group,
        "auto_offset_reset": "earliest",
        "max_records": settings.batch_max_records,
        "batch_timeout_ms": settings.batch_timeout_ms,
        "session_timeout_ms": settings.kafka_session_timeout_ms or timing["session_timeout_ms"],
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms or timing["heartbeat_interval_ms"],
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
    }
