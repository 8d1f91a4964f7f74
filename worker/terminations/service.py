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
from worker.engine.outbox_store import StoredBatch
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
    batch, _ = await _apply_batch(conn, commands, policy, now)
    return batch.results


async def _apply_batch(
    conn: AsyncConnection, commands: Sequence[TerminationCommand], policy: RefundPolicy, now: datetime
) -> tuple[BatchRows, StoredBatch | None]:
    """apply_termination_batch's work; the rows and events it stored, the results among them, and the
    events as the outbox stored them."""
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
    known = _Known(owners, terminated, used_notes)  # updated below as the batch decides
    for command in commands:
        ledger = ledgers.get(command.reseller_id)
        if ledger is None:  # one empty ledger a reseller, not one a request (never changed, below)
            ledger = ledgers[command.reseller_id] = NoteLedger(command.reseller_id)
        result, verdict = _judge(command, seen, known, ledger, policy)
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
            if ledger.notes:  # else `terminated` keeps all the guard needs, and a copy a request cost O(n)
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
    stored = await insert_all(conn, batch)
    await mark_invoice_notes_used(conn, batch.used_invoice_notes, now)
    return batch, stored


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
    publish: Callable[[StoredBatch], None] | None = None,
) -> Apply[AsyncConnection, TerminationCommand]:
    """`on_decisions` sees the results once committed (metrics); the batch is logged then too, and its
    events handed to `publish` (the outbox relay's, which publishes them from memory; without it they
    wait in the outbox for a relay's claim). `clock` says when each batch is decided: its
    `terminated_at` and `issued_at`."""

    def committed(results: list[CommandResult], stored: StoredBatch | None) -> None:
        _log_decisions(results)
        on_decisions(results)
        if publish is not None and stored is not None:
            publish(stored)

    async def apply(conn: AsyncConnection, commands: Sequence[TerminationCommand]) -> Applied:
        batch, stored = await _apply_batch(conn, commands, policy, clock())
        results = batch.results  # only these and the events outlive the COPYs: the rows go now
        conflicts: list[tuple[int, PoisonMessage]] = [
            (index, IdempotencyConflict.reused(result.command.request_id))
            for index, result in enumerate(results)
            if result.outcome is Outcome.CONFLICT
        ]
        return Applied(conflicts, on_commit=lambda: committed(results, stored))

    return apply


def _log_decisions(results: Sequence[CommandResult]) -> None:
    """One line per batch, once it is committed, naming every request's ce_id under its outcome (a
    rejection's as ce_id:code), so that each decision is found by its id: one line a request cost
    27 us of its ~100 us budget (issue 13); the amounts and rules are in the ledger and the events."""
    ids: dict[Outcome, list[str]] = {Outcome.TERMINATED: [], Outcome.REJECTED: [], Outcome.DUPLICATE: []}
    for result in results:
        if result.outcome is Outcome.CONFLICT:
            continue  # the dead-lettering logs it
        request_id = result.command.request_id
        if result.rejection is not None:
            request_id = f"{request_id}:{result.rejection.code.value}"
        ids[result.outcome].append(request_id)
    if not any(ids.values()):
        return
    counts = {outcome.value: len(found) for outcome, found in ids.items()}
    log.info(
        "decided %d termination requests: %d terminated, %d rejected, %d duplicate",
        sum(counts.values()),
        *counts.values(),
        extra={f"{outcome.value}_ce_ids": ",".join(found) for outcome, found in ids.items()},
    )
