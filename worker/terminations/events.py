"""The events a termination decision publishes (through the outbox). No I/O."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from schemas import enums as wire
from schemas.enums import CreditsCause, TerminationCause
from schemas.outgoing import format_time
from schemas.topics import TOPICS, Topic
from worker.domain.credit_note_guard import InvoiceNote
from worker.domain.money import Money
from worker.domain.never_twice import (
    OWN_CREDIT_NOTES_INCLUDE_TAX,
    Rejection,
    RejectionCode,
    credit_note_display_number,
)
from worker.domain.policy import NoRefundReason, RefundDecision, RefundMethod, Rule
from worker.engine.outbox_events import OutboxEvent, derived_id
from worker.terminations.commands import TerminationCommand

# The data are built as plain dicts in JSON mode (issue 13: the pydantic models and their dump were a
# tenth of the worker's time); tests/unit/test_fast_events.py holds each builder to its model: the
# same data validates, and dumps to the same JSON, for a range of decisions.


def issued_note(
    command: TerminationCommand, decision: RefundDecision, number: int | None, now: datetime
) -> dict[str, Any]:
    """The refund's `credit_note`: the operator's when one was chosen (the invoice app numbers and
    describes it, so number, display_number, reason and tax stay null), else the worker's own."""
    if decision.credit_note is not None:
        chosen = decision.credit_note
        return {
            "credit_note_id": chosen.credit_note_id,
            "number": None,
            "amount": str(chosen.amount),
            "issued_at": None,
            "display_number": None,
            "reason": None,
            "amounts_include_tax": None,
        }
    if number is None:
        raise ValueError("the worker's own credit note needs its number")
    return {
        "credit_note_id": derived_id(command.reseller_id, command.request_id, "credit-note"),
        "number": number,
        "amount": str(decision.amount),
        "issued_at": _time_text(now),
        "display_number": credit_note_display_number(command.reseller_id, number),
        "reason": command.reason,
        "amounts_include_tax": OWN_CREDIT_NOTES_INCLUDE_TAX,
    }


def refund_event(
    command: TerminationCommand,
    decision: RefundDecision,
    refund_id: str,
    note: dict[str, Any],
    now: datetime,
    linked: Sequence[InvoiceNote] = (),
) -> OutboxEvent:
    """`note`: issued_note's. `linked`: the invoice app's notes the refund is, linked automatically
    (contract section 10)."""
    if decision.method is None or decision.rule is None:
        raise ValueError("a refund without a method or rule cannot be issued")  # decide_refund never does
    data = {
        "refund_id": refund_id,
        "request_id": command.request_id,
        "subscription_id": command.subscription_id,
        "account_id": command.account_id,
        "reseller_id": command.reseller_id,
        "amount": str(decision.amount),
        "currency": decision.amount.currency.code,
        "method": decision.method.value,
        "rule": decision.rule.value,
        "months_refunded": decision.months_refunded,
        "cycle_months": decision.cycle_months,
        "policy_amount": str(decision.policy_amount),
        "credit_note": note,
        "issued_at": _time_text(now),
        "auto_linked": bool(linked),
        "credit_notes": [
            {
                "credit_note_id": n.credit_note_id,
                "number": n.number,
                "amount": str(n.amount),
                "issued_at": _time_text(n.issued_at),
            }
            for n in linked
        ],
    }
    return OutboxEvent.built(
        derived_id(command.reseller_id, command.request_id, "refund-issued"), _REFUND, data, now
    )


def terminated_event(command: TerminationCommand, decision: RefundDecision, now: datetime) -> OutboxEvent:
    reason = decision.no_refund_reason
    data = {
        "request_id": command.request_id,
        "subscription_id": command.subscription_id,
        "account_id": command.account_id,
        "reseller_id": command.reseller_id,
        "terminated_at": _time_text(now),
        "cause": TerminationCause.CUSTOMER_REQUEST.value,
        "refund_amount": str(decision.amount),
        "currency": decision.amount.currency.code,
        "rule": None if decision.rule is None else decision.rule.value,
        "no_refund_reason": None if reason is None else reason.value,
    }
    event_id = derived_id(command.reseller_id, command.request_id, "subscription-terminated")
    return OutboxEvent.built(event_id, _TERMINATED, data, now)


def rejected_event(command: TerminationCommand, rejection: Rejection, now: datetime) -> OutboxEvent:
    data = {
        "request_id": command.request_id,
        "subscription_id": command.subscription_id,
        "account_id": command.account_id,
        "reason_code": rejection.code.value,
        "detail": rejection.detail,
    }
    event_id = derived_id(command.reseller_id, command.request_id, "termination-rejected")
    return OutboxEvent.built(event_id, _REJECTED, data, now)


def credits_event(
    command: TerminationCommand, delta: Money, refund_id: str, balance: int, version: int, now: datetime
) -> OutboxEvent:
    """credits-updated for a refund as account credit: `balance` and `version` after it."""
    data = {
        "account_id": command.account_id,
        "reseller_id": command.reseller_id,
        "currency": delta.currency.code,
        "delta": str(delta),
        "balance": str(Money(balance, delta.currency)),
        "balance_version": version,
        "cause": CreditsCause.REFUND.value,
        "refund_id": refund_id,
        "updated_at": _time_text(now),
        "adjustment_id": None,
        "instruction_id": None,
    }
    return OutboxEvent.built(credits_event_id(command), _CREDITS, data, now)


def credits_event_id(command: TerminationCommand) -> str:
    return derived_id(command.reseller_id, command.request_id, "credits-updated")


# A batch's events share one decision time: its text is formatted once.
_time_text = functools.lru_cache(maxsize=64)(format_time)
_REFUND = TOPICS[Topic.REFUND_ISSUED]
_TERMINATED = TOPICS[Topic.SUBSCRIPTION_TERMINATED]
_REJECTED = TOPICS[Topic.TERMINATION_REJECTED]
_CREDITS = TOPICS[Topic.CREDITS_UPDATED]


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
