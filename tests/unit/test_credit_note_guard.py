"""The double-refund guard of contract section 10, one example per rule."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from worker.domain.credit_note_guard import (
    AlreadyRecorded,
    AutoLinked,
    ConflictDetected,
    GuardedDecision,
    InvoiceNote,
    NoteLedger,
    Recorded,
    guard_termination,
    note_issued,
    record_termination,
)
from worker.domain.errors import ConflictingCreditNote
from worker.domain.money import Currency, Money
from worker.domain.never_twice import History, Rejection, RejectionCode
from worker.domain.ownership import AccountMismatch
from worker.domain.policy import CreditNoteChoice, Cycle, RefundDecision, RefundMethod, Rule, TerminationTerms

SGD = Currency.of("SGD")
JPY = Currency.of("JPY")
SUB = "sub-sip-yearly-0417"
EMPTY = NoteLedger("res-b3")


def note(note_id: str = "INV-CN-7731", amount: int | Money = 11000, **changes: Any) -> InvoiceNote:
    values: dict[str, Any] = {
        "credit_note_id": note_id,
        "reseller_id": "res-b3",
        "account_id": "acc-1002",
        "subscription_id": SUB,
        "amount": amount if isinstance(amount, Money) else Money(amount, SGD),
        "issued_at": datetime(2021, 4, 18, 1, 15, tzinfo=UTC),
        "number": "CN/2021/0419",
        **changes,
    }
    return InvoiceNote(**values)


def terms(**changes: Any) -> TerminationTerms:
    values: dict[str, Any] = {
        "cycle": Cycle(date(2021, 4, 1), 12),
        "amount_paid": Money(12000, SGD),
        "requested_at": datetime(2021, 4, 17, 2, tzinfo=UTC),
        "allow_refund": True,
        "timezone": "Asia/Singapore",
        **changes,
    }
    return TerminationTerms(**values)


def ledger_with(*notes: InvoiceNote) -> NoteLedger:
    ledger = EMPTY
    for each in notes:
        ledger = note_issued(ledger, each)[1]
    return ledger


def guard(ledger: NoteLedger, **changes: Any) -> GuardedDecision:
    return guard_termination(SUB, terms(**changes), ledger, History())


def linked(decision: GuardedDecision) -> AutoLinked:
    assert isinstance(decision, AutoLinked), decision
    return decision


def rejected(decision: GuardedDecision) -> tuple[RejectionCode, str]:
    assert isinstance(decision, Rejection), decision
    return decision.code, decision.detail


# --- recording ------------------------------------------------------------------------------------


def test_a_note_for_a_subscription_not_terminated_is_recorded_unused() -> None:
    outcome, ledger = note_issued(EMPTY, note())
    assert outcome == Recorded("INV-CN-7731")
    assert ledger.unused_notes(SUB) == [note()]


def test_a_note_for_no_subscription_is_recorded_and_never_linked_automatically() -> None:
    ledger = ledger_with(note(subscription_id=None))
    assert "INV-CN-7731" in ledger.notes
    assert isinstance(guard(ledger), RefundDecision)


def test_the_same_note_again_changes_nothing_and_another_with_its_id_is_an_error() -> None:
    ledger = ledger_with(note())
    assert note_issued(ledger, note()) == (AlreadyRecorded("INV-CN-7731"), ledger)
    with pytest.raises(ConflictingCreditNote, match="INV-CN-7731 is already recorded"):
        note_issued(ledger, note(amount=500))


# --- auto-linking ---------------------------------------------------------------------------------


def test_a_termination_from_another_account_is_refused_before_its_notes_are_linked() -> None:
    mismatch = AccountMismatch(SUB, "acc-other", "acc-1002")
    decision = guard_termination(SUB, terms(), ledger_with(note()), History(account_mismatch=mismatch))
    assert rejected(decision)[0] is RejectionCode.ACCOUNT_MISMATCH


def test_the_subscriptions_unused_notes_are_the_refund_never_credits() -> None:
    first, second = note("INV-1", 6000), note("INV-2", 4000, issued_at=datetime(2021, 4, 19, tzinfo=UTC))
    decision = linked(guard(ledger_with(second, first)))
    assert (decision.decision.method, decision.decision.rule) == (RefundMethod.CREDIT_NOTE, Rule.CREDIT_NOTE)
    assert decision.decision.amount == Money(10000, SGD)
    assert decision.decision.policy_amount == Money(11000, SGD)
    assert decision.decision.credit_note == CreditNoteChoice("INV-1", Money(6000, SGD))
    assert decision.notes == (first, second)
    assert not decision.decision.credits_account


def test_notes_summing_above_what_was_paid_are_credit_note_invalid() -> None:
    code, detail = rejected(guard(ledger_with(note("INV-1", 8000), note("INV-2", 4001))))
    assert code is RejectionCode.CREDIT_NOTE_INVALID
    assert (
        detail == "credit notes INV-1, INV-2 sum to 120.01 SGD, more than the 120.00 SGD paid for this cycle"
    )


def test_a_note_in_another_currency_is_credit_note_invalid() -> None:
    code, detail = rejected(guard(ledger_with(note(amount=Money(1100, JPY)))))
    assert (code, detail) == (
        RejectionCode.CREDIT_NOTE_INVALID,
        "credit note INV-CN-7731 is in JPY, the subscription in SGD",
    )


@pytest.mark.parametrize(
    "refusing",
    [{"allow_refund": False}, {"is_trial": True}, {"requested_at": datetime(2022, 4, 2, tzinfo=UTC)}],
)
def test_when_rules_1_to_3_refuse_the_notes_stay_unused(refusing: dict[str, Any]) -> None:
    ledger = ledger_with(note())
    decision = guard(ledger, **refusing)
    assert isinstance(decision, RefundDecision)
    assert not decision.refundable
    assert record_termination(ledger, SUB, None, decision).notes["INV-CN-7731"].refund_id is None


def test_linked_notes_back_the_refund_and_are_not_used_again() -> None:
    ledger = ledger_with(note())
    after = record_termination(ledger, SUB, "rf-1", guard(ledger))
    assert after.notes["INV-CN-7731"].refund_id == "rf-1"
    assert after.unused_notes(SUB) == []
    assert rejected(guard_termination(SUB, terms(), after, History()))[0] is RejectionCode.ALREADY_TERMINATED


# --- a named note ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "says"),
    [
        (note(amount=9000), "credit note INV-CN-7731 is for 90.00, not the 110.00 chosen"),
        (note(amount=Money(11000, JPY)), "credit note INV-CN-7731 is in JPY, the subscription in SGD"),
        (note(subscription_id="sub-other"), "credit note INV-CN-7731 is for subscription sub-other"),
    ],
)
def test_a_named_known_note_must_match_amount_currency_and_subscription(
    known: InvoiceNote, says: str
) -> None:
    chosen = CreditNoteChoice("INV-CN-7731", Money(11000, SGD))
    assert rejected(guard(ledger_with(known), credit_note=chosen)) == (
        RejectionCode.CREDIT_NOTE_INVALID,
        says,
    )


@pytest.mark.parametrize("subscription_id", [SUB, None])
def test_a_named_known_note_that_matches_is_the_refund(subscription_id: str | None) -> None:
    ledger = ledger_with(note(subscription_id=subscription_id))
    chosen = CreditNoteChoice("INV-CN-7731", Money(11000, SGD))
    decision = guard(ledger, credit_note=chosen)
    assert isinstance(decision, RefundDecision)
    assert (decision.method, decision.amount) == (RefundMethod.CREDIT_NOTE, Money(11000, SGD))
    assert record_termination(ledger, SUB, "rf-1", decision).notes["INV-CN-7731"].refund_id == "rf-1"


def test_a_named_note_the_worker_does_not_know_is_judged_as_before() -> None:
    chosen = CreditNoteChoice("INV-unknown", Money(5000, SGD))
    decision = guard(EMPTY, credit_note=chosen)
    assert isinstance(decision, RefundDecision)
    assert decision.amount == Money(5000, SGD)


# --- a note after an account-credit refund --------------------------------------------------------


def test_a_note_after_an_account_credit_refund_is_a_conflict_once_and_changes_nothing() -> None:
    refunded = record_termination(EMPTY, SUB, "rf-1", guard(EMPTY))
    outcome, after = note_issued(refunded, note())
    assert outcome == ConflictDetected(note(), "rf-1")
    assert after.notes["INV-CN-7731"].conflict
    assert after.terminated == refunded.terminated
    assert note_issued(after, note()) == (AlreadyRecorded("INV-CN-7731"), after)


def test_a_note_after_a_termination_without_refund_is_only_recorded() -> None:
    ended = record_termination(EMPTY, SUB, None, guard(EMPTY, allow_refund=False))
    assert note_issued(ended, note())[0] == Recorded("INV-CN-7731")
