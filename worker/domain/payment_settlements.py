"""How an instruction to the payment service ends (contract section 9): settled once, or overdue.

    instructed --succeeded--> succeeded
    instructed --failed-----> failed      the payment's amount is free again; debited credits come back

A settlement with the status the instruction already has changes nothing, whatever its ce_id. One with
the other status, or for an instruction the account does not have, is a named error: the message can
never succeed, so the worker dead-letters it. An open instruction whose settlement has not come
MONEY_REFUND_TIMEOUT_HOURS after it was instructed is reported overdue, once, and stays open: a
settlement may still come.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from worker.domain.account_facts import figure
from worker.domain.errors import ConflictingSettlement, UnknownInstruction, WrongAccount
from worker.domain.money_refund_facts import (
    InstructionFacts,
    InstructionState,
    MoneyRefundFacts,
    SettlementTimeout,
)


class SettlementStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Settlement:
    """The payment service's answer to one instruction."""

    instruction_id: str
    reseller_id: str
    account_id: str
    status: SettlementStatus
    detail: str | None
    settled_at: datetime


@dataclass(frozen=True, slots=True)
class Settled:
    """The instruction is settled now: `money-refund-updated` with the status, and for a failure the
    credits it debited back (`credited_back` above zero: credits-updated, cause money_refund_failed)."""

    instruction_id: str
    status: SettlementStatus
    freed: int
    """Minor units of the payment that may be returned again (the amount of a failed instruction)."""
    credited_back: int
    balance: int
    """The credits in the instruction's currency after what came back."""


@dataclass(frozen=True, slots=True)
class AlreadySettled:
    """The same status again: nothing changes and nothing is published."""

    instruction_id: str
    status: SettlementStatus


SettlementOutcome = Settled | AlreadySettled


@dataclass(frozen=True, slots=True)
class Overdue:
    """An open instruction past its timeout: `money-refund-updated` with status overdue, once."""

    instruction_id: str
    due_at: datetime


def settle(settlement: Settlement, facts: MoneyRefundFacts) -> tuple[SettlementOutcome, MoneyRefundFacts]:
    """What the settlement does to the account, and its facts after it; raises UnknownInstruction or
    ConflictingSettlement for a settlement that can never be applied."""
    if (settlement.reseller_id, settlement.account_id) != (facts.reseller_id, facts.account_id):
        raise WrongAccount(
            f"settlement of {settlement.instruction_id} is for account {settlement.account_id} of reseller "
            f"{settlement.reseller_id}, the facts for account {facts.account_id} of {facts.reseller_id}"
        )
    instruction = facts.instructions.get(settlement.instruction_id)
    if instruction is None:
        raise UnknownInstruction(
            f"account {facts.account_id} has no money refund instruction {settlement.instruction_id}"
        )
    status = settlement.status
    if not instruction.is_open:
        if instruction.state.value == status.value:
            return AlreadySettled(settlement.instruction_id, status), facts
        raise ConflictingSettlement(
            f"instruction {settlement.instruction_id} already {instruction.state}, now said to have {status}"
        )
    state = InstructionState(status.value)
    instructions = {**facts.instructions, settlement.instruction_id: replace(instruction, state=state)}
    currency = instruction.currency
    if status is SettlementStatus.SUCCEEDED:
        outcome = Settled(settlement.instruction_id, status, 0, 0, facts.balance(currency))
        return outcome, replace(facts, instructions=instructions)
    payment = facts.payments[instruction.payment_id]
    payments = {
        **facts.payments,
        instruction.payment_id: replace(payment, taken=payment.taken - instruction.amount.minor),
    }
    balance = facts.balance(currency) + instruction.debited
    freed = instruction.amount.minor
    outcome = Settled(settlement.instruction_id, status, freed, instruction.debited, balance)
    balances = {**facts.balances, currency: balance}
    return outcome, replace(facts, instructions=instructions, payments=payments, balances=balances)


def settled_detail(outcome: Settled, instruction: InstructionFacts) -> str:
    """What money-refund-updated says when the payment service gave no detail."""
    amount, currency = instruction.amount.minor, instruction.currency
    if outcome.status is SettlementStatus.SUCCEEDED:
        return f"{figure(amount, currency)} returned through payment {instruction.payment_id}"
    back = f"; {figure(outcome.credited_back, currency)} back to the credits" if outcome.credited_back else ""
    return f"{figure(amount, currency)} not returned through payment {instruction.payment_id}{back}"


def due_at(instruction: InstructionFacts, timeout: SettlementTimeout) -> datetime:
    """When the instruction is overdue if it is still open: instructed_at plus the timeout."""
    return instruction.instructed_at + timeout.delta


def overdue(facts: MoneyRefundFacts, now: datetime, timeout: SettlementTimeout) -> list[Overdue]:
    """The account's open instructions past their timeout at `now` and not reported yet, oldest first."""
    found = [
        Overdue(instruction_id, due_at(instruction, timeout))
        for instruction_id, instruction in facts.instructions.items()
        if instruction.is_open and not instruction.overdue_reported and now >= due_at(instruction, timeout)
    ]
    return sorted(found, key=lambda report: (report.due_at, report.instruction_id))


def record_overdue(facts: MoneyRefundFacts, reported: Iterable[Overdue]) -> MoneyRefundFacts:
    """The facts once these reports are published: each instruction is reported once, and stays open."""
    instructions = dict(facts.instructions)
    for report in reported:
        instructions[report.instruction_id] = replace(
            instructions[report.instruction_id], overdue_reported=True
        )
    return replace(facts, instructions=instructions)
