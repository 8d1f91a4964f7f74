"""The double-refund guard (contract section 10): credit notes from the invoice app and terminations.

- A note is recorded. One for no subscription is never linked automatically.
- A termination with no credit note chosen, for a subscription with unused notes, that rules 1-3 of
  the policy allow a refund: the refund IS those notes (method and rule credit_note, auto-linked, the
  amount their sum), never credits; their sum above amount_paid (or not above zero), or a note in
  another currency, is credit_note_invalid. When rules 1-3 refuse, the notes stay unused.
- A termination that names a note the worker knows: the note must have the chosen amount, the
  request's currency and be for that subscription (or none), else credit_note_invalid.
- A note that arrives for a subscription already refunded as account credit changes nothing but is
  a conflict, reported once per note, for finance to reverse one of the two (section 8).

Whichever comes first, the note or the termination, a subscription is refunded once: by its notes,
or by credits with each later note a conflict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from worker.domain.account_facts import figure
from worker.domain.errors import ConflictingCreditNote
from worker.domain.money import Money
from worker.domain.never_twice import History, Rejection, RejectionCode, judge_request
from worker.domain.policy import (
    DEFAULT_POLICY,
    CreditNoteChoice,
    NoRefundReason,
    RefundDecision,
    RefundMethod,
    RefundPolicy,
    TerminationTerms,
    decide_refund,
)

REFUSING_REASONS = frozenset(
    {NoRefundReason.REFUND_DISABLED, NoRefundReason.NOTHING_PAID, NoRefundReason.OUTSIDE_CYCLE}
)
"""Rules 1-3 of the policy: they refuse any refund, so the subscription's notes stay unused."""


@dataclass(frozen=True, slots=True)
class InvoiceNote:
    """A credit note the invoice app sent (`credit-note-issued`)."""

    credit_note_id: str
    reseller_id: str
    account_id: str
    subscription_id: str | None
    amount: Money
    issued_at: datetime
    number: str
    """The invoice app's own number, text."""


@dataclass(frozen=True, slots=True)
class NoteFacts:
    note: InvoiceNote
    refund_id: str | None = None
    """The refund the note is (linked automatically or chosen by the operator); None while unused."""
    conflict: bool = False
    """Reported as a conflict with an account-credit refund: it will never be linked."""


@dataclass(frozen=True, slots=True)
class SubscriptionRefund:
    """How a terminated subscription was refunded; no refund at all: both None."""

    refund_id: str | None
    method: RefundMethod | None


