"""The rows a batch of termination decisions writes, in input order, with their events. No I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.outputs import CreditsCause, TerminationCause
from worker.db.bulk import ResellerKey
from worker.domain.balance import BalanceCursor
from worker.domain.credit_note_guard import InvoiceNote
from worker.domain.money import Money
from worker.domain.never_twice import number_in_order
from worker.domain.policy import RefundDecision
from worker.engine.outbox_events import OutboxEvent, derived_id
from worker.terminations.commands import CommandResult, TerminationCommand
from worker.terminations.events import credits_event, issued_note, refund_event, terminated_event


@dataclass
class BatchRows:
    """The rows a batch will insert, gathered before any is written."""

    now: datetime
    results: list[CommandResult] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    terminations: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    credit_notes: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    used_invoice_notes: list[dict[str, str]] = field(default_factory=list)  # store.mark_invoice_notes_used
    events: list[OutboxEvent] = field(default_factory=list)
    accepted: list[tuple[TerminationCommand, RefundDecision]] = field(default_factory=list)


def chosen_notes(commands: Iterable[TerminationCommand]) -> set[ResellerKey]:
    """The operator's credit notes the requests cite, each under its reseller."""
    return {
        (c.reseller_id, c.terms.credit_note.credit_note_id)
        for c in commands
        if c.terms.credit_note is not None
    }


def own_notes_per_reseller(accepted: Iterable[tuple[TerminationCommand, RefundDecision]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for command in _issuing_own_notes(accepted):
        counts[command.reseller_id] += 1
    return counts


def _issuing_own_notes(
    accepted: Iterable[tuple[TerminationCommand, RefundDecision]],
) -> list[TerminationCommand]:
    """The requests that get a credit note of the worker's own, in the order they were read."""
    return [command for command, decision in accepted if decision.issues_own_credit_note]


RequestKey = ResellerKey  # (reseller_id, request_id): a ce_id is unique within its reseller only


def _request_key(command: TerminationCommand) -> RequestKey:
    return (command.reseller_id, command.request_id)


def own_note_numbers(
    accepted: Sequence[tuple[TerminationCommand, RefundDecision]], first_numbers: Mapping[str, int]
) -> dict[RequestKey, int]:
    """Each request's credit-note number: per reseller, in the order the requests were read."""
    issuing = _issuing_own_notes(accepted)
    numbers = number_in_order([command.reseller_id for command in issuing], first_numbers)
    return {_request_key(command): number for command, number in zip(issuing, numbers, strict=True)}


AccountKey = tuple[str, str, str]  # (reseller_id, account_id, currency)


def account_key(command: TerminationCommand, currency: str) -> AccountKey:
    return (command.reseller_id, command.account_id, currency)


def credits_per_account(
    accepted: Iterable[tuple[TerminationCommand, RefundDecision]],
) -> dict[AccountKey, list[int]]:
    """The deltas, in order, that each account's available credits receive."""
    changes: dict[AccountKey, list[int]] = {}
    for command, decision in accepted:
        if decision.credits_account:
            changes.setdefault(account_key(command, decision.amount.currency.code), []).append(
                decision.amount.minor
            )
    return changes


def refund_id_of(command: TerminationCommand) -> str:
    return derived_id(command.reseller_id, command.request_id, "refund")


def record_termination(
    batch: BatchRows,
    command: TerminationCommand,
    decision: RefundDecision,
    numbers: Mapping[RequestKey, int],
    balances: Mapping[AccountKey, BalanceCursor],
    linked: Sequence[InvoiceNote] = (),
) -> None:
    now = batch.now
    currency = decision.amount.currency.code
    batch.terminations.append(
        {
            "subscription_id": command.subscription_id,
            "account_id": command.account_id,
            "reseller_id": command.reseller_id,
            "cause": TerminationCause.CUSTOMER_REQUEST,
            "request_id": command.request_id,
            "terminated_at": now,
            "currency": currency,
            "refund_minor": decision.amount.minor,
            "rule": decision.rule,
            "no_refund_reason": decision.no_refund_reason,
            "requested_by": command.requested_by,
            "reason": command.reason,
        }
    )
    if decision.refundable:
        _record_refund(batch, command, decision, numbers, balances, linked)
    batch.events.append(terminated_event(command, decision, now))


def _record_refund(
    batch: BatchRows,
    command: TerminationCommand,
    decision: RefundDecision,
    numbers: Mapping[RequestKey, int],
    balances: Mapping[AccountKey, BalanceCursor],
    linked: Sequence[InvoiceNote],
) -> None:
    now = batch.now
    refund_id = refund_id_of(command)
    note = issued_note(command, decision, numbers.get(_request_key(command)), now)
    currency = decision.amount.currency.code
    backing = [(n.credit_note_id, n.amount.minor, n.issued_at) for n in linked] or [
        (note["credit_note_id"], decision.amount.minor, now)
    ]
    for credit_note_id, amount_minor, issued_at in backing:  # each note backs this refund only
        batch.credit_notes.append(
            {
                "credit_note_id": credit_note_id,
                "reseller_id": command.reseller_id,
                "number": note["number"],
                "issued_by_worker": note["number"] is not None,
                "refund_id": refund_id,
                "currency": currency,
                "amount_minor": amount_minor,
                "issued_at": issued_at,
                "display_number": note["display_number"],
                "reason": note["reason"],
                "amounts_include_tax": note["amounts_include_tax"],
            }
        )
        if note["number"] is None:  # an operator's or the invoice app's note: recorded as used if known
            batch.used_invoice_notes.append(
                {"reseller_id": command.reseller_id, "credit_note_id": credit_note_id, "refund_id": refund_id}
            )
    batch.refunds.append(
        {
            "refund_id": refund_id,
            "request_id": command.request_id,
            "subscription_id": command.subscription_id,
            "account_id": command.account_id,
            "reseller_id": command.reseller_id,
            "currency": currency,
            "amount_minor": decision.amount.minor,
            "policy_amount_minor": decision.policy_amount.minor,
            "method": decision.method,
            "rule": decision.rule,
            "months_refunded": decision.months_refunded,
            "cycle_months": decision.cycle_months,
            "credit_note_id": note["credit_note_id"],
            "issued_at": now,
        }
    )
    batch.events.append(refund_event(command, decision, refund_id, note, now, linked))
    if decision.credits_account:
        balance, version = balances[account_key(command, currency)].apply(decision.amount.minor)
        _record_credit(batch, command, decision.amount, refund_id, balance, version)


def _record_credit(
    batch: BatchRows, command: TerminationCommand, delta: Money, refund_id: str, balance: int, version: int
) -> None:
    event = credits_event(command, delta, refund_id, balance, version, batch.now)
    batch.ledger.append(
        {
            "reseller_id": command.reseller_id,
            "account_id": command.account_id,
            "currency": delta.currency.code,
            "balance_version": version,
            "delta_minor": delta.minor,
            "balance_minor": balance,
            "cause": CreditsCause.REFUND,
            "refund_id": refund_id,
            "event_id": event.event_id,
            "changed_at": batch.now,
        }
    )
    batch.events.append(event)
