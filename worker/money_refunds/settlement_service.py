"""Applying a batch of settlements from the payment service in one database transaction, its applier
for the pipeline and the logging of its answers.

Lock the accounts, read the facts (the inbox's judgement of redeliveries, the instructions named
locked, their payments, the balances they debited locked), settle each account's instructions in
order (worker.domain.payment_settlements), write the rows and events, and record how far the batch
read each partition (the overdue report waits for it, worker/money_refunds/overdue.py).

A settlement for an instruction not in the table is unknown, whatever may come later: an
instruction is stored before it is published, so its settlement cannot honestly come first, and
within a batch of several topics the requests are applied before the settlements
(worker/app.py orders the pipelines). It is dead-lettered, and replaying it settles it if the
instruction has appeared since.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.topics import Topic
from worker.db.balances import locked_balances
from worker.db.inbox import inbox_tracking
from worker.engine.clock import utc_now
from worker.engine.failures import (
    IdempotencyConflict,
    PoisonMessage,
    SettlementConflict,
    UnknownMoneyRefundInstruction,
)
from worker.engine.pipeline import Applied, Apply
from worker.expiry.read_progress import record_read
from worker.money_refunds.commands import DEAD_LETTERED, SettlementAnswer, SettlementCommand, SettlementResult
from worker.money_refunds.plan import StoredFacts, owners
from worker.money_refunds.settlement_plan import (
    balance_keys,
    ce_key,
    event_time_by_partition,
    instruction_key,
    judge_batch,
    owner_of,
    payment_keys,
    plan_settlements,
)
from worker.money_refunds.store import known_payments, lock_accounts, locked_instructions, write_all

log = logging.getLogger("worker.decisions")

TOPIC = Topic.PAYMENT_REFUND_SETTLED.value


async def apply_settlement_batch(
    conn: AsyncConnection, commands: Sequence[SettlementCommand], *, now: datetime
) -> list[SettlementResult]:
    """Settle every instruction named, in order; one result per command, in order."""
    await lock_accounts(conn, owners(owner_of(c) for c in commands))
    seen = await inbox_tracking(conn, TOPIC, {ce_key(c) for c in commands})
    instructions = await locked_instructions(conn, {instruction_key(c) for c in commands})
    found = StoredFacts(instructions=instructions)
    balances = await locked_balances(conn, balance_keys(found))
    payments = await known_payments(conn, payment_keys(found))
    stored = StoredFacts(balances, payments, instructions)
    results, after = judge_batch(commands, seen, stored)
    await write_all(conn, plan_settlements(results, stored, after, now))
    await record_read(conn, TOPIC, event_time_by_partition(commands, now), now)
    return results


def settlement_applier(
    on_answers: Callable[[Sequence[SettlementResult]], None],
    clock: Callable[[], datetime] = utc_now,
) -> Apply[AsyncConnection, SettlementCommand]:
    """`on_answers` sees the results once committed (metrics); each is logged then too. `clock` says
    when each batch is applied: the `updated_at` of what it publishes."""

    def committed(results: Sequence[SettlementResult]) -> None:
        _log_answers(results)
        on_answers(results)

    async def apply(conn: AsyncConnection, commands: Sequence[SettlementCommand]) -> Applied:
        results = await apply_settlement_batch(conn, commands, now=clock())
        poison: list[tuple[int, PoisonMessage]] = [
            (index, _dead_letter(result))
            for index, result in enumerate(results)
            if result.answer in DEAD_LETTERED
        ]
        return Applied(poison, on_commit=lambda: committed(results))

    return apply


def _dead_letter(result: SettlementResult) -> PoisonMessage:
    settlement = result.command.settlement
    if result.answer is SettlementAnswer.UNKNOWN_INSTRUCTION:
        return UnknownMoneyRefundInstruction(
            result.detail or f"no money refund instruction {settlement.instruction_id}"
        )
    if result.answer is SettlementAnswer.CONFLICTING_STATUS:
        return SettlementConflict(
            result.detail or f"instruction {settlement.instruction_id} settled otherwise"
        )
    return IdempotencyConflict.reused(result.command.ce_id, "settlement")


def _log_answers(results: Sequence[SettlementResult]) -> None:
    """One line per settlement, once it is committed."""
    for result in results:
        if result.answer in DEAD_LETTERED:
            continue  # the dead-lettering logs it
        settlement = result.command.settlement
        fields = {
            "outcome": result.answer.value,
            "instruction_id": settlement.instruction_id,
            "account_id": settlement.account_id,
            "reseller_id": settlement.reseller_id,
            "ce_id": result.command.ce_id,
            "status": settlement.status.value,
            "credited_back_minor": getattr(result.outcome, "credited_back", None),
            "detail": settlement.detail,
        }
        log.info("payment settlement %s", result.answer.value, extra=fields)
