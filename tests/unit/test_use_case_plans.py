"""The pure parts of a use case, without a database: the inbox's judgement of a redelivery and the
rows and events a termination decision plans."""

from __future__ import annotations

from datetime import UTC, date, datetime

from worker.db.inbox import InboxTracking, Redelivery
from worker.domain.balance import BalanceCursor
from worker.domain.money import Currency, Money
from worker.domain.policy import Cycle, Rule, TerminationTerms, decide_refund
from worker.terminations.commands import TerminationCommand
from worker.terminations.plan import BatchRows, own_note_numbers, record_termination

NOW = datetime(2021, 4, 12, 9, 30, tzinfo=UTC)


def test_a_ce_id_seen_before_is_a_duplicate_with_its_payload_and_a_conflict_with_another() -> None:
    tracking = InboxTracking({("res-a", "seen"): b"digest"})
    assert tracking.redelivery(("res-a", "new"), b"digest") is None
    assert tracking.redelivery(("res-a", "seen"), b"digest") is Redelivery.DUPLICATE
    assert tracking.redelivery(("res-a", "seen"), b"other") is Redelivery.CONFLICT
    tracking.track(("res-a", "new"), b"digest")
    assert tracking.redelivery(("res-a", "new"), b"other") is Redelivery.CONFLICT  # a later copy in the batch


def test_the_same_ce_id_from_another_reseller_is_neither_a_duplicate_nor_a_conflict() -> None:
    tracking = InboxTracking({("res-a", "ce-1"): b"digest"})
    assert tracking.redelivery(("res-b", "ce-1"), b"digest") is None
    assert tracking.redelivery(("res-b", "ce-1"), b"other") is None


def test_an_account_credit_plans_its_own_numbered_note_a_ledger_row_and_events_in_order() -> None:
    sgd = Currency.of("SGD")
    terms = TerminationTerms(
        cycle=Cycle(start=date(2021, 4, 1), months=12),
        amount_paid=Money.parse("120.00", sgd),
        requested_at=NOW,
        allow_refund=True,
    )
    decision = decide_refund(terms)
    assert decision.rule is Rule.FULL_WITHIN_WINDOW
    assert decision.issues_own_credit_note
    command = TerminationCommand(
        request_id="req-1",
        payload_sha256=b"digest",
        subscription_id="sub-1",
        account_id="acc-1",
        reseller_id="res-1",
        requested_by="operator",
        reason="moving",
        terms=terms,
    )
    batch = BatchRows(now=NOW)
    numbers = own_note_numbers([(command, decision)], {"res-1": 42})
    balances = {("res-1", "acc-1", "SGD"): BalanceCursor(balance=500, version=3)}

    record_termination(batch, command, decision, numbers, balances)

    (note,) = batch.credit_notes
    assert (note["number"], note["display_number"], note["issued_by_worker"]) == (42, "CN-res-1-000042", True)
    (ledger,) = batch.ledger
    assert (ledger["delta_minor"], ledger["balance_minor"], ledger["balance_version"]) == (12000, 12500, 4)
    assert [event.topic for event in batch.events] == [
        "refund-issued",
        "credits-updated",
        "subscription-terminated",
    ]