@dataclass(frozen=True, slots=True)
class NoteLedger:
    """One reseller's invoice-app notes and terminated subscriptions, as the guard sees them."""

    reseller_id: str
    notes: Mapping[str, NoteFacts] = field(default_factory=dict)
    terminated: Mapping[str, SubscriptionRefund] = field(default_factory=dict)
    """By subscription_id."""

    def __post_init__(self) -> None:
        for name in ("notes", "terminated"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def unused_notes(self, subscription_id: str) -> list[InvoiceNote]:
        """The subscription's notes that back no refund and conflict with none, oldest first."""
        unused = [
            facts.note
            for facts in self.notes.values()
            if facts.note.subscription_id == subscription_id
            and facts.refund_id is None
            and not facts.conflict
        ]
        return sorted(unused, key=lambda note: (note.issued_at, note.credit_note_id))


@dataclass(frozen=True, slots=True)
class Recorded:
    """The note is kept, unused: a later termination of its subscription may be it."""

    credit_note_id: str


@dataclass(frozen=True, slots=True)
class AlreadyRecorded:
    """The same note again: nothing changes, no second conflict."""

    credit_note_id: str


@dataclass(frozen=True, slots=True)
class ConflictDetected:
    """`refund-conflict-detected`: the subscription was already refunded as account credit."""

    note: InvoiceNote
    refund_id: str


NoteOutcome = Recorded | AlreadyRecorded | ConflictDetected


@dataclass(frozen=True, slots=True)
class AutoLinked:
    """The termination's refund is the subscription's unused notes (`auto_linked: true`)."""

    decision: RefundDecision
    """Method and rule credit_note; `credit_note` is the first note, the amount the notes' sum."""
    notes: tuple[InvoiceNote, ...]


GuardedDecision = AutoLinked | RefundDecision | Rejection


def note_issued(ledger: NoteLedger, note: InvoiceNote) -> tuple[NoteOutcome, NoteLedger]:
    """Record a note from the invoice app; raises ConflictingCreditNote for a known id with other facts."""
    known = ledger.notes.get(note.credit_note_id)
    if known is not None:
        if known.note != note:
            raise ConflictingCreditNote(
                f"credit note {note.credit_note_id} is already recorded with other facts "
                f"({figure(known.note.amount.minor, known.note.amount.currency)}, "
                f"subscription {known.note.subscription_id})"
            )
        return AlreadyRecorded(note.credit_note_id), ledger
    refunded = ledger.terminated.get(note.subscription_id or "")
    if refunded is not None and refunded.method is RefundMethod.ACCOUNT_CREDIT and refunded.refund_id:
        notes = {**ledger.notes, note.credit_note_id: NoteFacts(note, conflict=True)}
        return ConflictDetected(note, refunded.refund_id), replace(ledger, notes=notes)
    notes = {**ledger.notes, note.credit_note_id: NoteFacts(note)}
    return Recorded(note.credit_note_id), replace(ledger, notes=notes)


def guard_termination(
    subscription_id: str,
    terms: TerminationTerms,
    ledger: NoteLedger,
    history: History,
    policy: RefundPolicy = DEFAULT_POLICY,
) -> GuardedDecision:
    """The termination's decision with the invoice app's notes in view (then the never-twice rules).
    The account comes before any other rule (contract section 7): a mismatch is never linked."""
    if history.account_mismatch is not None:
        return judge_request(terms, history, policy)
    if history.subscription_terminated or subscription_id in ledger.terminated:
        return judge_request(terms, replace(history, subscription_terminated=True), policy)
    chosen = terms.credit_note
    if chosen is not None:
        known = ledger.notes.get(chosen.credit_note_id)
        if known is None:
            return judge_request(terms, history, policy)
        mismatch = _named_mismatch(subscription_id, terms, chosen, known.note)
        if mismatch is not None:
            return Rejection(RejectionCode.CREDIT_NOTE_INVALID, mismatch)
        used = history.credit_note_used or known.refund_id is not None or known.conflict
        return judge_request(terms, replace(history, credit_note_used=used), policy)
    notes = ledger.unused_notes(subscription_id)
    if not notes:
        return judge_request(terms, history, policy)
    plain = decide_refund(terms, policy)
    if plain.no_refund_reason in REFUSING_REASONS:
        return plain
    return _linked(terms, notes, policy)


def record_termination(
    ledger: NoteLedger, subscription_id: str, refund_id: str | None, decision: GuardedDecision
) -> NoteLedger:
    """The ledger once the decision is stored; a rejection changes nothing."""
    if isinstance(decision, Rejection):
        return ledger
    plain = decision.decision if isinstance(decision, AutoLinked) else decision
    paid = refund_id if plain.refundable else None
    terminated = {**ledger.terminated, subscription_id: SubscriptionRefund(paid, plain.method)}
    notes = dict(ledger.notes)
    backing = [note.credit_note_id for note in decision.notes] if isinstance(decision, AutoLinked) else []
    if plain.credit_note is not None and plain.credit_note.credit_note_id in notes:
        backing.append(plain.credit_note.credit_note_id)
    for note_id in backing:
        notes[note_id] = replace(notes[note_id], refund_id=paid)
    return replace(ledger, notes=notes, terminated=terminated)


def _named_mismatch(
    subscription_id: str, terms: TerminationTerms, chosen: CreditNoteChoice, note: InvoiceNote
) -> str | None:
    currency = terms.amount_paid.currency
    if note.amount.currency != currency:
        return (
            f"credit note {note.credit_note_id} is in {note.amount.currency}, the subscription in {currency}"
        )
    if note.amount != chosen.amount:
        return f"credit note {note.credit_note_id} is for {note.amount}, not the {chosen.amount} chosen"
    if note.subscription_id not in (None, subscription_id):
        return f"credit note {note.credit_note_id} is for subscription {note.subscription_id}"
    return None


def _linked(terms: TerminationTerms, notes: Sequence[InvoiceNote], policy: RefundPolicy) -> GuardedDecision:
    paid = terms.amount_paid
    foreign = [note for note in notes if note.amount.currency != paid.currency]
    if foreign:
        first = foreign[0]
        detail = (
            f"credit note {first.credit_note_id} is in {first.amount.currency}, "
            f"the subscription in {paid.currency}"
        )
        return Rejection(RejectionCode.CREDIT_NOTE_INVALID, detail)
    total = sum(note.amount.minor for note in notes)
    ids = ", ".join(note.credit_note_id for note in notes)
    if total > paid.minor:
        detail = (
            f"credit notes {ids} sum to {figure(total, paid.currency)}, "
            f"more than the {figure(paid.minor, paid.currency)} paid for this cycle"
        )
        return Rejection(RejectionCode.CREDIT_NOTE_INVALID, detail)
    if total == 0:
        return Rejection(RejectionCode.CREDIT_NOTE_INVALID, f"credit notes {ids} sum to nothing")
    first = notes[0]
    as_one = CreditNoteChoice(first.credit_note_id, Money(total, paid.currency))
    decision = decide_refund(replace(terms, credit_note=as_one), policy)
    first_note = CreditNoteChoice(first.credit_note_id, first.amount)
    return AutoLinked(replace(decision, credit_note=first_note), tuple(notes))
