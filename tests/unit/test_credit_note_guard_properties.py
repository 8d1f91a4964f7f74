"""Properties of the double-refund guard (contract section 10) over any order of notes and terminations.

Every story sends, for two subscriptions, invoice-app notes (some redelivered, some for no
subscription, now and then in another currency or too large) and termination requests (retried with
new ce_ids, some that rules 1-3 refuse), in any order. Whichever comes first, a note is linked or in
conflict, never both, and a subscription is never refunded twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.credit_note_guard import (
    AutoLinked,
    ConflictDetected,
    InvoiceNote,
    NoteLedger,
    guard_termination,
    note_issued,
    record_termination,
)
from worker.domain.money import Currency, Money
from worker.domain.never_twice import History, Rejection
from worker.domain.policy import Cycle, RefundDecision, RefundMethod, TerminationTerms

SGD = Currency.of("SGD")
JPY = Currency.of("JPY")
SUBSCRIPTIONS = ["sub-1", "sub-2"]
PAID = 12000
AT = datetime(2021, 4, 17, tzinfo=UTC)


@dataclass(frozen=True)
class Note:
    number: int
    """Its facts follow from it (see invoice_note), so the same number again is a redelivery."""


@dataclass(frozen=True)
class Terminate:
    subscription_id: str
    allow_refund: bool


steps = st.lists(
    st.one_of(
        st.builds(Note, st.integers(min_value=1, max_value=6)),
        st.builds(Terminate, st.sampled_from(SUBSCRIPTIONS), st.sampled_from([True, True, False])),
    ),
    max_size=20,
)


@dataclass
class Run:
    ledger: NoteLedger
    refunds: list[tuple[str, RefundMethod]]
    linked: Counter[str]
    conflicts: Counter[str]


def invoice_note(step: Note) -> InvoiceNote:
    # sub-2: INV-2 and INV-4 (together above what was paid); sub-1: INV-1 and INV-3 (in JPY);
    # INV-5 and INV-6 for no subscription.
    subscription = SUBSCRIPTIONS[step.number % 2] if step.number <= 4 else None
    amount = Money(3000 * step.number, JPY if step.number == 3 else SGD)
    return InvoiceNote(
        f"INV-{step.number}",
        "res-1",
        "acc-1",
        subscription,
        amount,
        AT + timedelta(step.number),
        f"N{step.number}",
    )


def play(story: list[Note | Terminate]) -> Run:
    run = Run(NoteLedger("res-1"), [], Counter(), Counter())
    for number, step in enumerate(story):
        if isinstance(step, Note):
            outcome, run.ledger = note_issued(run.ledger, invoice_note(step))
            if isinstance(outcome, ConflictDetected):
                run.conflicts[outcome.note.credit_note_id] += 1
            continue
        terms = TerminationTerms(Cycle(date(2021, 4, 1), 12), Money(PAID, SGD), AT, step.allow_refund)
        decision = guard_termination(step.subscription_id, terms, run.ledger, History())
        refund_id = f"rf-{number}"
        run.ledger = record_termination(run.ledger, step.subscription_id, refund_id, decision)
        if isinstance(decision, AutoLinked):
            run.refunds.append((step.subscription_id, RefundMethod.CREDIT_NOTE))
            run.linked.update(note.credit_note_id for note in decision.notes)
        elif isinstance(decision, RefundDecision) and decision.refundable and decision.method is not None:
            run.refunds.append((step.subscription_id, decision.method))
        else:
            assert isinstance(decision, Rejection | RefundDecision)
    return run


@settings(max_examples=500, deadline=None)
@given(story=steps)
def test_a_note_is_never_both_linked_and_in_conflict_and_conflicts_once(
    story: list[Note | Terminate],
) -> None:
    run = play(story)
    assert not set(run.linked) & set(run.conflicts)
    assert all(count == 1 for count in run.linked.values())
    assert all(count == 1 for count in run.conflicts.values())
    for note_id, facts in run.ledger.notes.items():
        assert not (facts.refund_id is not None and facts.conflict), note_id


@settings(max_examples=500, deadline=None)
@given(story=steps)
def test_a_subscription_is_never_refunded_twice_nor_by_credits_and_a_note(
    story: list[Note | Terminate],
) -> None:
    run = play(story)
    per_subscription = Counter(subscription for subscription, _ in run.refunds)
    assert all(count == 1 for count in per_subscription.values())
    credited = {subscription for subscription, method in run.refunds if method is RefundMethod.ACCOUNT_CREDIT}
    for facts in run.ledger.notes.values():
        if facts.note.subscription_id in credited:
            # Any note of a subscription refunded as credits came after it: a conflict, never linked.
            assert facts.conflict
            assert facts.refund_id is None


@settings(max_examples=300, deadline=None)
@given(story=steps)
def test_note_before_or_after_the_termination_gives_linking_or_exactly_one_conflict(
    story: list[Note | Terminate],
) -> None:
    run = play(story)
    refunded = dict(run.refunds)
    for facts in run.ledger.notes.values():
        subscription = facts.note.subscription_id
        if subscription is None or subscription not in refunded:
            continue
        if refunded[subscription] is RefundMethod.ACCOUNT_CREDIT:
            assert run.conflicts[facts.note.credit_note_id] == 1
        else:
            # Refunded by its notes: a note then is linked, or came after (recorded, unused).
            assert run.conflicts[facts.note.credit_note_id] == 0
