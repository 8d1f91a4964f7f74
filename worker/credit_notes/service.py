"""Applying a batch of credit notes from the invoice app in one database transaction, its applier for
the pipeline and the logging of its outcomes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.topics import Topic
from worker.credit_notes.commands import DEAD_LETTERED, CreditNoteCommand, NoteOutcome, NoteResult
from worker.credit_notes.plan import NoteRows, plan_result
from worker.credit_notes.store import backing_refunds, insert_all, subscription_refunds
from worker.db.bulk import ResellerKey
from worker.db.inbox import InboxTracking, Redelivery, inbox_tracking
from worker.db.invoice_notes import known_invoice_notes, lock_guarded_subscriptions
from worker.domain.credit_note_guard import (
    AlreadyRecorded,
    ConflictDetected,
    NoteFacts,
    NoteLedger,
    SubscriptionRefund,
    note_issued,
)
from worker.domain.errors import ConflictingCreditNote
from worker.engine.clock import utc_now
from worker.engine.failures import CreditNoteRedefined, IdempotencyConflict, PoisonMessage
from worker.engine.pipeline import Applied, Apply

log = logging.getLogger("worker.decisions")

_REDELIVERY_OUTCOMES = {
    Redelivery.DUPLICATE: NoteOutcome.DUPLICATE,
    Redelivery.CONFLICT: NoteOutcome.IDEMPOTENCY_CONFLICT,
}


async def apply_credit_note_batch(
    conn: AsyncConnection, commands: Sequence[CreditNoteCommand], *, now: datetime
) -> list[NoteResult]:
    """Record every note, in order, reporting each conflict once; one result per command, in order."""
    subscriptions = {_subscription(c) for c in commands if c.note.subscription_id is not None}
    note_ids = {_note_key(c) for c in commands}
    # First, so that every look-up below sees a termination of these subscriptions that committed
    # while this batch waited (worker/db/invoice_notes.py says why).
    await lock_guarded_subscriptions(conn, subscriptions)
    seen = await inbox_tracking(conn, Topic.CREDIT_NOTE_ISSUED.value, {_ce_id(c) for c in commands})
    known = await known_invoice_notes(conn, note_ids)
    refunded = await subscription_refunds(conn, subscriptions)
    backing = await backing_refunds(conn, note_ids)

    ledgers: dict[str, NoteLedger] = {}
    rows = NoteRows(now=now)
    results: list[NoteResult] = []
    for command in commands:
        reseller = command.note.reseller_id
        ledger = ledgers.get(reseller) or _ledger(reseller, known, refunded)
        result, ledgers[reseller] = _judge(command, seen, ledger, backing)
        results.append(result)
        if result.outcome not in DEAD_LETTERED and result.outcome is not NoteOutcome.DUPLICATE:
            seen.track(_ce_id(command), command.payload_sha256)
        plan_result(rows, result)
    await insert_all(conn, rows)
    return results


def _ledger(
    reseller: str, known: dict[ResellerKey, NoteFacts], refunded: dict[ResellerKey, SubscriptionRefund]
) -> NoteLedger:
    return NoteLedger(
        reseller,
        notes={note: facts for (r, note), facts in known.items() if r == reseller},
        terminated={subscription: how for (r, subscription), how in refunded.items() if r == reseller},
    )


def _judge(
    command: CreditNoteCommand, seen: InboxTracking, ledger: NoteLedger, backing: dict[ResellerKey, str]
) -> tuple[NoteResult, NoteLedger]:
    redelivery = seen.redelivery(_ce_id(command), command.payload_sha256)
    if redelivery is not None:
        return NoteResult(command, _REDELIVERY_OUTCOMES[redelivery]), ledger
    try:
        outcome, after = note_issued(ledger, command.note)
    except ConflictingCreditNote as redefined:
        return NoteResult(command, NoteOutcome.REDEFINED, detail=str(redefined)), ledger
    if isinstance(outcome, AlreadyRecorded):
        return NoteResult(command, NoteOutcome.ALREADY_RECORDED), ledger
    if isinstance(outcome, ConflictDetected):
        return NoteResult(command, NoteOutcome.REFUND_CONFLICT, refund_id=outcome.refund_id), after
    # Named by a termination before it arrived: it already is that refund.
    refund_id = backing.get(_note_key(command))
    if refund_id is not None:
        facts = replace(after.notes[command.note.credit_note_id], refund_id=refund_id)
        after = replace(after, notes={**after.notes, command.note.credit_note_id: facts})
    return NoteResult(command, NoteOutcome.RECORDED, refund_id=refund_id), after


def _subscription(command: CreditNoteCommand) -> ResellerKey:
    return (command.note.reseller_id, command.note.subscription_id or "")


def _note_key(command: CreditNoteCommand) -> ResellerKey:
    return (command.note.reseller_id, command.note.credit_note_id)


def _ce_id(command: CreditNoteCommand) -> ResellerKey:
    return (command.note.reseller_id, command.ce_id)


def credit_note_applier(
    on_outcomes: Callable[[Sequence[NoteResult]], None],
    clock: Callable[[], datetime] = utc_now,
) -> Apply[AsyncConnection, CreditNoteCommand]:
    """`on_outcomes` sees the results once committed (metrics); each is logged then too. `clock` says
    when each batch is decided: a conflict's `detected_at`."""

    def committed(results: Sequence[NoteResult]) -> None:
        _log_outcomes(results)
        on_outcomes(results)

    async def apply(conn: AsyncConnection, commands: Sequence[CreditNoteCommand]) -> Applied:
        results = await apply_credit_note_batch(conn, commands, now=clock())
        poison: list[tuple[int, PoisonMessage]] = [
            (index, _dead_letter(result))
            for index, result in enumerate(results)
            if result.outcome in DEAD_LETTERED
        ]
        return Applied(poison, on_commit=lambda: committed(results))

    return apply


def _dead_letter(result: NoteResult) -> PoisonMessage:
    if result.outcome is NoteOutcome.REDEFINED:
        return CreditNoteRedefined(result.detail or "the credit note was recorded with other facts")
    return IdempotencyConflict.reused(result.command.ce_id, "credit note")


def _log_outcomes(results: Sequence[NoteResult]) -> None:
    """One line per note, once it is committed."""
    for result in results:
        if result.outcome in DEAD_LETTERED:
            continue  # the dead-lettering logs it
        note = result.command.note
        fields = {
            "outcome": result.outcome.value,
            "credit_note_id": note.credit_note_id,
            "subscription_id": note.subscription_id,
            "account_id": note.account_id,
            "ce_id": result.command.ce_id,
            "amount": str(note.amount),
            "currency": note.amount.currency.code,
            "refund_id": result.refund_id,
        }
        log.info("credit note %s", result.outcome.value, extra=fields)
