"""Applying a batch of termination requests in one database transaction, its applier for the pipeline
and the logging of its decisions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.topics import Topic
from worker.db.balances import add_to_balances
from worker.db.bulk import ResellerKey
from worker.db.inbox import (
    InboxTracking,
    Redelivery,
    inbox_row,
    inbox_tracking,
    subscription_owners,
    terminated_subscriptions,
)
from worker.db.invoice_notes import known_invoice_notes, lock_guarded_subscriptions, unused_invoice_notes
from worker.domain.credit_note_guard import (
    AutoLinked,
    GuardedDecision,
    NoteFacts,
    NoteLedger,
    guard_termination,
)
from worker.domain.credit_note_guard import record_termination as note_ledger_after
from worker.domain.never_twice import History, Rejection
from worker.domain.ownership import account_mismatch
from worker.domain.policy import RefundPolicy
from worker.engine.clock import utc_now
from worker.engine.failures import IdempotencyConflict, PoisonMessage
from worker.engine.pipeline import Applied, Apply
from worker.terminations.commands import CommandResult, Outcome, TerminationCommand
from worker.terminations.events import rejected_event
from worker.terminations.plan import (
    BatchRows,
    chosen_notes,
    credits_per_account,
    own_note_numbers,
    own_notes_per_reseller,
    record_termination,
    refund_id_of,
)
from worker.terminations.store import (
    cancel_pending_timers,
    insert_all,
    mark_invoice_notes_used,
    next_credit_note_numbers,
    used_credit_notes,
)

log = logging.getLogger("worker.decisions")

_REDELIVERY_OUTCOMES = {Redelivery.DUPLICATE: Outcome.DUPLICATE, Redelivery.CONFLICT: Outcome.CONFLICT}


async def apply_termination_batch(
    conn: AsyncConnection,
    commands: Sequence[TerminationCommand],
    *,
    policy: RefundPolicy,
    now: datetime,
) -> list[CommandResult]:
    """Decide and store every command, in order; returns one result per command, in order."""
    topic = Topic.TERMINATION_REQUESTED.value
    subscriptions = {_subscription(c) for c in commands}
    # First, so that every look-up below sees a credit note of these subscriptions that committed
    # while this batch waited (worker/db/invoice_notes.py says why).
    await lock_guarded_subscriptions(conn, subscriptions)
    seen = await inbox_tracking(conn, topic, {_request(c) for c in commands})
    owners = await subscription_owners(conn, subscriptions)
    terminated = await terminated_subscriptions(conn, subscriptions)
    named = chosen_notes(commands)
    used_notes = await used_credit_notes(conn, named)
    notes = await unused_invoice_notes(conn, subscriptions) | await known_invoice_notes(conn, named)
    ledgers = _ledgers(notes)

    batch = BatchRows(now=now)
    for command in commands:
        ledger = ledgers.get(command.reseller_id) or NoteLedger(command.reseller_id)
        result, verdict = _judge(command, seen, _Known(owners, terminated, used_notes), ledger, policy)
        batch.results.append(result)
        if result.outcome in (Outcome.DUPLICATE, Outcome.CONFLICT):
            continue
        seen.track(_request(command), command.payload_sha256)
        batch.inbox.append(
            inbox_row(
                command.reseller_id,
                topic,
                command.request_id,
                command.payload_sha256,
                result.outcome,
                command.partition,
                command.offset,
            )
        )
        if result.decision is not None and verdict is not None:
            terminated.add(_subscription(command))
            owners[_subscription(command)] = command.account_id
            if result.decision.credit_note is not None:
                used_notes.add((command.reseller_id, result.decision.credit_note.credit_note_id))
            ledgers[command.reseller_id] = note_ledger_after(
                ledger, command.subscription_id, refund_id_of(command), verdict
            )
            batch.accepted.append((command, result.decision))

    first_numbers = await next_credit_note_numbers(conn, own_notes_per_reseller(batch.accepted))
    numbers = own_note_numbers(batch.accepted, first_numbers)
    balances = await add_to_balances(conn, credits_per_account(batch.accepted), now)
    # Rows and events in input order, so a rejection never overtakes the termination it refers to.
    for result in batch.results:
        if result.rejection is not None:
            batch.events.append(rejected_event(result.command, result.rejection, now))
        elif result.decision is not None:
            record_termination(batch, result.command, result.decision, numbers, balances, result.linked)
    # A request cancels the subscription's pending expiry timer (contract section 3). Before the
    # inserts, so that this batch and the timer loop lock the timer row, then the termination,
    # in the same order (worker/expiry/firing.py).
    await cancel_pending_timers(
        conn, [(row["reseller_id"], row["subscription_id"]) for row in batch.terminations], now
    )
    await insert_all(conn, batch)
    await mark_invoice_notes_used(conn, batch.used_invoice_notes, now)
    return batch.results


@dataclass(frozen=True, slots=True)
class _Known:
    """What the store (and the batch so far) knows, each by (reseller_id, id)."""

    owners: dict[ResellerKey, str]
    terminated: set[ResellerKey]
    used_notes: set[ResellerKey]


def _subscription(command: TerminationCommand) -> ResellerKey:
    return (command.reseller_id, command.subscription_id)


def _request(command: TerminationCommand) -> ResellerKey:
    return (command.reseller_id, command.request_id)


def _ledgers(notes: dict[ResellerKey, NoteFacts]) -> dict[str, NoteLedger]:
    """The invoice app's notes the batch may use, one ledger per reseller."""
    by_reseller: dict[str, dict[str, NoteFacts]] = {}
    for (reseller, note_id), facts in notes.items():
        by_reseller.setdefault(reseller, {})[note_id] = facts
    return {reseller: NoteLedger(reseller, notes=facts) for reseller, facts in by_reseller.items()}


