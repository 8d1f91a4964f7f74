"""Applying a batch of money refund requests in one database transaction, its applier for the pipeline
and the logging of its decisions.

Lock the accounts, read the facts (the inbox's judgement of redeliveries, the balances to debit
locked, the payments), decide each account's requests in order (worker.domain.money_refunds), then
write the rows and events the plan makes of the decisions: a fixed number of statements per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.topics import Topic
from worker.db.balances import locked_balances
from worker.db.inbox import Redelivery, inbox_tracking
from worker.domain.money_refund_facts import SettlementTimeout
from worker.domain.money_refunds import Instructed, MoneyRefundRefused, MoneyRefundRequest
from worker.engine.clock import utc_now
from worker.engine.failures import IdempotencyConflict, PoisonMessage
from worker.engine.pipeline import Applied, Apply
from worker.money_refunds.commands import MoneyRefundCommand, MoneyRefundResult, RequestOutcome
from worker.money_refunds.plan import StoredFacts, balance_keys, decide_batch, owners, payment_keys, plan_rows
from worker.money_refunds.store import known_payments, lock_accounts, write_all

log = logging.getLogger("worker.decisions")

_REDELIVERY_OUTCOMES = {
    Redelivery.DUPLICATE: RequestOutcome.DUPLICATE,
    Redelivery.CONFLICT: RequestOutcome.CONFLICT,
}


async def apply_money_refund_batch(
    conn: AsyncConnection,
    commands: Sequence[MoneyRefundCommand],
    *,
    now: datetime,
    settle_within: SettlementTimeout,
) -> list[MoneyRefundResult]:
    """Decide and store every command; returns one result per command, in order. An instruction is
    overdue `settle_within` after `now`, when it is instructed."""
    await lock_accounts(conn, owners((c.request.reseller_id, c.request.account_id) for c in commands))
    seen = await inbox_tracking(conn, Topic.MONEY_REFUND_REQUESTED.value, {_key(c) for c in commands})
    redelivered: dict[int, RequestOutcome] = {}
    fresh: list[MoneyRefundRequest] = []
    for index, command in enumerate(commands):
        redelivery = seen.redelivery(_key(command), command.payload_sha256)
        if redelivery is not None:
            redelivered[index] = _REDELIVERY_OUTCOMES[redelivery]
            continue
        seen.track(_key(command), command.payload_sha256)
        fresh.append(command.request)

    balances = await locked_balances(conn, balance_keys(fresh))
    payments = await known_payments(conn, payment_keys(fresh))
    stored = StoredFacts(balances, payments)
    decisions, after = decide_batch(fresh, stored)

    results: list[MoneyRefundResult] = []
    for index, command in enumerate(commands):
        if index in redelivered:
            results.append(MoneyRefundResult(command, redelivered[index]))
            continue
        decision = decisions[_key(command)]
        outcome = RequestOutcome.INSTRUCTED if isinstance(decision, Instructed) else RequestOutcome.REJECTED
        results.append(MoneyRefundResult(command, outcome, decision))
    await write_all(conn, plan_rows(results, stored, after, now, settle_within))
    return results


def _key(command: MoneyRefundCommand) -> tuple[str, str]:
    """The inbox's key of a request: its id is unique within its reseller only."""
    return command.request.reseller_id, command.request.request_id


def money_refund_applier(
    settle_within: SettlementTimeout,
    on_decisions: Callable[[Sequence[MoneyRefundResult]], None],
    clock: Callable[[], datetime] = utc_now,
) -> Apply[AsyncConnection, MoneyRefundCommand]:
    """`on_decisions` sees the results once committed (metrics); each decision is logged then too.
    `clock` says when each batch is decided: its instructions' `instructed_at`."""

    def committed(results: Sequence[MoneyRefundResult]) -> None:
        _log_decisions(results)
        on_decisions(results)

    async def apply(conn: AsyncConnection, commands: Sequence[MoneyRefundCommand]) -> Applied:
        results = await apply_money_refund_batch(conn, commands, now=clock(), settle_within=settle_within)
        conflicts: list[tuple[int, PoisonMessage]] = [
            (index, IdempotencyConflict.reused(result.command.request.request_id))
            for index, result in enumerate(results)
            if result.outcome is RequestOutcome.CONFLICT
        ]
        return Applied(conflicts, on_commit=lambda: committed(results))

    return apply


def _log_decisions(results: Sequence[MoneyRefundResult]) -> None:
    """One line per decision, once it is committed."""
    for result in results:
        if result.outcome is RequestOutcome.CONFLICT:
            continue  # the dead-lettering logs it
        request, decision = result.command.request, result.decision
        fields = {
            "outcome": result.outcome.value,
            "account_id": request.account_id,
            "reseller_id": request.reseller_id,
            "ce_id": request.request_id,
            "instruction_id": request.instruction_id if isinstance(decision, Instructed) else None,
            "payment_id": request.payment.payment_id,
            "method": request.method.value,
            "currency": request.currency.code,
            "amount_minor": request.amount,
            "debited_minor": decision.debited if isinstance(decision, Instructed) else None,
            "reason": decision.code.value if isinstance(decision, MoneyRefundRefused) else None,
            "detail": decision.detail if decision is not None else None,
        }
        log.info("money refund %s", result.outcome.value, extra=fields)
