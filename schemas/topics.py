"""The Kafka topics of the contract (section 1): names, CloudEvents types and which data field is the key.

Everything that names a topic or a `ce_type` imports it from here, so a typo cannot route an event to
a topic nobody reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

DEAD_LETTER_SUFFIX = "-dlt"


class Topic(StrEnum):
    # inputs
    TERMINATION_REQUESTED = "termination-requested"
    SUBSCRIPTION_EXPIRED = "subscription-expired"
    SUBSCRIPTION_RENEWED = "subscription-renewed"
    # outputs
    REFUND_ISSUED = "refund-issued"
    CREDITS_UPDATED = "credits-updated"
    SUBSCRIPTION_TERMINATED = "subscription-terminated"
    TERMINATION_REJECTED = "termination-rejected"


class CeType(StrEnum):
    TERMINATION_REQUESTED = "subscription.termination.requested.v1"
    SUBSCRIPTION_EXPIRED = "subscription.expired.v1"
    SUBSCRIPTION_RENEWED = "subscription.renewed.v1"
    REFUND_ISSUED = "refund.issued.v1"
    CREDITS_UPDATED = "credits.updated.v1"
    SUBSCRIPTION_TERMINATED = "subscription.terminated.v1"
    TERMINATION_REJECTED = "subscription.termination.rejected.v1"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    topic: Topic
    ce_type: CeType
    key_field: str
    """The field of the event's data whose value, UTF-8 encoded, is the Kafka message key."""
    is_input: bool

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.topic)


def _spec(topic: Topic, ce_type: CeType, key_field: str, *, is_input: bool) -> tuple[Topic, TopicSpec]:
    return topic, TopicSpec(topic, ce_type, key_field, is_input)


TOPICS = MappingProxyType(
    dict(
        [
            _spec(
                Topic.TERMINATION_REQUESTED, CeType.TERMINATION_REQUESTED, "subscription_id", is_input=True
            ),
            _spec(Topic.SUBSCRIPTION_EXPIRED, CeType.SUBSCRIPTION_EXPIRED, "subscription_id", is_input=True),
            _spec(Topic.SUBSCRIPTION_RENEWED, CeType.SUBSCRIPTION_RENEWED, "subscription_id", is_input=True),
            _spec(Topic.REFUND_ISSUED, CeType.REFUND_ISSUED, "subscription_id", is_input=False),
            _spec(Topic.CREDITS_UPDATED, CeType.CREDITS_UPDATED, "account_id", is_input=False),
            _spec(
                Topic.SUBSCRIPTION_TERMINATED,
                CeType.SUBSCRIPTION_TERMINATED,
                "subscription_id",
                is_input=False,
            ),
            _spec(Topic.TERMINATION_REJECTED, CeType.TERMINATION_REJECTED, "subscription_id", is_input=False),
        ]
    )
)
"""Every topic of the contract, by name."""

INPUT_TOPICS: tuple[Topic, ...] = tuple(topic for topic, spec in TOPICS.items() if spec.is_input)
OUTPUT_TOPICS: tuple[Topic, ...] = tuple(topic for topic, spec in TOPICS.items() if not spec.is_input)


def dead_letter_topic(topic: str) -> str:
    """Where a message of `topic` that cannot be processed goes (contract section 6): `<topic>-dlt`."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"


def spec_of(topic: str) -> TopicSpec:
    """The spec of a topic by its name; KeyError names the topic when it is not one of the contract's."""
    try:
        return TOPICS[Topic(topic)]
    except ValueError:
        raise KeyError(f"{topic!r} is not a topic of the contract") from None