def _judge(
    command: TerminationCommand, seen: InboxTracking, known: _Known, ledger: NoteLedger, policy: RefundPolicy
) -> tuple[CommandResult, GuardedDecision | None]:
    redelivery = seen.redelivery(_request(command), command.payload_sha256)
    if redelivery is not None:
        return CommandResult(command, _REDELIVERY_OUTCOMES[redelivery]), None
    note = command.terms.credit_note
    subscription = _subscription(command)
    history = History(
        subscription_terminated=subscription in known.terminated,
        credit_note_used=note is not None and (command.reseller_id, note.credit_note_id) in known.used_notes,
        account_mismatch=account_mismatch(
            command.subscription_id, command.account_id, known.owners.get(subscription)
        ),
    )
    verdict = guard_termination(command.subscription_id, command.terms, ledger, history, policy)
    if isinstance(verdict, Rejection):
        return CommandResult(command, Outcome.REJECTED, rejection=verdict), verdict
    if isinstance(verdict, AutoLinked):
        return CommandResult(
            command, Outcome.TERMINATED, decision=verdict.decision, linked=verdict.notes
        ), verdict
    return CommandResult(command, Outcome.TERMINATED, decision=verdict), verdict


def termination_applier(
    policy: RefundPolicy,
    on_decisions: Callable[[Sequence[CommandResult]], None],
    clock: Callable[[], datetime] = utc_now,
) -> Apply[AsyncConnection, TerminationCommand]:
    """`on_decisions` sees the results once committed (metrics); each decision is logged then too.
    `clock` says when each batch is decided: its `terminated_at` and `issued_at`."""

    def committed(results: Sequence[CommandResult]) -> None:
        _log_decisions(results)
        on_decisions(results)

    async def apply(conn: AsyncConnection, commands: Sequence[TerminationCommand]) -> Applied:
        results = await apply_termination_batch(conn, commands, policy=policy, now=clock())
        conflicts: list[tuple[int, PoisonMessage]] = [
            (index, IdempotencyConflict(_conflict_message(result.command)))
            for index, result in enumerate(results)
            if result.outcome is Outcome.CONFLICT
        ]
        return Applied(conflicts, on_commit=lambda: committed(results))

    return apply


def _log_decisions(results: Sequence[CommandResult]) -> None:
    """One line per decision, once it is committed."""
    for result in results:
        if result.outcome is Outcome.CONFLICT:
            continue  # the dead-lettering logs it
        command, decision = result.command, result.decision
        why = result.rejection.code if result.rejection else decision.no_refund_reason if decision else None
        fields = {
            "outcome": result.outcome.value,
            "subscription_id": command.subscription_id,
            "account_id": command.account_id,
            "ce_id": command.request_id,
            "amount": str(decision.amount) if decision else None,
            "currency": decision.amount.currency.code if decision else None,
            "rule": decision.rule.value if decision and decision.rule else None,
            "reason": str(why) if why else None,
        }
        log.info("decision %s", result.outcome.value, extra=fields)


def _conflict_message(command: TerminationCommand) -> str:
    return (
        f"ce_id {command.request_id!r} was processed before with another payload; "
        "a new request needs a new ce_id"
    )
