"""What a batch of money refund requests reads, how the rules decide it, and the rows and events it
writes, in input order. No I/O: worker/money_refunds/store.py reads and writes, the service orders
the steps. The settlements' side is worker/money_refunds/settlement_plan.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schemas.money_refunds import MoneyRefundStatus
from schemas.topics import Topic
from worker.db.balances import AccountKey
from worker.db.bulk import ResellerKey
from worker.db.inbox import inbox_row
from worker.domain.money import Currency, Money
from worker.domain.money_refund_facts import (
    InstructionState,
    MoneyRefundFacts,
    PaymentFacts,
    SettlementTimeout,
)
from worker.domain.money_refunds import (
    Instructed,
    MoneyRefundDecision,
    MoneyRefundRefused,
    MoneyRefundRequest,
    decide_in_order,
)
from worker.money_refunds.commands import MoneyRefundResult, RequestOutcome, StoredInstruction
from worker.money_refunds.events import (
    credits_event,
    debited_id,
    instructed_event,
    rejected_event,
    updated_event,
)
from worker.money_refunds.rows import MoneyRefundRows, Owner, PaymentKey, instruction_row, ledger_row


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """What the database knows of a batch's accounts, read before any rule runs."""

    balances: Mapping[AccountKey, tuple[int, int]] = field(default_factory=dict)
    """(balance, version) of each balance the batch may change that exists (its row locked)."""
    payments: Mapping[PaymentKey, PaymentFacts] = field(default_factory=dict)
    instructions: Mapping[ResellerKey, StoredInstruction] = field(default_factory=dict)
    """The instructions a batch of settlements names, by (reseller_id, instruction_id)."""


def owners(keys: Iterable[Owner]) -> list[Owner]:
    """The accounts a batch touches, sorted: their lock is taken in this order."""
    return sorted(set(keys))


def balance_keys(requests: Iterable[MoneyRefundRequest]) -> list[AccountKey]:
    """The balances a batch may debit (those of requests taken from the balance), sorted: rows are
    locked in this order, as every use case that moves credits locks them."""
    return sorted({(r.reseller_id, r.account_id, r.currency.code) for r in requests if r.from_balance})


def payment_keys(requests: Iterable[MoneyRefundRequest]) -> list[PaymentKey]:
    return sorted({(r.reseller_id, r.account_id, r.payment.payment_id) for r in requests})


def account_facts(owner: Owner, stored: StoredFacts) -> MoneyRefundFacts:
    """One account's facts: what is not this account's is no fact of it."""
    reseller, account = owner
    return MoneyRefundFacts(
        reseller_id=reseller,
        account_id=account,
        balances={
            Currency.of(code): balance
            for (r, holder, code), (balance, _) in stored.balances.items()
            if (r, holder) == owner
        },
        payments={payment: facts for (r, a, payment), facts in stored.payments.items() if (r, a) == owner},
        instructions={
            instruction_id: stored_instruction.facts()
            for (r, instruction_id), stored_instruction in stored.instructions.items()
            if (r, stored_instruction.account_id) == owner
        },
    )


def decide_batch(
    requests: Sequence[MoneyRefundRequest], stored: StoredFacts
) -> tuple[dict[ResellerKey, MoneyRefundDecision], dict[Owner, MoneyRefundFacts]]:
    """Each request's decision, by (reseller_id, request_id); each account's requests in the order they
    were read, each seeing what the earlier ones instructed. Also each account's facts after them."""
    by_owner: dict[Owner, list[MoneyRefundRequest]] = {}
    for request in requests:
        by_owner.setdefault((request.reseller_id, request.account_id), []).append(request)
    decisions: dict[ResellerKey, MoneyRefundDecision] = {}
    after: dict[Owner, MoneyRefundFacts] = {}
    for owner, own in by_owner.items():
        decided, after[owner] = decide_in_order(own, account_facts(owner, stored))
        decisions.update(
            ((request.reseller_id, request.request_id), decision)
            for request, decision in zip(own, decided, strict=True)
        )
    return decisions, after


def stored_instruction(
    request: MoneyRefundRequest, instructed: Instructed, now: datetime, timeout: SettlementTimeout
) -> StoredInstruction:
    """The instruction an accepted request becomes, instructed now."""
    return StoredInstruction(
        reseller_id=request.reseller_id,
        instruction_id=instructed.instruction_id,
        request_id=request.request_id,
        account_id=request.account_id,
        payment_id=instructed.payment_id,
        method=instructed.method,
        amount=Money(instructed.amount, instructed.currency),
        debited=instructed.debited,
        state=InstructionState.INSTRUCTED,
        reason=request.reason,
        requested_by=request.actor.id,
        requested_at=request.requested_at,
        instructed_at=now,
        due_at=now + timeout.delta,
    )


def plan_rows(
    results: Sequence[MoneyRefundResult],
    stored: StoredFacts,
    after: Mapping[Owner, MoneyRefundFacts],
    now: datetime,
    timeout: SettlementTimeout,
) -> MoneyRefundRows:
    """Rows and events in input order; each debit gets the next version of its balance."""
    rows = MoneyRefundRows(now=now)
    touched: list[PaymentKey] = []
    for result in results:
        if result.outcome in (RequestOutcome.DUPLICATE, RequestOutcome.CONFLICT):
            continue
        command, request = result.command, result.command.request
        rows.inbox.append(
            inbox_row(
                request.reseller_id,
                Topic.MONEY_REFUND_REQUESTED.value,
                request.request_id,
                command.payload_sha256,
                result.outcome,
                command.partition,
                command.offset,
            )
        )
        if isinstance(result.decision, MoneyRefundRefused):
            rows.events.append(rejected_event(request, result.decision, now))
        elif isinstance(result.decision, Instructed):
            _record_instructed(
                rows,
                request,
                stored_instruction(request, result.decision, now, timeout),
                result.decision,
                stored,
            )
            touched.append((request.reseller_id, request.account_id, request.payment.payment_id))
    rows.add_payments(after, touched)
    return rows


def _record_instructed(
    rows: MoneyRefundRows,
    request: MoneyRefundRequest,
    instruction: StoredInstruction,
    instructed: Instructed,
    stored: StoredFacts,
) -> None:
    now = rows.now
    rows.instructions.append(instruction_row(instruction))
    rows.events.append(instructed_event(instruction, now))
    rows.events.append(updated_event(instruction, MoneyRefundStatus.INSTRUCTED, instructed.detail, now))
    if not instruction.debited:
        return
    key = (request.reseller_id, request.account_id, instruction.currency.code)
    balance, version = rows.change_balance(key, stored.balances, -instruction.debited)
    if balance != instructed.balance:  # the rules and the store saw different balances: a bug
        raise ValueError(
            f"money refund {request.request_id}: the rules left {instructed.balance}, the ledger {balance}"
        )
    rows.ledger.append(
        ledger_row(instruction, -instruction.debited, balance, version, debited_id(instruction), now)
    )
    rows.events.append(credits_event(instruction, -instruction.debited, balance, version, now))
