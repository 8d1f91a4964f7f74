"""What the credit-note use case is given (a validated `credit-note-issued`) and what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.domain.credit_note_guard import InvoiceNote


@dataclass(frozen=True, slots=True)
class CreditNoteCommand:
    """A validated credit note from the invoice app, with where it came from."""

    ce_id: str
    payload_sha256: bytes
    note: InvoiceNote
    partition: int | None = None
    offset: int | None = None


class NoteOutcome(StrEnum):
    RECORDED = "recorded"
    """Kept, unused (or already backing the refund of a termination that named it)."""
    ALREADY_RECORDED = "already_recorded"
    """Its credit_note_id was recorded before with the same facts (another ce_id): nothing changes."""
    REFUND_CONFLICT = "refund_conflict"
    """Its subscription was already refunded as account credit: `refund-conflict-detected`."""
    DUPLICATE = "duplicate"
    """Its ce_id was handled before with the same payload."""
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    """Its ce_id was handled before with another payload: a dead letter."""
    REDEFINED = "redefined"
    """Its credit_note_id was recorded before with another amount, currency or subscription: a dead letter."""


DEAD_LETTERED = frozenset({NoteOutcome.IDEMPOTENCY_CONFLICT, NoteOutcome.REDEFINED})


@dataclass(frozen=True, slots=True)
class NoteResult:
    command: CreditNoteCommand
    outcome: NoteOutcome
    refund_id: str | None = None
    """The refund the note backs (recorded after a termination named it), or the one it conflicts with."""
    detail: str | None = None
    """Why it is a dead letter."""
