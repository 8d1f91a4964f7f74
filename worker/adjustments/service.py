"""Applying a batch of adjustment requests in one database transaction, its applier for the pipeline
and the logging of its decisions.

Read the facts (the inbox's judgement of redeliveries, the balances locked, the reversals' targets,
the transactions), decide each account's requests in order (worker.domain.adjustments), then write
the rows and events the plan makes of the decisions: a fixed number of statements per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.topics import Topic
from worker.adjustments.commands import AdjustmentCommand, AdjustmentResult, Outcome
from worker.adjustments.plan import (
    StoredFacts,
    balance_keys,
    decide_batch,
    plan_rows,
    target_keys,
    transaction_keys,
)
from worker.adjustments.store import known_transactions, reversal_targets, write_all
from worker.db.balances import locked_balances
from worker.db.inbox import Redelivery, inbox_tracking
from worker.domain.adjustment_requests import AdjustmentRequest, Applied, Refused
from worker.engine.clock import utc_now
from worker.engine.failures import IdempotencyConflict, PoisonMessage
from worker.engine.pipeline import Applied as BatchApplied
from worker.engine.pipeline import Apply

log = logging.getLogger("worker.decisions")

_REDELIVERY_OUTCOMES = {Redelivery.DUPLICATE: Outcome.DUPLICATE, Redelivery.CONFLICT: Outcome.CONFLICT}


async def apply_adjustment_batch(
    conn: AsyncConnection, commands: Sequence[AdjustmentCommand], *, now: datetime
) -> list[AdjustmentResult]:
    """Decide and store every command; returns one result per command, in order."""
    seen = await inbox_tracking(conn, Topic.BALANCE_ADJUSTMENT_REQUESTED.value, {_key(c) for c in commands})
    redelivered: dict[int, Outcome] = {}
    fresh: list[AdjustmentRequest] = []
    for index, command in enumerate(commands):
        redelivery = seen.redelivery(_key(command), command.payload_sha256)
        if redelivery is not None:
            redelivered[index] = _REDELIVERY_OUTCOMES[redelivery]
            continue
        seen.track(_key(command), command.payload_sha256)
        fresh.append(command.request)

    balances = await locked_balances(conn, balance_keys(fresh))
    entries = await reversal_targets(conn, target_keys(fresh))
    transactions = await known_transactions(conn, transaction_keys(fresh, entries))
    stored = StoredFacts(balances, entries, transactions)
    decisions, after = decide_batch(fresh, stored)

    results: list[AdjustmentResult] = []
    for index, command in enumerate(commands):
        if index in redelivered:
            results.append(AdjustmentResult(command, redelivered[index]))
            continue
        decision = decisions[(command.request.reseller_id, command.request.adjustment_id)]
        outcome = Outcome.APPLIED if isinstance(decision, Applied) else Outcome.REJECTED
        results.append(AdjustmentResult(command, outcome, decision))
    rows = plan_rows(results, stored, after, now)
    await write_all(conn, rows)
    return results


def _key(command: AdjustmentCommand) -> tuple[str, str]:
    """The inbox's key of a request: its id is unique within its reseller only."""
    return command.request.reseller_id, command.request.adjustment_id


def adjustment_applier(
    on_decisions: Callable[[Sequence[AdjustmentResult]], None],
    clock: Callable[[], datetime] = utc_now,
) -> Apply[AsyncConnection, AdjustmentCommand]:
    """`on_decisions` sees the results once committed (metrics); each decision is logged then too.
    `clock` says when each batch is decided: its `applied_at`."""

    def committed(results: Sequence[AdjustmentResult]) -> None:
        _log_decisions(results)
        on_decisions(results)

    async def apply(conn: AsyncConnection, commands: Sequence[AdjustmentCommand]) -> BatchApplied:
        results = await apply_adjustment_batch(conn, commands, now=clock())
        conflicts: list[tuple[int, PoisonMessage]] = [
            (index, IdempotencyConflict.reused(result.command.request.adjustment_id))
            for index, result in enumerate(results)
            if result.outcome is Outcome.CONFLICT
        ]
        return BatchApplied(conflicts, on_commit=lambda: committed(results))

    return apply


def _log_decisions(results: Sequence[AdjustmentResult]) -> None:
    """One line per decision, once it is committed."""
    for result in results:
        if result.outcome is Outcome.CONFLICT:
            continue  # the dead-lettering logs it
        request, decision = result.command.request, result.decision
        fields = {
            "outcome": result.outcome.value,
            "adjustment_kind": request.kind.value,
            "account_id": request.account_id,
            "reseller_id": request.reseller_id,
            "ce_id": request.adjustment_id,
            "currency": request.currency.code,
            "delta_minor": decision.delta if isinstance(decision, Applied) else None,
            "reason": decision.code.value if isinstance(decision, Refused) else None,
            "detail": decision.detail if decision is not None else None,
        }
        log.info("adjustment %s", result.outcome.value, extra=fields)
