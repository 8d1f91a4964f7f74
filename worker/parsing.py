"""From a Kafka record to a validated command, or a named poison error (schemas.errors). No I/O."""

from __future__ import annotations

import hashlib

from schemas.envelope import read_input
from schemas.inputs import InputData, SubscriptionExpired, SubscriptionRenewed, TerminationRequested
from schemas.topics import Topic
from worker.expiry import ExpiryCommand, RenewalCommand
from worker.records import InboundRecord
from worker.terminations import TerminationCommand


def payload_digest(data: InputData) -> bytes:
    """A digest of what the event says, not of its bytes: a producer re-sending the same request
    with other whitespace or key order is a redelivery, not an idempotency conflict."""
    return hashlib.sha256(data.model_dump_json().encode()).digest()


def termination_command(record: InboundRecord) -> TerminationCommand:
    event = read_input(Topic.TERMINATION_REQUESTED, record.headers, record.value, record.key)
    request = event.data
    if not isinstance(request, TerminationRequested):  # read_input picks the model by topic
        raise TypeError(f"expected termination-requested data, got {type(request).__name__}")
    return TerminationCommand(
        request_id=event.attributes.id,
        payload_sha256=payload_digest(request),
        subscription_id=request.subscription_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        requested_by=request.requested_by,
        reason=request.reason,
        terms=request.terms(),
        partition=record.partition,
        offset=record.offset,
    )


def expiry_command(record: InboundRecord) -> ExpiryCommand:
    event = read_input(Topic.SUBSCRIPTION_EXPIRED, record.headers, record.value, record.key)
    expired = event.data
    if not isinstance(expired, SubscriptionExpired):
        raise TypeError(f"expected subscription-expired data, got {type(expired).__name__}")
    return ExpiryCommand(
        ce_id=event.attributes.id,
        payload_sha256=payload_digest(expired),
        subscription_id=expired.subscription_id,
        account_id=expired.account_id,
        reseller_id=expired.reseller_id,
        expired_at=expired.expired_at,
        partition=record.partition,
        offset=record.offset,
    )


def renewal_command(record: InboundRecord) -> RenewalCommand:
    event = read_input(Topic.SUBSCRIPTION_RENEWED, record.headers, record.value, record.key)
    renewed = event.data
    if not isinstance(renewed, SubscriptionRenewed):
        raise TypeError(f"expected subscription-renewed data, got {type(renewed).__name__}")
    return RenewalCommand(
        ce_id=event.attributes.id,
        payload_sha256=payload_digest(renewed),
        subscription_id=renewed.subscription_id,
        account_id=renewed.account_id,
        reseller_id=renewed.reseller_id,
        renewed_at=renewed.renewed_at,
        partition=record.partition,
        offset=record.offset,
    )
