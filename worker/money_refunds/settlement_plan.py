"""How a batch of settlements from the payment service is judged against the instructions it names,
and the rows and events it writes, in input order. No I/O: worker/money_refunds/store.py reads and
writes, worker/money_refunds/settlement_service.py orders the steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from schemas.money_refunds import MoneyRefundStatus
from schemas.topics import Topic
from worker.db.balances import AccountKey
from worker.db.bulk import ResellerKey
from worker.db.inbox import InboxTracking, Redelivery, inbox_row
from worker.domain.errors import ConflictingSettlement, UnknownInstruction
from worker.domain.money_refund_facts import MoneyRefundFacts
from worker.domain.payment_settlements import Settled, SettlementStatus, settle, settled_detail
from worker.domain.watermark import event_time_read
from worker.money_refunds.commands import DEAD_LETTERED, SettlementAnswer, SettlementCommand, SettlementResult
from worker.money_refunds.events import credited_back_id, credits_event, updated_event
from worker.money_refunds.plan import StoredFacts, account_facts
from worker.money_refunds.rows import MoneyRefundRows, Owner, PaymentKey, instruction_row, ledger_row

_REDELIVERY_ANSWERS = {
    Redelivery.DUPLICATE: SettlementAnswer.DUPLICATE,
    Redelivery.CONFLICT: SettlementAnswer.IDEMPOTENCY_CONFLICT,
}


def owner_of(command: SettlementCommand) -> Owner:
    return command.settlement.reseller_id, command.settlement.account_id


def ce_key(command: SettlementCommand) -> ResellerKey:
    """The inbox's key of a settlement: its ce_id is unique within its reseller only."""
    return command.settlement.reseller_id, command.ce_id


def instruction_key(command: SettlementCommand) -> ResellerKey:
    return command.settlement.reseller_id, command.settlement.instruction_id


def payment_keys(stored: StoredFacts) -> list[PaymentKey]:
    """The payments of the instructions found (a failure frees its amount)."""
    return sorted({(r, i.account_id, i.payment_id) for (r, _), i in stored.instructions.items()})


def balance_keys(stored: StoredFacts) -> list[AccountKey]:
    """The balances the instructions found debited (a failure gives it back), sorted: the lock order."""
    return sorted(
        {(r, i.account_id, i.currency.code) for (r, _), i in stored.instructions.items() if i.debited}
    )


def judge_batch(
    commands: Sequence[SettlementCommand], seen: InboxTracking, stored: StoredFacts
) -> tuple[list[SettlementResult], dict[Owner, MoneyRefundFacts]]:
    """Each settlement's answer, in input order; each account's settlements in the order they were
    read, each seeing what the earlier ones settled. Also each account's facts after them."""
    facts: dict[Owner, MoneyRefundFacts] = {}
    results: list[SettlementResult] = []
    for command in commands:
        owner = owner_of(command)
        if owner not in facts:
            facts[owner] = account_facts(owner, stored)
        result, facts[owner] = _judge(command, seen, facts[owner])
        if result.answer not in DEAD_LETTERED and result.answer is not SettlementAnswer.DUPLICATE:
            seen.track(ce_key(command), command.payload_sha256)
        results.append(result)
    return results, facts


def _judge(
    command: SettlementCommand, seen: InboxTracking, facts: MoneyRefundFacts
) -> tuple[SettlementResult, MoneyRefundFacts]:
    redelivery = seen.redelivery(ce_key(command), command.payload_sha256)
    if redelivery is not None:
        return SettlementResult(command, _REDELIVERY_ANSWERS[redelivery]), facts
    try:
        outcome, after = settle(command.settlement, facts)
    except UnknownInstruction as unknown:
        return SettlementResult(command, SettlementAnswer.UNKNOWN_INSTRUCTION, detail=str(unknown)), facts
    except ConflictingSettlement as conflicting:
        return SettlementResult(command, SettlementAnswer.CONFLICTING_STATUS, detail=str(conflicting)), facts
    if not isinstance(outcome, Settled):
        return SettlementResult(command, SettlementAnswer.ALREADY_SETTLED, outcome), facts
    answer = SettlementAnswer(outcome.status.value)
    return SettlementResult(command, answer, outcome), after


def plan_settlements(
    results: Sequence[SettlementResult],
    stored: StoredFacts,
    after: Mapping[Owner, MoneyRefundFacts],
    now: datetime,
) -> MoneyRefundRows:
    """Rows and events in input order; each credit given back gets the next version of its balance."""
    rows = MoneyRefundRows(now=now)
    freed: list[PaymentKey] = []
    for result in results:
        if result.answer in DEAD_LETTERED or result.answer is SettlementAnswer.DUPLICATE:
            continue
        command = result.command
        rows.inbox.append(
            inbox_row(
                command.settlement.reseller_id,
                Topic.PAYMENT_REFUND_SETTLED.value,
                command.ce_id,
                command.payload_sha256,
                result.answer,
                command.partition,
                command.offset,
            )
        )
        if isinstance(result.outcome, Settled):
            instruction = stored.instructions[instruction_key(command)]
            _record_settled(rows, result, result.outcome, stored)
            if result.outcome.status is SettlementStatus.FAILED:
                freed.append((instruction.reseller_id, instruction.account_id, instruction.payment_id))
    rows.add_payments(after, freed)
    return rows


def _record_settled(
    rows: MoneyRefundRows, result: SettlementResult, outcome: Settled, stored: StoredFacts
) -> None:
    command, now = result.command, rows.now
    settlement = command.settlement
    instruction = stored.instructions[instruction_key(command)]
    rows.settled.append(settled_row(instruction_row(instruction), command, now))
    detail = settlement.detail or settled_detail(outcome, instruction.facts())
    rows.events.append(updated_event(instruction, MoneyRefundStatus(outcome.status.value), detail, now))
    if not outcome.credited_back:
        return
    key = (instruction.reseller_id, instruction.account_id, instruction.currency.code)
    balance, version = rows.change_balance(key, stored.balances, outcome.credited_back)
    if balance != outcome.balance:  # the rules and the store saw different balances: a bug
        raise ValueError(
            f"settlement {command.ce_id}: the rules left {outcome.balance}, the ledger {balance}"
        )
    event_id = credited_back_id(instruction)
    rows.ledger.append(ledger_row(instruction, outcome.credited_back, balance, version, event_id, now))
    rows.events.append(credits_event(instruction, outcome.credited_back, balance, version, now))


def settled_row(row: dict[str, Any], command: SettlementCommand, now: datetime) -> dict[str, Any]:
    """The instruction's row with how it ended."""
    settlement = command.settlement
    return row | {
        "status": settlement.status.value,
        "settled_at": settlement.settled_at,
        "settlement_ce_id": command.ce_id,
        "settlement_detail": settlement.detail,
        "updated_at": now,
    }


def event_time_by_partition(commands: Iterable[SettlementCommand], now: datetime) -> dict[int, datetime]:
    """How far the batch read each partition of payment-refund-settled, in event time (settled_at;
    redeliveries and dead letters were read too): what the overdue report waits for."""
    by_partition: dict[int, list[datetime]] = {}
    for command in commands:
        if command.partition is not None:
            by_partition.setdefault(command.partition, []).append(command.settlement.settled_at)
    read = {p: event_time_read(instants, now=now) for p, instants in by_partition.items()}
    return {p: instant for p, instant in read.items() if instant is not None}
