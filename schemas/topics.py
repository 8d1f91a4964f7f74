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
    # operator adjustments (section 8): input, then outputs
    BALANCE_ADJUSTMENT_REQUESTED = "balance-adjustment-requested"
    BALANCE_ADJUSTED = "balance-adjusted"
    ADJUSTMENT_REJECTED = "adjustment-rejected"
    # money back through the payment service (section 9)
    MONEY_REFUND_REQUESTED = "money-refund-requested"
    PAYMENT_REFUND_INSTRUCTED = "payment-refund-instructed"
    PAYMENT_REFUND_SETTLED = "payment-refund-settled"
    MONEY_REFUND_UPDATED = "money-refund-updated"
    # credit notes from the invoice app (section 10)
    CREDIT_NOTE_ISSUED = "credit-note-issued"
    REFUND_CONFLICT_DETECTED = "refund-conflict-detected"


class CeType(StrEnum):
    TERMINATION_REQUESTED = "subscription.termination.requested.v1"
    SUBSCRIPTION_EXPIRED = "subscription.expired.v1"
    SUBSCRIPTION_RENEWED = "subscription.renewed.v1"
    REFUND_ISSUED = "refund.issued.v1"
    CREDITS_UPDATED = "credits.updated.v1"
    SUBSCRIPTION_TERMINATED = "subscription.terminated.v1"
    TERMINATION_REJECTED = "subscription.termination.rejected.v1"
    BALANCE_ADJUSTMENT_REQUESTED = "account.adjustment.requested.v1"
    BALANCE_ADJUSTED = "account.balance.adjusted.v1"
    ADJUSTMENT_REJECTED = "account.adjustment.rejected.v1"
    MONEY_REFUND_REQUESTED = "account.money_refund.requested.v1"
    PAYMENT_REFUND_INSTRUCTED = "payment.refund.instructed.v1"
    PAYMENT_REFUND_SETTLED = "payment.refund.settled.v1"
    MONEY_REFUND_UPDATED = "account.money_refund.updated.v1"
    CREDIT_NOTE_ISSUED = "invoice.credit_note.issued.v1"
    REFUND_CONFLICT_DETECTED = "billing.refund.conflict.v1"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    topic: Topic
    ce_type: CeType
    key_field: str
    """The field of the event's data whose value, UTF-8 encoded, is the Kafka message key."""
    is_input: bool
    key_fallback: str | None = None
    """The field that is the key when `key_field` is null (a credit note for no subscription)."""

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.topic)


def _spec(
    topic: Topic, ce_type: CeType, key_field: str, *, is_input: bool, key_fallback: str | None = None
) -> tuple[Topic, TopicSpec]:
    return topic, TopicSpec(topic, ce_type, key_field, is_input, key_fallback)


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
            _spec(
                Topic.BALANCE_ADJUSTMENT_REQUESTED,
                CeType.BALANCE_ADJUSTMENT_REQUESTED,
                "account_id",
                is_input=True,
            ),
            _spec(Topic.BALANCE_ADJUSTED, CeType.BALANCE_ADJUSTED, "account_id", is_input=False),
            _spec(Topic.ADJUSTMENT_REJECTED, CeType.ADJUSTMENT_REJECTED, "account_id", is_input=False),
            _spec(Topic.MONEY_REFUND_REQUESTED, CeType.MONEY_REFUND_REQUESTED, "account_id", is_input=True),
            _spec(
                Topic.PAYMENT_REFUND_INSTRUCTED,
                CeType.PAYMENT_REFUND_INSTRUCTED,
                "account_id",
                is_input=False,
            ),
            _spec(Topic.PAYMENT_REFUND_SETTLED, CeType.PAYMENT_REFUND_SETTLED, "account_id", is_input=True),
            _spec(Topic.MONEY_REFUND_UPDATED, CeType.MONEY_REFUND_UPDATED, "account_id", is_input=False),
            _spec(
                Topic.CREDIT_NOTE_ISSUED,
                CeType.CREDIT_NOTE_ISSUED,
                "subscription_id",
                is_input=True,
                key_fallback="account_id",
            ),
            _spec(
                Topic.REFUND_CONFLICT_DETECTED,
                CeType.REFUND_CONFLICT_DETECTED,
                "subscription_id",
                is_input=False,
            ),
        ]
    )
)
"""Every topic of the contract that has a data model here, by name."""

NOT_YET_SERVED: frozenset[Topic] = frozenset()
"""Topics with a data model, a JSON Schema and an example, that the worker neither consumes nor
publishes yet: none now (sections 8 to 10 are served). INPUT_TOPICS and OUTPUT_TOPICS leave them
out: those are what the worker reads and writes (the topics it creates, the lag it reports, the
AsyncAPI document). A topic added before its use case goes here until the use case is wired."""

INPUT_TOPICS: tuple[Topic, ...] = tuple(
    topic for topic, spec in TOPICS.items() if spec.is_input and topic not in NOT_YET_SERVED
)
OUTPUT_TOPICS: tuple[Topic, ...] = tuple(
    topic for topic, spec in TOPICS.items() if not spec.is_input and topic not in NOT_YET_SERVED
)


def dead_letter_topic(topic: str) -> str:
    """Where a message of `topic` that cannot be processed goes (contract section 6): `<topic>-dlt`."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"


def spec_of(topic: str) -> TopicSpec:
    """The spec of a topic by its name; KeyError names the topic when it is not one of the contract's."""
    try:
        return TOPICS[Topic(topic)]
    except ValueError:
        raise KeyError(f"{topic!r} is not a topic of the contract") from None
