"""The events a termination decision publishes (through the outbox). No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from schemas import enums as wire
from schemas.outputs import (
    IssuedCreditNote,
    LinkedCreditNote,
    RefundIssued,
    SubscriptionTerminated,
    TerminationCause,
    TerminationRejected,
)
from worker.domain.credit_note_guard import InvoiceNote
from worker.domain.never_twice import Rejection, RejectionCode
from worker.domain.policy import NoRefundReason, RefundDecision, RefundMethod, Rule
from worker.engine.outbox import OutboxEvent, derived_id
from worker.terminations.commands import TerminationCommand


def refund_event(
    command: TerminationCommand,
    decision: RefundDecision,
    refund_id: str,
    note: IssuedCreditNote,
    now: datetime,
    linked: Sequence[InvoiceNote] = (),
) -> OutboxEvent:
    """`linked`: the invoice app's notes the refund is, linked automatically (contract section 10)."""
    if decision.method is None or decision.rule is None:
        raise ValueError("a refund without a method or rule cannot be issued")  # decide_refund never does
    data = RefundIssued(
        refund_id=refund_id,
        request_id=command.request_id,
        subscription_id=command.subscription_id,
        account_id=command.account_id,
        reseller_id=command.reseller_id,
        amount=str(decision.amount),
        currency=decision.amount.currency.code,
        method=wire_method(decision.method),
        rule=wire_rule(decision.rule),
        months_refunded=decision.months_refunded,
        cycle_months=decision.cycle_months,
        policy_amount=str(decision.policy_amount),
        credit_note=note,
        issued_at=now,
        auto_linked=bool(linked),
        credit_notes=tuple(
            LinkedCreditNote(
                credit_note_id=n.credit_note_id, number=n.number, amount=str(n.amount), issued_at=n.issued_at
            )
            for n in linked
        ),
    )
    return OutboxEvent.of(derived_id(command.reseller_id, command.request_id, "refund-issued"), data, now)


def terminated_event(command: TerminationCommand, decision: RefundDecision, now: datetime) -> OutboxEvent:
    data = SubscriptionTerminated(
        request_id=command.request_id,
        subscription_id=command.subscription_id,
        account_id=command.account_id,
        reseller_id=command.reseller_id,
        terminated_at=now,
        cause=TerminationCause.CUSTOMER_REQUEST,
        refund_amount=str(decision.amount),
        currency=decision.amount.currency.code,
        rule=wire_rule_or_none(decision.rule),
        no_refund_reason=wire_no_refund_reason(decision.no_refund_reason),
    )
    return OutboxEvent.of(
        derived_id(command.reseller_id, command.request_id, "subscription-terminated"), data, now
    )


def rejected_event(command: TerminationCommand, rejection: Rejection, now: datetime) -> OutboxEvent:
    data = TerminationRejected(
        request_id=command.request_id,
        subscription_id=command.subscription_id,
        account_id=command.account_id,
        reason_code=wire_rejection_reason(rejection.code),
        detail=rejection.detail,
    )
    return OutboxEvent.of(
        derived_id(command.reseller_id, command.request_id, "termination-rejected"), data, now
    )


# The rules' enums and the contract's have the same values (tests/unit/test_wire_matches_domain.py);
# an event carries the contract's.


def wire_method(method: RefundMethod) -> wire.RefundMethod:
    return wire.RefundMethod(method.value)


def wire_rule(rule: Rule) -> wire.Rule:
    return wire.Rule(rule.value)


def wire_rule_or_none(rule: Rule | None) -> wire.Rule | None:
    return None if rule is None else wire_rule(rule)


def wire_no_refund_reason(reason: NoRefundReason | None) -> wire.NoRefundReason | None:
    return None if reason is None else wire.NoRefundReason(reason.value)


def wire_rejection_reason(code: RejectionCode) -> wire.RejectionReason:
    return wire.RejectionReason(code.value)
