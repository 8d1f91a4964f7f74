"""Money: ISO 4217 minor units, exact parsing and formatting, and shares that never round up."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.errors import DomainError, InvalidAmount, UnknownCurrency
from worker.domain.money import Currency, Money

SGD = Currency.of("SGD")
JPY = Currency.of("JPY")
KWD = Currency.of("KWD")


@pytest.mark.parametrize(
    ("code", "digits"),
    [("JPY", 0), ("KWD", 3), ("BHD", 3), ("SGD", 2), ("USD", 2), ("EUR", 2), ("CLF", 4)],
)
def test_minor_digits_come_from_iso_4217(code: str, digits: int) -> None:
    currency = Currency.of(code)
    assert currency.code == code
    assert currency.minor_digits == digits
    assert str(currency) == code


def test_same_code_gives_equal_currency() -> None:
    assert Currency.of("SGD") == Currency(code="SGD", minor_digits=2)


@pytest.mark.parametrize(
    "code",
    [
        "XAU",  # gold: no minor unit
        "XXX",  # no currency
        "XTS",  # testing code
        "XDR",  # special drawing right: no minor unit
        "ABC",  # made up
        "SGX",
        "sgd",  # codes are upper case
        "SGD ",
        "",
        "702",  # the numeric code is not the code
    ],
)
def test_refuses_codes_without_minor_units_and_unknown_codes(code: str) -> None:
    with pytest.raises(UnknownCurrency, match=re.escape(repr(code))):
        Currency.of(code)


def test_unknown_currency_is_a_domain_error() -> None:
    with pytest.raises(DomainError):
        Currency.of("XAU")


@pytest.mark.parametrize(
    ("text", "code", "minor", "formatted"),
    [
        ("120.00", "SGD", 12000, "120.00"),
        ("120", "SGD", 12000, "120.00"),
        ("120.5", "SGD", 12050, "120.50"),
        ("0.01", "SGD", 1, "0.01"),
        ("0", "SGD", 0, "0.00"),
        ("0.00", "SGD", 0, "0.00"),
        ("007.50", "SGD", 750, "7.50"),
        ("1200", "JPY", 1200, "1200"),
        ("0", "JPY", 0, "0"),
        ("1.500", "KWD", 1500, "1.500"),
        ("1.5", "KWD", 1500, "1.500"),
        ("0.001", "KWD", 1, "0.001"),
        ("12", "KWD", 12000, "12.000"),
        ("99999999999.99", "USD", 9999999999999, "99999999999.99"),
    ],
)
def test_parses_into_minor_units_and_formats_with_exactly_the_currency_digits(
    text: str, code: str, minor: int, formatted: str
) -> None:
    money = Money.parse(text, Currency.of(code))
    assert money == Money(minor, Currency.of(code))
    assert str(money) == formatted
    assert Money.parse(str(money), Currency.of(code)) == money


@pytest.mark.parametrize(
    ("text", "code"),
    [("1.234", "SGD"), ("0.001", "SGD"), ("12.5", "JPY"), ("12.0", "JPY"), ("1.0000", "KWD")],
)
def test_refuses_amounts_more_precise_than_the_minor_unit(text: str, code: str) -> None:
    with pytest.raises(InvalidAmount, match=r"decimal places? but"):
        Money.parse(text, Currency.of(code))


def test_names_one_decimal_place_in_the_singular() -> None:
    with pytest.raises(InvalidAmount, match=r"'12\.5' has 1 decimal place but JPY has 0"):
        Money.parse("12.5", Currency.of("JPY"))


@pytest.mark.parametrize(
    "text",
    [
        "-1.00",
        "-0",
        "+1.00",
        "",
        "abc",
        " 1.00",
        "1.00 ",
        "1.00\n",
        "1,00",
        "1,000.00",
        "1_000",
        "1e3",
        "1.",
        ".50",
        "NaN",
        "Infinity",
        "0x10",
        "\uff11\uff12",  # full-width digits
        "\u0661\u0662",  # Arabic-Indic digits
    ],
)
def test_refuses_negative_and_non_decimal_text(text: str) -> None:
    with pytest.raises(InvalidAmount, match="not a non-negative decimal amount"):
        Money.parse(text, SGD)


def test_refuses_a_negative_number_of_minor_units() -> None:
    with pytest.raises(InvalidAmount, match="negative"):
        Money(-1, SGD)


@pytest.mark.parametrize(("currency", "text"), [(SGD, "0.00"), (JPY, "0"), (KWD, "0.000")])
def test_zero_is_written_with_the_currency_digits(currency: Currency, text: str) -> None:
    zero = Money.zero(currency)
    assert zero.is_zero
    assert str(zero) == text


@pytest.mark.parametrize(
    ("money", "decimal"),
    [
        (Money(12000, SGD), Decimal("120.00")),
        (Money(1200, JPY), Decimal("1200")),
        (Money(1500, KWD), Decimal("1.500")),
        (Money(1, KWD), Decimal("0.001")),
    ],
)
def test_to_decimal_is_exact(money: Money, decimal: Decimal) -> None:
    assert money.to_decimal() == decimal
    assert str(money.to_decimal()) == str(decimal)


@pytest.mark.parametrize(
    ("money", "numerator", "denominator", "expected"),
    [
        (Money(1000, JPY), 11, 12, "916"),  # 916.67 -> 916
        (Money(1000, JPY), 1, 12, "83"),  # 83.33 -> 83
        (Money(10000, SGD), 1, 3, "33.33"),
        (Money(10000, SGD), 2, 3, "66.66"),  # 66.666... -> 66.66, not 66.67
        (Money(10000, SGD), 17, 18, "94.44"),
        (Money(1000, KWD), 2, 3, "0.666"),
        (Money(1000, KWD), 7, 12, "0.583"),
        (Money(12000, SGD), 11, 12, "110.00"),
        (Money(12000, SGD), 12, 12, "120.00"),
        (Money(12000, SGD), 0, 12, "0.00"),
        (Money(1, SGD), 11, 12, "0.00"),
    ],
)
def test_share_rounds_down_to_the_minor_unit(
    money: Money, numerator: int, denominator: int, expected: str
) -> None:
    share = money.share(numerator, denominator)
    assert str(share) == expected
    assert share.currency == money.currency


@pytest.mark.parametrize(("numerator", "denominator"), [(13, 12), (-1, 12), (1, 0), (0, 0), (1, -12)])
def test_share_refuses_fractions_outside_zero_to_one(numerator: int, denominator: int) -> None:
    with pytest.raises(InvalidAmount, match="share"):
        Money(12000, SGD).share(numerator, denominator)


def test_amounts_of_one_currency_compare_by_value() -> None:
    assert Money(12001, SGD) > Money(12000, SGD)
    assert Money(12000, SGD) <= Money(12000, SGD)
    assert Money(1200, JPY) != Money(1200, SGD)


_CURRENCIES = st.sampled_from([JPY, SGD, KWD, Currency.of("USD"), Currency.of("CLF")])


@settings(max_examples=300)
@given(minor=st.integers(min_value=0, max_value=10**15), currency=_CURRENCIES)
def test_formatting_then_parsing_gives_back_the_same_amount(minor: int, currency: Currency) -> None:
    money = Money(minor, currency)
    text = str(money)
    assert Money.parse(text, currency) == money
    fraction = text.partition(".")[2]
    assert len(fraction) == currency.minor_digits
    assert Decimal(text) == money.to_decimal()
    assert Decimal(text) * 10**currency.minor_digits == minor


@settings(max_examples=300)
@given(
    minor=st.integers(min_value=0, max_value=10**12),
    denominator=st.integers(min_value=1, max_value=36),
    data=st.data(),
    currency=_CURRENCIES,
)
def test_share_is_the_largest_amount_not_above_the_exact_fraction(
    minor: int, denominator: int, data: st.DataObject, currency: Currency
) -> None:
    numerator = data.draw(st.integers(min_value=0, max_value=denominator))
    share = Money(minor, currency).share(numerator, denominator)
    exact = Fraction(minor * numerator, denominator)
    assert share.minor <= exact < share.minor + 1
    assert share.minor <= minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [("1" * 5000, SGD), ("10000000000000000", SGD), ("1000000000000000.000", KWD), ("1" * 19, JPY)],
)
def test_refuses_amounts_too_large_for_the_ledger(text: str, currency: Currency) -> None:
    with pytest.raises(InvalidAmount, match="too large"):
        Money.parse(text, currency)


def test_accepts_the_largest_amount_the_ledger_holds() -> None:
    assert Money.parse("9999999999999999.99", SGD).minor == 10**18 - 1
    assert Money.parse("000120.00", SGD).minor == 12000
