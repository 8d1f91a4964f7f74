"""From the contract's input models (schemas/) to what the refund rules take (worker/domain). No I/O.

schemas/ has already checked the wire format (a known currency, amounts within its digits, an IANA
zone), so these constructors refuse nothing a valid event holds; should one ever refuse, its
DomainError is poison like any invalid message (worker/engine/failures.py).
"""

from __future__ import annotations

from schemas.credit_notes import CreditNoteIssued
from schemas.inputs import CreditNoteRequest, TerminationRequested
from worker.domain.credit_note_guard import InvoiceNote
from worker.domain.money import Currency, Money
from worker.domain.policy import CreditNoteChoice, Cycle, TerminationTerms


def termination_terms(request: TerminationRequested) -> TerminationTerms:
    """What the refund policy needs, with `Money` values in the subscription's currency."""
    currency = Currency.of(request.currency)
    return TerminationTerms(
        cycle=Cycle(request.cycle_start, request.cycle_months),
        amount_paid=Money.parse(request.amount_paid, currency),
        requested_at=request.requested_at,
        allow_refund=request.allow_refund,
        timezone=request.timezone,
        is_trial=request.is_trial,
        credit_note=_credit_note_choice(request.credit_note, currency),
    )


def _credit_note_choice(note: CreditNoteRequest | None, currency: Currency) -> CreditNoteChoice | None:
    if note is None:
        return None
    return CreditNoteChoice(note.credit_note_id, Money.parse(note.amount, currency))


def invoice_note(issued: CreditNoteIssued) -> InvoiceNote:
    """A credit note from the invoice app as the double-refund guard sees it."""
    return InvoiceNote(
        credit_note_id=issued.credit_note_id,
        reseller_id=issued.reseller_id,
        account_id=issued.account_id,
        subscription_id=issued.subscription_id,
        amount=Money.parse(issued.amount, Currency.of(issued.currency)),
        issued_at=issued.issued_at,
        number=issued.number,
    )
