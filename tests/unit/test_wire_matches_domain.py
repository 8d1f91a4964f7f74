"""Where the contract (schemas/) and the refund rules (worker/domain) both know a fact, they agree:
the output enums' values, the currencies and their digits, how an amount is read, which time zones
exist. schemas/ checks the wire format on its own, so these tests keep the two from drifting."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from enum import StrEnum

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from iso4217 import Currency as Iso4217
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from schemas import enums as wire
from schemas.limits import AMOUNT_MAX_DIGITS
from schemas.money import exact_money, minor_digits, money_minor
from schemas.wire import TimeZoneName
from worker.domain.calendar import time_zone
from worker.domain.errors import DomainError
from worker.domain.money import MAX_MINOR_DIGITS, Currency, Money
from worker.domain.never_twice import RejectionCode
from worker.domain.policy import NoRefundReason, RefundMethod, Rule
from worker.terminations.events import (
    wire_method,
    wire_no_refund_reason,
    wire_rejection_reason,
    wire_rule,
)

ENUM_PAIRS: list[tuple[type[StrEnum], type[StrEnum]]] = [
    (RefundMethod, wire.RefundMethod),
    (Rule, wire.Rule),
    (NoRefundReason, wire.NoRefundReason),
    (RejectionCode, wire.RejectionReason),
]

CODES = ["SGD", "JPY", "KWD", "BHD", "CLF"]
"""Currencies of 2, 0, 3, 3 and 4 minor digits."""
NOT_CURRENCIES = ["XAU", "XXX", "XYZ", "sgd", "", "SG"]
"""No minor unit (gold, no currency), not in ISO 4217, not as ISO 4217 writes it."""

# Texts near the shapes amounts take: digits, a point, a sign, spaces, other digits, many digits.
AMOUNT_TEXTS = st.one_of(
    st.text(alphabet="0123456789.-+ e٣", max_size=12),
    st.from_regex(r"-?[0-9]{1,24}(\.[0-9]{0,6})?", fullmatch=True),
)

_ZONE: TypeAdapter[str] = TypeAdapter(TimeZoneName)


@pytest.mark.parametrize(("domain", "contract"), ENUM_PAIRS, ids=lambda pair: pair.__name__)
def test_output_enums_have_the_rules_values(domain: type[StrEnum], contract: type[StrEnum]) -> None:
    assert [member.value for member in domain] == [member.value for member in contract]


def test_events_carry_the_contract_value_of_every_rules_enum() -> None:
    for method in RefundMethod:
        assert wire_method(method) == method.value
    for rule in Rule:
        assert wire_rule(rule) == rule.value
    for reason in NoRefundReason:
        assert wire_no_refund_reason(reason) == reason.value
    for code in RejectionCode:
        assert wire_rejection_reason(code) == code.value
    assert wire_no_refund_reason(None) is None


def test_amounts_have_as_many_digits_as_the_ledger_holds() -> None:
    assert AMOUNT_MAX_DIGITS == MAX_MINOR_DIGITS


@pytest.mark.parametrize("code", [*(currency.code for currency in Iso4217), *NOT_CURRENCIES])
def test_knows_the_currencies_the_rules_know_with_the_same_digits(code: str) -> None:
    assert _outcome(lambda: minor_digits(code)) == _outcome(lambda: Currency.of(code).minor_digits)


@given(text=AMOUNT_TEXTS, code=st.sampled_from(CODES))
@example(text="1" * 17, code="SGD")
@example(text="0" * 30 + "1", code="SGD")
@example(text="12.5", code="JPY")
def test_reads_an_amount_as_the_rules_do(text: str, code: str) -> None:
    currency = Currency.of(code)
    assert _outcome(lambda: money_minor(text, code)) == _outcome(lambda: Money.parse(text, currency).minor)


@given(text=AMOUNT_TEXTS, code=st.sampled_from(CODES))
@example(text="120.00", code="SGD")
@example(text="0120.00", code="SGD")
def test_takes_as_exact_the_amounts_the_rules_write(text: str, code: str) -> None:
    currency = Currency.of(code)
    written = _outcome(lambda: str(Money.parse(text, currency)))
    exact = _outcome(lambda: exact_money(text, code))
    assert (exact[0] is not None) == (written[0] == text)


@pytest.mark.parametrize(
    "name",
    [
        *sorted(zoneinfo.available_timezones())[::7],
        *["UTC", "utc", "Mars/Olympus_Mons", "America", "Etc", "../etc/passwd", "", "Asia/Singapore "],
    ],
)
def test_knows_the_time_zones_the_rules_know(name: str) -> None:
    assert _zone_refusal(name) == _outcome(lambda: time_zone(name))[1]


def _outcome(make: Callable[[], object]) -> tuple[object, str | None]:
    """(the value, None), or (None, the message) when it is refused, by schemas or by the rules."""
    try:
        return make(), None
    except PydanticCustomError as refused:
        return None, refused.message()
    except DomainError as refused:
        return None, str(refused)


def _zone_refusal(name: str) -> str | None:
    try:
        _ZONE.validate_python(name)
    except ValidationError as refused:
        return str(refused.errors()[0]["msg"])
    return None
