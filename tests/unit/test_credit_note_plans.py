"""The pure plans of the double-refund guard, without a database: what a credit-note outcome writes,
and what a termination refunded by the invoice app's notes writes."""

from __future__ import annotations

from datetime import UTC, date, datetime

from worker.credit_notes.commands import CreditNoteCommand, NoteOutcome, NoteResult
from worker.credit_notes.plan import NoteRows, plan_result
from worker.domain.credit_note_guard import (
    AutoLinked,
    InvoiceNote,
    NoteLedger,
    guard_termination,
    note_issued,
)
from worker.domain.money import Currency, Money
from worker.domain.never_twice import History
from worker.domain.policy import Cycle, TerminationTerms
from worker.terminations.commands import TerminationCommand
from worker.terminations.plan import BatchRows, record_termination

NOW = datetime(2021, 4, 20, 4, tzinfo=UTC)
SGD = Currency.of("SGD")


def note(note_id: str, minor: int, day: int = 11) -> InvoiceNote:
    return InvoiceNote(
        note_id, "res-1", "acc-1", "sub-1", Money(minor, SGD), datetime(2021, 4, day, tzinfo=UTC), "CN/1"
    )


def command(invoice_note: InvoiceNote, ce_id: str = "inv-ce-1") -> CreditNoteCommand:
    return CreditNoteCommand(ce_id=ce_id, payload_sha256=b"digest", note=invoice_note)


def test_a_conflict_stores_the_note_as_in_conflict_and_plans_one_event_named_by_the_note() -> None:
    rows, again = NoteRows(now=NOW), NoteRows(now=NOW)
    plan_result(
        rows, NoteResult(command(note("INV-1", 11000)), NoteOutcome.REFUND_CONFLICT, refund_id="rf-1")
    )
    plan_result(
        again,
        NoteResult(command(note("INV-1", 11000), "inv-ce-2"), NoteOutcome.REFUND_CONFLICT, refund_id="rf-1"),
    )

    (stored,) = rows.notes
    assert (stored["refund_id"], stored["conflict_refund_id"], stored["used_at"]) == (None, "rf-1", NOW)
    (conflict,) = rows.events
    assert conflict.topic == "refund-conflict-detected"
    assert conflict.data["amount"] == "110.00"
    assert again.events[0].event_id == conflict.event_id  # whichever ce_id brought the note


def test_a_recorded_note_is_stored_unused_and_publishes_nothing() -> None:
    rows = NoteRows(now=NOW)
    plan_result(rows, NoteResult(command(note("INV-1", 11000)), NoteOutcome.RECORDED))
    (stored,) = rows.notes
    assert (stored["refund_id"], stored["conflict_refund_id"], stored["used_at"]) == (None, None, None)
    assert rows.events == []
    assert len(rows.inbox) == 1


def test_a_redelivery_or_a_dead_letter_writes_nothing() -> None:
    rows = NoteRows(now=NOW)
    for outcome in (NoteOutcome.DUPLICATE, NoteOutcome.IDEMPOTENCY_CONFLICT, NoteOutcome.REDEFINED):
        plan_result(rows, NoteResult(command(note("INV-1", 11000)), outcome))
    assert (rows.inbox, rows.notes, rows.events) == ([], [], [])


def test_the_same_note_again_plans_only_its_inbox_row() -> None:
    rows = NoteRows(now=NOW)
    plan_result(rows, NoteResult(command(note("INV-1", 11000)), NoteOutcome.ALREADY_RECORDED))
    assert (len(rows.inbox), rows.notes, rows.events) == (1, [], [])


def test_a_refund_by_linked_notes_backs_each_note_changes_no_credits_and_lists_them() -> None:
    first, second = note("INV-1", 6000), note("INV-2", 4000, day=12)
    ledger = note_issued(note_issued(NoteLedger("res-1"), second)[1], first)[1]
    terms = TerminationTerms(
        cycle=Cycle(date(2021, 4, 1), 12), amount_paid=Money(12000, SGD), requested_at=NOW, allow_refund=True
    )
    linked = guard_termination("sub-1", terms, ledger, History())
    assert isinstance(linked, AutoLinked)
    termination = TerminationCommand(
        "req-1", b"digest", "sub-1", "acc-1", "res-1", "operator", "moving", terms
    )
    batch = BatchRows(now=NOW)

    record_termination(batch, termination, linked.decision, {}, {}, linked.notes)

    assert [(row["credit_note_id"], row["amount_minor"]) for row in batch.credit_notes] == [
        ("INV-1", 6000),
        ("INV-2", 4000),
    ]
    assert [row["credit_note_id"] for row in batch.used_invoice_notes] == ["INV-1", "INV-2"]
    assert batch.ledger == []
    refund, terminated = batch.events
    assert (refund.topic, terminated.topic) == ("refund-issued", "subscription-terminated")
    assert (refund.data["auto_linked"], refund.data["amount"], refund.data["credit_note"]["amount"]) == (
        True,
        "100.00",
        "60.00",
    )
    assert [n["credit_note_id"] for n in refund.data["credit_notes"]] == ["INV-1", "INV-2"]
