"""The rows and events a batch of credit-note outcomes writes, in input order. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.credit_notes import RefundConflictDetected
from schemas.topics import Topic
from worker.credit_notes.commands import CreditNoteCommand, NoteOutcome, NoteResult
from worker.db.inbox import inbox_row
from worker.domain.credit_note_guard import InvoiceNote
from worker.engine.outbox import OutboxEvent, derived_id

CONFLICT_KIND = "refund-conflict-detected"
"""derived_id's kind of a note's conflict: one per note, whichever ce_id brought it."""

_STORED = frozenset({NoteOutcome.RECORDED, NoteOutcome.REFUND_CONFLICT})


@dataclass
class NoteRows:
    """The rows a batch will insert, gathered before any is written."""

    now: datetime
    inbox: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)


def plan_result(rows: NoteRows, result: NoteResult) -> None:
    """What one outcome writes: its inbox row (unless it is a redelivery or a dead letter), the note
    when it is new, and the conflict's event."""
    command, outcome = result.command, result.outcome
    if outcome in (NoteOutcome.DUPLICATE, NoteOutcome.IDEMPOTENCY_CONFLICT, NoteOutcome.REDEFINED):
        return
    note = command.note
    rows.inbox.append(
        inbox_row(
            note.reseller_id,
            Topic.CREDIT_NOTE_ISSUED.value,
            command.ce_id,
            command.payload_sha256,
            outcome,
            command.partition,
            command.offset,
        )
    )
    if outcome not in _STORED:
        return
    conflict = outcome is NoteOutcome.REFUND_CONFLICT
    rows.notes.append(note_row(command, result.refund_id, conflict=conflict, now=rows.now))
    if conflict and result.refund_id is not None:
        rows.events.append(conflict_event(note, result.refund_id, rows.now))


def note_row(
    command: CreditNoteCommand, refund_id: str | None, *, conflict: bool, now: datetime
) -> dict[str, Any]:
    note = command.note
    return {
        "credit_note_id": note.credit_note_id,
        "reseller_id": note.reseller_id,
        "account_id": note.account_id,
        "subscription_id": note.subscription_id,
        "currency": note.amount.currency.code,
        "amount_minor": note.amount.minor,
        "number": note.number,
        "issued_at": note.issued_at,
        "ce_id": command.ce_id,
        "refund_id": None if conflict else refund_id,
        "conflict_refund_id": refund_id if conflict else None,
        "used_at": now if refund_id is not None else None,
    }


def conflict_event(note: InvoiceNote, refund_id: str, now: datetime) -> OutboxEvent:
    """`refund-conflict-detected`, its ce_id derived from the note: the same note never gives two."""
    if note.subscription_id is None:
        raise ValueError("a note for no subscription conflicts with no refund")  # note_issued never does
    data = RefundConflictDetected(
        subscription_id=note.subscription_id,
        refund_id=refund_id,
        credit_note_id=note.credit_note_id,
        amount=str(note.amount),
        currency=note.amount.currency.code,
        account_id=note.account_id,
        reseller_id=note.reseller_id,
        detected_at=now,
    )
    return OutboxEvent.of(derived_id(note.reseller_id, note.credit_note_id, CONFLICT_KIND), data, now)
