"""A valid termination-requested event gives the refund rules their terms: `Money` in the subscription's
currency, the cycle, the chosen credit note (worker/engine/wire_to_domain.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import TerminationRequested, validate_data
from tests.unit.test_event_schemas import ABSENT, request
from worker.domain.money import Currency, Money
from worker.domain.policy import CreditNoteChoice, Cycle
from worker.engine.wire_to_domain import termination_terms


def test_builds_the_seed_examples_terms() -> None:
    terms = termination_terms(validate_data(TerminationRequested, request()))
    assert terms.cycle == Cycle(date(2021, 4, 1), 12)
    assert terms.amount_paid == Money(12000, Currency.of("SGD"))
    assert terms.requested_at == datetime(2021, 4, 17, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    assert (terms.allow_refund, terms.timezone, terms.is_trial, terms.credit_note) == (
        True,
        "Asia/Singapore",
        False,
        None,
    )


def test_reads_fewer_fraction_digits_than_the_currency_has_as_whole_minor_units() -> None:
    terms = termination_terms(validate_data(TerminationRequested, request(amount_paid="120")))
    assert terms.amount_paid == Money(12000, Currency.of("SGD"))


def test_reads_jpy_amounts_without_decimals() -> None:
    data = validate_data(TerminationRequested, request(currency="JPY", amount_paid="1200"))
    terms = termination_terms(data)
    assert terms.amount_paid == Money(1200, Currency.of("JPY"))


def test_reads_the_credit_note_in_the_subscriptions_currency() -> None:
    payload = request(
        currency="KWD", amount_paid="1.500", credit_note={"credit_note_id": "CN-9", "amount": "0.750"}
    )
    terms = termination_terms(validate_data(TerminationRequested, payload))
    assert terms.amount_paid == Money(1500, Currency.of("KWD"))
    assert terms.credit_note == CreditNoteChoice("CN-9", Money(750, Currency.of("KWD")))


def test_an_absent_timezone_and_trial_flag_reach_the_rules_as_utc_and_false() -> None:
    payload = request(timezone=ABSENT, is_trial=None)
    terms = termination_terms(validate_data(TerminationRequested, payload))
    assert (terms.timezone, terms.is_trial) == ("UTC", False)


@pytest.mark.parametrize(("amount", "minor"), [("0", 0), ("500.00", 50000)])
def test_hands_zero_or_oversized_credit_notes_to_the_rules(amount: str, minor: int) -> None:
    # credit_note_invalid is a rule's answer (termination-rejected), not a malformed message.
    payload = request(credit_note={"credit_note_id": "CN-1", "amount": amount})
    terms = termination_terms(validate_data(TerminationRequested, payload))
    assert terms.credit_note == CreditNoteChoice("CN-1", Money(minor, Currency.of("SGD")))


@given(
    minor=st.integers(min_value=0, max_value=10**15),
    code=st.sampled_from(["SGD", "JPY", "KWD", "BHD", "CLF"]),
)
def test_every_amount_the_domain_writes_comes_back_as_the_same_money(minor: int, code: str) -> None:
    money = Money(minor, Currency.of(code))
    data = validate_data(TerminationRequested, request(currency=code, amount_paid=str(money)))
    assert termination_terms(data).amount_paid == money
