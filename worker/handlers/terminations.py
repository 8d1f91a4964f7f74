"""termination-requested: a thin subscriber; the work is in worker.pipeline and worker.terminations."""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer, KafkaMessage

from schemas.topics import Topic
from worker.handlers.batch import handle_batch, raw_decoder, raw_parser
from worker.pipeline import BatchPipeline
from worker.terminations import TerminationCommand


def subscribe_terminations(
    broker: KafkaBroker, pipeline: BatchPipeline[TerminationCommand], consumer_options: dict[str, Any]
) -> None:
    async def on_termination_requested(message: KafkaMessage, consumer: Consumer) -> None:
        await handle_batch(pipeline, message, consumer)

    subscriber = broker.subscriber(
        Topic.TERMINATION_REQUESTED.value,
        batch=True,
        ack_policy=AckPolicy.MANUAL,
        parser=raw_parser,
        decoder=raw_decoder,
        title="termination-requested",
        description="Customer termination requests: decided, refunded and answered exactly once.",
        **consumer_options,
    )
    subscriber(on_termination_requested)
