"""The termination's events are built as plain dicts (issue 13), not through the pydantic models: for
a range of decisions, each event's data validates as its model and dumps to the very same JSON, and
its key is the one the model gives."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import OUTPUT_MODELS, message_key
from schemas.topics import Topic
from worker.domain.balance import BalanceCursor
from worker.domain.credit_note_guard import (
    AutoLinked,
    InvoiceNote,
    NoteLedger,
    guard_termination,
    note_issued,
)
from worker.domain.money import Currency, Money
from worker.domain.never_twice import History, Rejection, RejectionCode
from worker.domain.policy import CreditNoteChoice, Cycle, RefundDecision, TerminationTerms
from worker.engine.outbox_events import OutboxEvent
from worker.terminations.commands import TerminationCommand
from worker.terminations.events import rejected_event
from worker.terminations.plan import BatchRows, account_key, record_termination

CURRENCIES = ("SGD", "JPY", "BHD", "USD")


def _check(event: OutboxEvent) -> None:
    model = OUTPUT_MODELS[Topic(event.topic)]
    validated = model.model_validate_json(event.value)
    assert validated.model_dump(mode="json") == orjson.loads(event.value)
    assert message_key(validated).decode() == event.key


@st.composite
def terminations(draw: st.DrawFn) -> tuple[TerminationCommand, datetime]:
    currency = Currency.of(draw(st.sampled_from(CURRENCIES)))
    paid = draw(st.integers(min_value=0, max_value=10**9))
    start = date(2021, 1, 1) + timedelta(days=draw(st.integers(0, 900)))
    offset = timezone(timedelta(hours=draw(st.sampled_from([0, 8, -5]))))
    requested = datetime(start.year, start.month, start.day, tzinfo=offset) + timedelta(
        days=draw(st.one_of(st.integers(0, 13), st.integers(0, 400))),
        microseconds=draw(st.integers(0, 999_999)),
    )
    note = None
    if draw(st.booleans()):
        note = CreditNoteChoice(draw(st.sampled_from(["CN-1", "INV/2021/7"])), Money(paid // 3, currency))
    terms = TerminationTerms(
        cycle=Cycle(start, draw(st.sampled_from([1, 3, 12, 24]))),
        amount_paid=Money(paid, currency),
        requested_at=requested,
        allow_refund=draw(st.sampled_from([True, True, True, False])),
        is_trial=draw(st.sampled_from([False, False, False, True])),
        credit_note=note,
    )
    reseller = draw(st.sampled_from(["res-1", "rés-042"]))
    command = TerminationCommand("req-1", b"d", "sub-1", "acc-1", reseller, "operator", "moving", terms)
    decided = requested + timedelta(
        seconds=draw(st.integers(0, 86_400)), microseconds=draw(st.integers(0, 1))
    )
    return command, decided.astimezone(UTC)


def _record(
    command: TerminationCommand, decision: RefundDecision, now: datetime, linked: tuple[InvoiceNote, ...] = ()
) -> BatchRows:
    batch = BatchRows(now=now)
    balances = {account_key(command, decision.amount.currency.code): BalanceCursor(500, 3)}
    record_termination(
        batch, command, decision, {("res-1", "req-1"): 7, ("rés-042", "req-1"): 1}, balances, linked
    )
    return batch


@settings(max_examples=300, deadline=None)
@given(terminations())
def test_every_event_of_a_decided_termination_is_what_its_model_would_publish(
    drawn: tuple[TerminationCommand, datetime],
) -> None:
    command, now = drawn
    verdict = guard_termination(
        command.subscription_id, command.terms, NoteLedger(command.reseller_id), History()
    )
    if isinstance(verdict, Rejection):
        _check(rejected_event(command, verdict, now))
        return
    decision = verdict.decision if isinstance(verdict, AutoLinked) else verdict
    batch = _record(command, decision, now)
    assert batch.events
    for event in batch.events:
        _check(event)


def test_a_refund_by_linked_notes_lists_them_as_its_model_would() -> None:
    sgd = Currency.of("SGD")
    now = datetime(2021, 4, 20, 4, 0, 0, 250, tzinfo=UTC)
    first = InvoiceNote(
        "INV-1", "res-1", "acc-1", "sub-1", Money(6000, sgd), datetime(2021, 4, 11, tzinfo=UTC), "CN/1"
    )
    second = InvoiceNote(
        "INV-2", "res-1", "acc-1", "sub-1", Money(4000, sgd), datetime(2021, 4, 12, 1, tzinfo=UTC), "CN/2"
    )
    ledger = note_issued(note_issued(NoteLedger("res-1"), second)[1], first)[1]
    terms = TerminationTerms(Cycle(date(2021, 4, 1), 12), Money(12000, sgd), now, allow_refund=True)
    command = TerminationCommand("req-1", b"d", "sub-1", "acc-1", "res-1", "operator", "moving", terms)
    linked = guard_termination("sub-1", terms, ledger, History())
    assert isinstance(linked, AutoLinked)

    batch = _record(command, linked.decision, now, linked.notes)

    refund = next(event for event in batch.events if event.topic == "refund-issued")
    assert refund.data["credit_notes"][1]["issued_at"] == "2021-04-12T01:00:00Z"
    for event in batch.events:
        _check(event)


def test_a_rejection_is_what_its_model_would_publish() -> None:
    now = datetime(2021, 4, 20, tzinfo=UTC)
    terms = TerminationTerms(
        Cycle(date(2021, 4, 1), 12), Money(100, Currency.of("JPY")), now, allow_refund=True
    )
    command = TerminationCommand("req-9", b"d", "sub-9", "acc-9", "res-1", "operator", "moving", terms)
    for code in RejectionCode:
        _check(rejected_event(command, Rejection(code, f"because {code.value}"), now))
