"""The output topics, declared to FastStream with their data models so the AsyncAPI document shows them.

The worker publishes through its transactional outbox (worker/engine/outbox.py), not through these
publishers: they exist so that the document FastStream generates (`refund-worker asyncapi`)
describes every topic the worker writes, with the same models the outbox encodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from faststream.kafka import KafkaBroker

from schemas.events import OUTPUT_MODELS
from schemas.topics import OUTPUT_TOPICS, TOPICS, Topic

WHEN_PUBLISHED: Mapping[Topic, str] = MappingProxyType(
    {
        Topic.REFUND_ISSUED: "A refund above zero was decided.",
        Topic.CREDITS_UPDATED: (
            "An account's available credits changed; balance_version counts the changes of one "
            "account and currency from 1."
        ),
        Topic.SUBSCRIPTION_TERMINATED: "Every termination, refund or not, by request or by expiry.",
        Topic.TERMINATION_REJECTED: "A well-formed termination request that the rules refuse.",
        Topic.BALANCE_ADJUSTED: (
            "An operator's adjustment was applied; balance_version is credits-updated's counter."
        ),
        Topic.ADJUSTMENT_REJECTED: (
            "A well-formed adjustment request, or money refund request (kind money_refund), that the rules "
            "refuse: nothing changed."
        ),
        Topic.PAYMENT_REFUND_INSTRUCTED: (
            "An accepted money refund, to the payment service: return the amount through the payment "
            "(answered on payment-refund-settled, naming the instruction_id)."
        ),
        Topic.MONEY_REFUND_UPDATED: (
            "A money refund's progress: instructed, then succeeded or failed once settled; overdue "
            "(once) when the payment service has not answered in MONEY_REFUND_TIMEOUT_HOURS."
        ),
        Topic.REFUND_CONFLICT_DETECTED: (
            "A credit note from the invoice app for a subscription already refunded as account credit, "
            "once per note: finance reverses one of the two."
        ),
    }
)


def declare_outputs(broker: KafkaBroker) -> None:
    for topic in OUTPUT_TOPICS:  # what the worker publishes: not a topic it does not serve yet
        model, spec = OUTPUT_MODELS[topic], TOPICS[topic]
        broker.publisher(
            topic.value,
            title=topic.value,
            description=(
                f"{WHEN_PUBLISHED[topic]} CloudEvents type {spec.ce_type}, binary content mode; "
                f"Kafka key: {spec.key_field}. De-duplicate on the ce_id header."
            ),
            schema=model,
        )
