"""The events a money refund publishes (through the outbox), their ce_ids derived: a request's from the
request's ce_id, a settlement's and an overdue report's from the instruction and what happened to it
(an instruction is settled once and reported overdue once, so each gives one event whichever ce_id
brought it). The kinds name the money refund, so a money refund request and an adjustment with the
same ce_id never share an output id. No I/O.
"""

from __future__ import annotations

from datetime import datetime

from schemas.adjustments import AdjustmentRejected, AdjustmentRejectionReason, RejectedKind
from schemas.money_refunds import (
    MoneyRefundMethod,
    MoneyRefundStatus,
    MoneyRefundUpdated,
    PaymentRefundInstructed,
)
from schemas.outputs import CreditsCause, CreditsUpdated
from worker.adjustments.commands import signed_text
from worker.domain.money_refunds import MoneyRefundRefused, MoneyRefundRequest
from worker.engine.outbox import OutboxEvent, derived_id
from worker.money_refunds.commands import StoredInstruction

INSTRUCTED_KIND = "payment-refund-instructed"
REJECTED_KIND = "money-refund-rejected"
DEBITED_KIND = "money-refund-credits-updated"
"""The credits a request takes out of the balance."""
CREDITED_BACK_KIND = "money-refund-failed-credits-updated"
"""The credits a failed instruction gives back."""


def updated_kind(status: MoneyRefundStatus) -> str:
    return f"money-refund-updated/{status.value}"


def instructed_id(instruction: StoredInstruction) -> str:
    return derived_id(instruction.reseller_id, instruction.request_id, INSTRUCTED_KIND)


def updated_id(instruction: StoredInstruction, status: MoneyRefundStatus) -> str:
    """money-refund-updated's ce_id: the instructed one from the request, the later ones from the
    instruction (each happens to it once)."""
    if status is MoneyRefundStatus.INSTRUCTED:
        return derived_id(instruction.reseller_id, instruction.request_id, updated_kind(status))
    return derived_id(instruction.reseller_id, instruction.instruction_id, updated_kind(status))


def debited_id(instruction: StoredInstruction) -> str:
    return derived_id(instruction.reseller_id, instruction.request_id, DEBITED_KIND)


def credited_back_id(instruction: StoredInstruction) -> str:
    return derived_id(instruction.reseller_id, instruction.instruction_id, CREDITED_BACK_KIND)


def overdue_detail(instruction: StoredInstruction) -> str:
    """What money-refund-updated says of an instruction the payment service has not answered in time."""
    waited = instruction.due_at - instruction.instructed_at
    hours = f"{waited.total_seconds() / 3600:g}"
    return (
        f"no settlement from the payment service {hours} hours after it was instructed at "
        f"{instruction.instructed_at.isoformat()}; still open: a settlement may still come"
    )


def instructed_event(instruction: StoredInstruction, now: datetime) -> OutboxEvent:
    """`payment-refund-instructed`: the payment service is told to return the money."""
    data = PaymentRefundInstructed(
        instruction_id=instruction.instruction_id,
        request_id=instruction.request_id,
        payment_id=instruction.payment_id,
        method=MoneyRefundMethod(instruction.method.value),
        amount=str(instruction.amount),
        currency=instruction.currency.code,
        account_id=instruction.account_id,
        reseller_id=instruction.reseller_id,
    )
    return OutboxEvent.of(instructed_id(instruction), data, now)


def updated_event(
    instruction: StoredInstruction, status: MoneyRefundStatus, detail: str | None, now: datetime
) -> OutboxEvent:
    """`money-refund-updated` with `status`."""
    data = MoneyRefundUpdated(
        instruction_id=instruction.instruction_id,
        request_id=instruction.request_id,
        payment_id=instruction.payment_id,
        method=MoneyRefundMethod(instruction.method.value),
        account_id=instruction.account_id,
        reseller_id=instruction.reseller_id,
        amount=str(instruction.amount),
        currency=instruction.currency.code,
        from_balance=instruction.from_balance,
        status=status,
        detail=detail or None,
        updated_at=now,
    )
    return OutboxEvent.of(updated_id(instruction, status), data, now)


def credits_event(
    instruction: StoredInstruction, delta: int, balance: int, version: int, now: datetime
) -> OutboxEvent:
    """`credits-updated` of the debit (cause money_refund) or of the credits given back
    (money_refund_failed), naming the instruction."""
    debit = delta < 0
    data = CreditsUpdated(
        account_id=instruction.account_id,
        reseller_id=instruction.reseller_id,
        currency=instruction.currency.code,
        delta=signed_text(delta, instruction.currency),
        balance=signed_text(balance, instruction.currency),
        balance_version=version,
        cause=CreditsCause.MONEY_REFUND if debit else CreditsCause.MONEY_REFUND_FAILED,
        refund_id=None,
        updated_at=now,
        instruction_id=instruction.instruction_id,
    )
    event_id = debited_id(instruction) if debit else credited_back_id(instruction)
    return OutboxEvent.of(event_id, data, now)


def rejected_event(request: MoneyRefundRequest, refused: MoneyRefundRefused, now: datetime) -> OutboxEvent:
    """`adjustment-rejected` with kind money_refund: nothing changed."""
    data = AdjustmentRejected(
        request_id=request.request_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        kind=RejectedKind.MONEY_REFUND,
        reason_code=AdjustmentRejectionReason(refused.code.value),
        detail=refused.detail,
    )
    return OutboxEvent.of(derived_id(request.reseller_id, request.request_id, REJECTED_KIND), data, now)
