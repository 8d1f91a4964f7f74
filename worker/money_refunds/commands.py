"""What the money refund use case is given (a validated `money-refund-requested`, a validated
`payment-refund-settled`) and what it answers.

The events' models check their shape; here a request's amounts are read with the payment's currency,
and its instruction gets the id derived from the request (so a redelivery, or a re-publish after a
crash, names the same instruction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from schemas.money_refunds import MoneyRefundRequested, PaymentRefundSettled
from worker.adjustments.commands import money
from worker.domain.adjustment_requests import Actor
from worker.domain.money import Currency, Money
from worker.domain.money_refund_facts import (
    AccountType,
    InstructionFacts,
    InstructionState,
    MoneyRefundMethod,
)
from worker.domain.money_refunds import MoneyRefundDecision, MoneyRefundRequest, Payment
from worker.domain.payment_settlements import Settlement, SettlementOutcome, SettlementStatus
from worker.engine.outbox import derived_id

INSTRUCTION_KIND = "instruction"
"""derived_id's kind of the instruction a request becomes."""


def instruction_id(reseller_id: str, request_id: str) -> str:
    """The instruction's id: a function of the reseller and the request's ce_id."""
    return derived_id(reseller_id, request_id, INSTRUCTION_KIND)


def money_refund_request(request_id: str, data: MoneyRefundRequested) -> MoneyRefundRequest:
    """The request whose id is its event's ce_id, its amounts in minor units of the payment's currency."""
    currency = Currency.of(data.payment.currency)
    return MoneyRefundRequest(
        request_id=request_id,
        instruction_id=instruction_id(data.reseller_id, request_id),
        reseller_id=data.reseller_id,
        account_id=data.account_id,
        account_type=AccountType(data.account_type),
        method=MoneyRefundMethod(data.method),
        payment=Payment(data.payment.payment_id, money(data.payment.amount, currency, "payment.amount")),
        amount=money(data.amount, currency, "amount").minor,
        from_balance=data.from_balance,
        actor=Actor(data.actor.id, data.actor.reseller_id, frozenset(data.actor.permissions)),
        reason=data.reason,
        requested_at=data.requested_at,
    )


def payment_settlement(data: PaymentRefundSettled) -> Settlement:
    return Settlement(
        instruction_id=data.instruction_id,
        reseller_id=data.reseller_id,
        account_id=data.account_id,
        status=SettlementStatus(data.status),
        detail=data.detail,
        settled_at=data.settled_at,
    )


@dataclass(frozen=True, slots=True)
class MoneyRefundCommand:
    """A validated money refund request, with where it came from."""

    request: MoneyRefundRequest
    payload_sha256: bytes
    partition: int | None = None
    offset: int | None = None


class RequestOutcome(StrEnum):
    INSTRUCTED = "instructed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    """The ce_id was seen before with another payload: not ours to decide, a dead letter."""


@dataclass(frozen=True, slots=True)
class MoneyRefundResult:
    command: MoneyRefundCommand
    outcome: RequestOutcome
    decision: MoneyRefundDecision | None = None
    """Instructed or MoneyRefundRefused; None for a redelivery."""


@dataclass(frozen=True, slots=True)
class SettlementCommand:
    """A validated settlement from the payment service, with where it came from."""

    ce_id: str
    payload_sha256: bytes
    settlement: Settlement
    partition: int | None = None
    offset: int | None = None


class SettlementAnswer(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Settled as failed: the payment's amount is free again, debited credits come back."""
    ALREADY_SETTLED = "already_settled"
    """The instruction was settled before with this status (any ce_id): nothing changes."""
    DUPLICATE = "duplicate"
    """Its ce_id was handled before with the same payload."""
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    """Its ce_id was handled before with another payload: a dead letter."""
    UNKNOWN_INSTRUCTION = "unknown_instruction"
    """No such instruction of this account: a dead letter."""
    CONFLICTING_STATUS = "conflicting_status"
    """The instruction was settled before with the other status: a dead letter."""


DEAD_LETTERED = frozenset(
    {
        SettlementAnswer.IDEMPOTENCY_CONFLICT,
        SettlementAnswer.UNKNOWN_INSTRUCTION,
        SettlementAnswer.CONFLICTING_STATUS,
    }
)


@dataclass(frozen=True, slots=True)
class SettlementResult:
    command: SettlementCommand
    answer: SettlementAnswer
    outcome: SettlementOutcome | None = None
    """Settled or AlreadySettled; None for a redelivery or a dead letter."""
    detail: str | None = None
    """Why it is a dead letter."""


@dataclass(frozen=True, slots=True)
class StoredInstruction:
    """An instruction as the table money_refund_instructions holds it: what its events say."""

    reseller_id: str
    instruction_id: str
    request_id: str
    account_id: str
    payment_id: str
    method: MoneyRefundMethod
    amount: Money
    debited: int
    """Minor units taken from the credits: the amount with `from_balance`, else zero."""
    state: InstructionState
    reason: str
    requested_by: str
    requested_at: datetime
    instructed_at: datetime
    due_at: datetime
    """When it is overdue if still open: instructed_at + MONEY_REFUND_TIMEOUT_HOURS."""
    overdue_reported: bool = False

    @property
    def currency(self) -> Currency:
        return self.amount.currency

    @property
    def from_balance(self) -> bool:
        return self.debited > 0

    def facts(self) -> InstructionFacts:
        return InstructionFacts(
            request_id=self.request_id,
            payment_id=self.payment_id,
            method=self.method,
            amount=self.amount,
            debited=self.debited,
            instructed_at=self.instructed_at,
            state=self.state,
            overdue_reported=self.overdue_reported,
        )
