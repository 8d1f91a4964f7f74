"""From a Kafka record to a validated command, or a named poison error (schemas.errors). No I/O."""

from __future__ import annotations

import hashlib
from typing import TypeVar

from schemas.adjustments import BalanceAdjustmentRequested
from schemas.credit_notes import CreditNoteIssued
from schemas.envelope import read_input
from schemas.inputs import InputData, SubscriptionExpired, SubscriptionRenewed, TerminationRequested
from schemas.money_refunds import MoneyRefundRequested, PaymentRefundSettled
from schemas.topics import Topic
from worker.adjustments.commands import AdjustmentCommand, adjustment_request
from worker.credit_notes.commands import CreditNoteCommand
from worker.engine.records import InboundRecord
from worker.engine.wire_to_domain import invoice_note, termination_terms
from worker.expiry.commands import ExpiryCommand, RenewalCommand
from worker.money_refunds.commands import (
    MoneyRefundCommand,
    SettlementCommand,
    money_refund_request,
    payment_settlement,
)
from worker.terminations.commands import TerminationCommand

DataT = TypeVar("DataT", bound=InputData)


def payload_digest(data: InputData) -> bytes:
    """A digest of what the event says, not of its bytes: a producer re-sending the same request
    with other whitespace or key order is a redelivery, not an idempotency conflict. The bytes are
    `model_dump_json().encode()`'s, from the serializer directly (no decode and encode again)."""
    return hashlib.sha256(data.__pydantic_serializer__.to_json(data)).digest()


def _read(record: InboundRecord, topic: Topic, model: type[DataT]) -> tuple[str, DataT]:
    """The event's ce_id and data; read_input picks the data model by topic, so a mismatch is a bug."""
    event = read_input(topic, record.headers, record.value, record.key)
    if not isinstance(event.data, model):
        raise TypeError(f"expected {topic} data, got {type(event.data).__name__}")
    return event.attributes.id, event.data


def termination_command(record: InboundRecord) -> TerminationCommand:
    ce_id, request = _read(record, Topic.TERMINATION_REQUESTED, TerminationRequested)
    return TerminationCommand(
        request_id=ce_id,
        payload_sha256=payload_digest(request),
        subscription_id=request.subscription_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        requested_by=request.requested_by,
        reason=request.reason,
        terms=termination_terms(request),
        partition=record.partition,
        offset=record.offset,
    )


def expiry_command(record: InboundRecord) -> ExpiryCommand:
    ce_id, expired = _read(record, Topic.SUBSCRIPTION_EXPIRED, SubscriptionExpired)
    return ExpiryCommand(
        ce_id=ce_id,
        payload_sha256=payload_digest(expired),
        subscription_id=expired.subscription_id,
        account_id=expired.account_id,
        reseller_id=expired.reseller_id,
        expired_at=expired.expired_at,
        partition=record.partition,
        offset=record.offset,
    )


def renewal_command(record: InboundRecord) -> RenewalCommand:
    ce_id, renewed = _read(record, Topic.SUBSCRIPTION_RENEWED, SubscriptionRenewed)
    return RenewalCommand(
        ce_id=ce_id,
        payload_sha256=payload_digest(renewed),
        subscription_id=renewed.subscription_id,
        account_id=renewed.account_id,
        reseller_id=renewed.reseller_id,
        renewed_at=renewed.renewed_at,
        partition=record.partition,
        offset=record.offset,
    )


def adjustment_command(record: InboundRecord) -> AdjustmentCommand:
    """The request whose adjustment_id is the event's ce_id; money with more digits than its currency
    has is a DomainError, so poison."""
    ce_id, requested = _read(record, Topic.BALANCE_ADJUSTMENT_REQUESTED, BalanceAdjustmentRequested)
    return AdjustmentCommand(
        request=adjustment_request(ce_id, requested),
        payload_sha256=payload_digest(requested),
        partition=record.partition,
        offset=record.offset,
    )


def credit_note_command(record: InboundRecord) -> CreditNoteCommand:
    ce_id, issued = _read(record, Topic.CREDIT_NOTE_ISSUED, CreditNoteIssued)
    return CreditNoteCommand(
        ce_id=ce_id,
        payload_sha256=payload_digest(issued),
        note=invoice_note(issued),
        partition=record.partition,
        offset=record.offset,
    )


def money_refund_command(record: InboundRecord) -> MoneyRefundCommand:
    """The request whose instruction is derived from the event's ce_id; money with more digits than
    the payment's currency has is a DomainError, so poison."""
    ce_id, requested = _read(record, Topic.MONEY_REFUND_REQUESTED, MoneyRefundRequested)
    return MoneyRefundCommand(
        request=money_refund_request(ce_id, requested),
        payload_sha256=payload_digest(requested),
        partition=record.partition,
        offset=record.offset,
    )


def settlement_command(record: InboundRecord) -> SettlementCommand:
    ce_id, settled = _read(record, Topic.PAYMENT_REFUND_SETTLED, PaymentRefundSettled)
    return SettlementCommand(
        ce_id=ce_id,
        payload_sha256=payload_digest(settled),
        settlement=payment_settlement(settled),
        partition=record.partition,
        offset=record.offset,
    )
