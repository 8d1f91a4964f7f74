"""decide_refund: every rule of policy v1 (contract section 2), in order, at its boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from worker.domain.errors import DomainError, InvalidCycle, InvalidTimeZone
from worker.domain.money import Currency, Money
from worker.domain.policy import (
    DEFAULT_WINDOW_DAYS,
    CreditNoteChoice,
    CreditNoteInvalid,
    Cycle,
    NoRefundReason,
    RefundDecision,
    RefundMethod,
    RefundPolicy,
    Rule,
    TerminationTerms,
    decide_refund,
)

_UTC = UTC


def _on(day: date, zone: str = "UTC", at: time = time(12, 0)) -> datetime:
    """An instant whose local date in `zone` is `day`."""
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone))


def _terms(
    on: date | datetime,
    *,
    start: date = date(2021, 4, 1),
    months: int = 12,
    paid: str = "120.00",
    currency: str = "SGD",
    zone: str = "UTC",
    allow_refund: bool = True,
    is_trial: bool = False,
    credit_note: str | None = None,
) -> TerminationTerms:
    money = Currency.of(currency)
    return TerminationTerms(
        cycle=Cycle(start=start, months=months),
        amount_paid=Money.parse(paid, money),
        requested_at=on if isinstance(on, datetime) else _on(on, zone),
        allow_refund=allow_refund,
        timezone=zone,
        is_trial=is_trial,
        credit_note=None
        if credit_note is None
        else CreditNoteChoice("CN-7", Money.parse(credit_note, money)),
    )


def _assert_refund(decision: RefundDecision, amount: str, months: int, rule: Rule) -> None:
    assert (str(decision.amount), decision.months_refunded, decision.rule) == (amount, months, rule)
    assert decision.no_refund_reason is None
    assert decision.refundable is True
    if rule is Rule.CREDIT_NOTE:
        assert decision.method is RefundMethod.CREDIT_NOTE
    else:
        assert decision.method is RefundMethod.ACCOUNT_CREDIT
        assert decision.policy_amount == decision.amount
        assert decision.credit_note is None


def _assert_no_refund(decision: RefundDecision, reason: NoRefundReason, zero: str = "0.00") -> None:
    assert (str(decision.amount), decision.months_refunded, decision.no_refund_reason) == (zero, 0, reason)
    assert decision.amount.is_zero
    assert decision.rule is None
    assert decision.method is None
    assert decision.refundable is False
    assert str(decision.policy_amount) == zero
    assert decision.credit_note is None


# --- the seed article's example -------------------------------------------------------------------------


def test_seed_example_full_refund_on_apr_12() -> None:
    decision = decide_refund(_terms(date(2021, 4, 12)))
    _assert_refund(decision, "120.00", 12, Rule.FULL_WITHIN_WINDOW)
    assert decision.cycle_months == 12
    assert str(decision.policy_amount) == "120.00"


def test_seed_example_keeps_april_on_apr_17() -> None:
    decision = decide_refund(_terms(date(2021, 4, 17)))
    _assert_refund(decision, "110.00", 11, Rule.UNUSED_MONTHS)
    assert decision.cycle_months == 12


# --- a yearly cycle, day by day at every boundary --------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "amount", "months", "rule"),
    [
        (date(2021, 3, 31), "120.00", 12, Rule.FULL_WITHIN_WINDOW),  # before the start: day 0
        (date(2020, 1, 1), "120.00", 12, Rule.FULL_WITHIN_WINDOW),
        (date(2021, 4, 1), "120.00", 12, Rule.FULL_WITHIN_WINDOW),  # day 0
        (date(2021, 4, 15), "120.00", 12, Rule.FULL_WITHIN_WINDOW),  # day 14: last of the window
        (date(2021, 4, 16), "110.00", 11, Rule.UNUSED_MONTHS),  # day 15
        (date(2021, 4, 30), "110.00", 11, Rule.UNUSED_MONTHS),
        (date(2021, 5, 1), "100.00", 10, Rule.UNUSED_MONTHS),  # first anniversary: May is kept too
        (date(2022, 2, 28), "10.00", 1, Rule.UNUSED_MONTHS),
    ],
)
def test_yearly_refund_by_termination_date(on: date, amount: str, months: int, rule: Rule) -> None:
    _assert_refund(decide_refund(_terms(on)), amount, months, rule)


def test_full_refund_on_day_14_of_window() -> None:
    _assert_refund(decide_refund(_terms(date(2021, 4, 15))), "120.00", 12, Rule.FULL_WITHIN_WINDOW)


def test_keeps_current_month_on_day_15() -> None:
    _assert_refund(decide_refund(_terms(date(2021, 4, 16))), "110.00", 11, Rule.UNUSED_MONTHS)


@pytest.mark.parametrize("on", [date(2022, 3, 1), date(2022, 3, 31)])
def test_last_month_of_a_yearly_cycle_refunds_nothing(on: date) -> None:
    _assert_no_refund(decide_refund(_terms(on)), NoRefundReason.NO_UNUSED_MONTHS)


@pytest.mark.parametrize("on", [date(2022, 4, 1), date(2022, 4, 2), date(2030, 1, 1)])
def test_on_or_after_the_cycle_end_is_outside_the_cycle(on: date) -> None:
    _assert_no_refund(decide_refund(_terms(on)), NoRefundReason.OUTSIDE_CYCLE)


# --- monthly ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "on", "expected"),
    [
        (date(2021, 4, 1), date(2021, 4, 15), "9.99"),  # day 14: full
        (date(2021, 4, 1), date(2021, 4, 16), NoRefundReason.NO_UNUSED_MONTHS),  # past the window
        (date(2021, 4, 1), date(2021, 4, 30), NoRefundReason.NO_UNUSED_MONTHS),  # last day: E - 1
        (date(2021, 4, 1), date(2021, 5, 1), NoRefundReason.OUTSIDE_CYCLE),  # E
        (date(2021, 2, 1), date(2021, 2, 28), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2021, 2, 1), date(2021, 3, 1), NoRefundReason.OUTSIDE_CYCLE),
        (date(2021, 1, 31), date(2021, 2, 14), "9.99"),
        (date(2021, 1, 31), date(2021, 2, 27), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2021, 1, 31), date(2021, 2, 28), NoRefundReason.OUTSIDE_CYCLE),  # E = Feb 28 in 2021
        (date(2024, 1, 31), date(2024, 2, 28), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2024, 1, 31), date(2024, 2, 29), NoRefundReason.OUTSIDE_CYCLE),  # E = Feb 29 in 2024
        (date(2024, 2, 29), date(2024, 3, 28), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2024, 2, 29), date(2024, 3, 29), NoRefundReason.OUTSIDE_CYCLE),
    ],
)
def test_monthly_refunds_in_full_within_the_window_and_nothing_after(
    start: date, on: date, expected: str | NoRefundReason
) -> None:
    decision = decide_refund(_terms(on, start=start, months=1, paid="9.99"))
    if isinstance(expected, NoRefundReason):
        _assert_no_refund(decision, expected)
    else:
        _assert_refund(decision, expected, 1, Rule.FULL_WITHIN_WINDOW)
    assert decision.cycle_months == 1


# --- month ends and leap days ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "on", "expected"),
    [
        (date(2021, 1, 31), date(2021, 2, 14), (12, "120.00")),
        (date(2021, 1, 31), date(2021, 2, 15), (11, "110.00")),
        (date(2021, 1, 31), date(2021, 2, 27), (11, "110.00")),
        (date(2021, 1, 31), date(2021, 2, 28), (10, "100.00")),  # Jan 31 + 1 = Feb 28
        (date(2021, 1, 31), date(2021, 3, 30), (10, "100.00")),
        (date(2021, 1, 31), date(2021, 3, 31), (9, "90.00")),  # Jan 31 + 2 = Mar 31, not Mar 28
        (date(2021, 1, 31), date(2022, 1, 30), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2021, 1, 31), date(2022, 1, 31), NoRefundReason.OUTSIDE_CYCLE),
        (date(2024, 1, 31), date(2024, 2, 28), (11, "110.00")),
        (date(2024, 1, 31), date(2024, 2, 29), (10, "100.00")),  # Jan 31 + 1 = Feb 29 in 2024
        (date(2024, 2, 29), date(2024, 3, 14), (12, "120.00")),  # day 14
        (date(2024, 2, 29), date(2024, 3, 15), (11, "110.00")),
        (date(2024, 2, 29), date(2024, 3, 28), (11, "110.00")),
        (date(2024, 2, 29), date(2024, 3, 29), (10, "100.00")),
        (date(2024, 2, 29), date(2025, 1, 29), NoRefundReason.NO_UNUSED_MONTHS),  # + 11 = Jan 29
        (date(2024, 2, 29), date(2025, 2, 27), NoRefundReason.NO_UNUSED_MONTHS),  # E - 1
        (date(2024, 2, 29), date(2025, 2, 28), NoRefundReason.OUTSIDE_CYCLE),  # Feb 29 + 12 = Feb 28 2025
    ],
)
def test_month_end_and_leap_day_starts(
    start: date, on: date, expected: tuple[int, str] | NoRefundReason
) -> None:
    decision = decide_refund(_terms(on, start=start))
    if isinstance(expected, NoRefundReason):
        _assert_no_refund(decision, expected)
    else:
        months, amount = expected
        rule = Rule.FULL_WITHIN_WINDOW if months == 12 else Rule.UNUSED_MONTHS
        _assert_refund(decision, amount, months, rule)


# --- rule order ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"allow_refund": False}, NoRefundReason.REFUND_DISABLED),
        ({"allow_refund": False, "is_trial": True}, NoRefundReason.REFUND_DISABLED),
        ({"allow_refund": False, "paid": "0.00"}, NoRefundReason.REFUND_DISABLED),
        ({"allow_refund": False, "on": date(2023, 1, 1)}, NoRefundReason.REFUND_DISABLED),
        ({"allow_refund": False, "is_trial": True, "on": date(2023, 1, 1)}, NoRefundReason.REFUND_DISABLED),
        ({"is_trial": True}, NoRefundReason.NOTHING_PAID),
        ({"paid": "0.00"}, NoRefundReason.NOTHING_PAID),
        ({"paid": "0"}, NoRefundReason.NOTHING_PAID),
        ({"is_trial": True, "on": date(2023, 1, 1)}, NoRefundReason.NOTHING_PAID),
        ({"paid": "0.00", "on": date(2023, 1, 1)}, NoRefundReason.NOTHING_PAID),
        ({"is_trial": True, "on": date(2021, 4, 17)}, NoRefundReason.NOTHING_PAID),
        ({"on": date(2022, 4, 1)}, NoRefundReason.OUTSIDE_CYCLE),
    ],
)
def test_first_applicable_rule_decides(overrides: dict[str, object], reason: NoRefundReason) -> None:
    on = overrides.pop("on", date(2021, 4, 5))
    assert isinstance(on, date)
    terms = _terms(on, **overrides)  # type: ignore[arg-type]
    _assert_no_refund(decide_refund(terms), reason)


def test_outside_cycle_beats_a_window_longer_than_the_cycle() -> None:
    policy = RefundPolicy(window_days=60)
    terms = _terms(date(2021, 5, 1), months=1, paid="9.99")
    _assert_no_refund(decide_refund(terms, policy), NoRefundReason.OUTSIDE_CYCLE)
    _assert_refund(
        decide_refund(_terms(date(2021, 4, 30), months=1, paid="9.99"), policy),
        "9.99",
        1,
        Rule.FULL_WITHIN_WINDOW,
    )


# --- no-refund decisions are zero in the currency's digits -----------------------------------------------


@pytest.mark.parametrize(
    ("currency", "paid", "zero"),
    [("SGD", "120.00", "0.00"), ("JPY", "1000", "0"), ("KWD", "12.000", "0.000")],
)
@pytest.mark.parametrize(
    ("on", "extra", "reason"),
    [
        (date(2021, 4, 5), {"allow_refund": False}, NoRefundReason.REFUND_DISABLED),
        (date(2021, 4, 5), {"is_trial": True}, NoRefundReason.NOTHING_PAID),
        (date(2022, 4, 1), {}, NoRefundReason.OUTSIDE_CYCLE),
        (date(2022, 3, 31), {}, NoRefundReason.NO_UNUSED_MONTHS),
    ],
)
def test_no_refund_has_zero_amount_in_currency_digits_and_no_rule(
    currency: str, paid: str, zero: str, on: date, extra: dict[str, bool], reason: NoRefundReason
) -> None:
    decision = decide_refund(_terms(on, currency=currency, paid=paid, **extra))  # type: ignore[arg-type]
    _assert_no_refund(decision, reason, zero)
    assert decision.amount.currency == Currency.of(currency)
    assert decision.cycle_months == 12


@pytest.mark.parametrize(
    ("currency", "paid", "zero"), [("SGD", "0", "0.00"), ("JPY", "0", "0"), ("KWD", "0", "0.000")]
)
def test_nothing_paid_is_zero_in_currency_digits(currency: str, paid: str, zero: str) -> None:
    _assert_no_refund(
        decide_refund(_terms(date(2021, 4, 5), currency=currency, paid=paid)),
        NoRefundReason.NOTHING_PAID,
        zero,
    )


# --- time zones: local dates decide, never instants ------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        # Singapore (+8) moves the date forward across the end of the window (Apr 15 = day 14)
        (datetime(2021, 4, 15, 15, 59, 59, tzinfo=_UTC), "Asia/Singapore", (12, "120.00")),
        (datetime(2021, 4, 15, 16, 0, 0, tzinfo=_UTC), "Asia/Singapore", (11, "110.00")),
        (datetime(2021, 4, 15, 20, 0, 0, tzinfo=_UTC), "Asia/Singapore", (11, "110.00")),
        (datetime(2021, 4, 15, 20, 0, 0, tzinfo=_UTC), "UTC", (12, "120.00")),
        # Los Angeles (-7 in April) moves it back inside the window
        (datetime(2021, 4, 16, 6, 59, 59, tzinfo=_UTC), "America/Los_Angeles", (12, "120.00")),
        (datetime(2021, 4, 16, 7, 0, 0, tzinfo=_UTC), "America/Los_Angeles", (11, "110.00")),
        (datetime(2021, 4, 16, 6, 59, 59, tzinfo=_UTC), "UTC", (11, "110.00")),
        # an anniversary: May 1 starts the second month
        (datetime(2021, 4, 30, 16, 0, 0, tzinfo=_UTC), "Asia/Singapore", (10, "100.00")),
        (datetime(2021, 4, 30, 16, 0, 0, tzinfo=_UTC), "UTC", (11, "110.00")),
        # the cycle end, 2022-04-01
        (datetime(2022, 3, 31, 16, 0, 0, tzinfo=_UTC), "Asia/Singapore", NoRefundReason.OUTSIDE_CYCLE),
        (datetime(2022, 3, 31, 15, 59, 59, tzinfo=_UTC), "Asia/Singapore", NoRefundReason.NO_UNUSED_MONTHS),
        (datetime(2022, 4, 1, 3, 0, 0, tzinfo=_UTC), "America/New_York", NoRefundReason.NO_UNUSED_MONTHS),
        (datetime(2022, 4, 1, 3, 0, 0, tzinfo=_UTC), "UTC", NoRefundReason.OUTSIDE_CYCLE),
        # a request before the start in UTC, but on the start date in Kiritimati (+14)
        (datetime(2021, 3, 31, 10, 0, 0, tzinfo=_UTC), "Pacific/Kiritimati", (12, "120.00")),
    ],
)
def test_time_zone_moves_the_local_date_across_boundaries(
    instant: datetime, zone: str, expected: tuple[int, str] | NoRefundReason
) -> None:
    decision = decide_refund(_terms(instant, zone=zone))
    if isinstance(expected, NoRefundReason):
        _assert_no_refund(decision, expected)
    else:
        months, amount = expected
        _assert_refund(
            decision, amount, months, Rule.FULL_WITHIN_WINDOW if months == 12 else Rule.UNUSED_MONTHS
        )


def test_time_zone_decides_whether_a_credit_note_is_honoured_at_the_cycle_end() -> None:
    instant = datetime(2022, 4, 1, 3, 0, 0, tzinfo=_UTC)  # still Mar 31 in New York
    in_new_york = decide_refund(_terms(instant, zone="America/New_York", credit_note="5.00"))
    _assert_refund(in_new_york, "5.00", 0, Rule.CREDIT_NOTE)
    _assert_no_refund(
        decide_refund(_terms(instant, zone="UTC", credit_note="5.00")), NoRefundReason.OUTSIDE_CYCLE
    )


def test_timezone_defaults_to_utc() -> None:
    terms = TerminationTerms(
        cycle=Cycle(date(2021, 4, 1), 12),
        amount_paid=Money.parse("120.00", Currency.of("SGD")),
        requested_at=datetime(2021, 4, 15, 23, 59, 59, tzinfo=timezone.max),  # 2021-04-15T00:00:59Z
        allow_refund=True,
    )
    assert terms.timezone == "UTC"
    _assert_refund(decide_refund(terms), "120.00", 12, Rule.FULL_WITHIN_WINDOW)


def test_refuses_an_unknown_time_zone() -> None:
    with pytest.raises(InvalidTimeZone):
        decide_refund(_terms(datetime(2021, 4, 15, tzinfo=_UTC), zone="Asia/Atlantis"))


def test_refuses_a_naive_request_time() -> None:
    with pytest.raises(InvalidTimeZone):
        decide_refund(_terms(datetime(2021, 4, 15, 12, 0)))


# --- custom cycle lengths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "paid", "on", "expected"),
    [
        (date(2021, 1, 31), 3, "30.00", date(2021, 2, 14), (3, "30.00")),
        (date(2021, 1, 31), 3, "30.00", date(2021, 2, 15), (2, "20.00")),
        (date(2021, 1, 31), 3, "30.00", date(2021, 2, 28), (1, "10.00")),
        (date(2021, 1, 31), 3, "30.00", date(2021, 3, 31), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2021, 1, 31), 3, "30.00", date(2021, 4, 29), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2021, 1, 31), 3, "30.00", date(2021, 4, 30), NoRefundReason.OUTSIDE_CYCLE),  # E = Apr 30
        (date(2021, 1, 1), 3, "100.00", date(2021, 1, 16), (2, "66.66")),  # 66.666... rounded down
        (date(2021, 4, 1), 18, "180.00", date(2021, 4, 16), (17, "170.00")),
        (date(2021, 4, 1), 18, "100.00", date(2021, 4, 16), (17, "94.44")),  # 94.444...
        (date(2021, 4, 1), 18, "180.00", date(2022, 4, 1), (5, "50.00")),
        (date(2021, 4, 1), 18, "180.00", date(2022, 9, 30), NoRefundReason.NO_UNUSED_MONTHS),
        (date(2021, 4, 1), 18, "180.00", date(2022, 10, 1), NoRefundReason.OUTSIDE_CYCLE),
        (date(2021, 4, 1), 36, "360.00", date(2023, 4, 1), (11, "110.00")),
        (date(2021, 4, 1), 36, "360.00", date(2024, 4, 1), NoRefundReason.OUTSIDE_CYCLE),
    ],
)
def test_custom_cycles(
    start: date, months: int, paid: str, on: date, expected: tuple[int, str] | NoRefundReason
) -> None:
    decision = decide_refund(_terms(on, start=start, months=months, paid=paid))
    assert decision.cycle_months == months
    if isinstance(expected, NoRefundReason):
        _assert_no_refund(decision, expected)
    else:
        refunded, amount = expected
        rule = Rule.FULL_WITHIN_WINDOW if refunded == months else Rule.UNUSED_MONTHS
        _assert_refund(decision, amount, refunded, rule)


@pytest.mark.parametrize("months", [0, -1, -12])
def test_refuses_a_cycle_shorter_than_one_month(months: int) -> None:
    with pytest.raises(InvalidCycle, match="at least one month"):
        Cycle(date(2021, 4, 1), months)


def test_cycle_end_is_the_clamped_anniversary() -> None:
    assert Cycle(date(2021, 1, 31), 1).end == date(2021, 2, 28)
    assert Cycle(date(2024, 2, 29), 12).end == date(2025, 2, 28)


# --- currencies and rounding down ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "paid", "months", "on", "refunded", "amount"),
    [
        ("JPY", "1000", 12, date(2021, 4, 16), 11, "916"),  # 916.67
        ("JPY", "1000", 12, date(2022, 2, 1), 1, "83"),  # 83.33
        ("JPY", "1000", 12, date(2021, 4, 15), 12, "1000"),
        ("JPY", "100", 7, date(2021, 7, 1), 3, "42"),  # 42.86
        ("KWD", "1.000", 12, date(2021, 4, 16), 11, "0.916"),
        ("KWD", "1.000", 12, date(2021, 8, 1), 7, "0.583"),  # 0.5833
        ("KWD", "10.001", 3, date(2021, 4, 16), 2, "6.667"),  # 6.66733
        ("KWD", "1.5", 12, date(2021, 4, 10), 12, "1.500"),
        ("SGD", "99.99", 12, date(2021, 4, 16), 11, "91.65"),  # 91.6575
        ("SGD", "100", 3, date(2021, 4, 16), 2, "66.66"),
    ],
)
def test_refund_rounds_down_to_the_currency_minor_unit(
    currency: str, paid: str, months: int, on: date, refunded: int, amount: str
) -> None:
    decision = decide_refund(_terms(on, currency=currency, paid=paid, months=months))
    rule = Rule.FULL_WITHIN_WINDOW if refunded == months else Rule.UNUSED_MONTHS
    _assert_refund(decision, amount, refunded, rule)
    assert decision.amount.currency == Currency.of(currency)


@pytest.mark.parametrize(
    ("currency", "paid", "zero"), [("JPY", "1", "0"), ("SGD", "0.01", "0.00"), ("KWD", "0.001", "0.000")]
)
def test_a_share_that_rounds_to_zero_is_no_refund(currency: str, paid: str, zero: str) -> None:
    # 11/12 of one minor unit is nothing: no refund, months 0, not a refund of zero
    decision = decide_refund(_terms(date(2021, 4, 16), currency=currency, paid=paid))
    _assert_no_refund(decision, NoRefundReason.NO_UNUSED_MONTHS, zero)


# --- the configurable window -----------------------------------------------------------------------------


def test_default_window_is_14_days() -> None:
    assert DEFAULT_WINDOW_DAYS == 14
    assert RefundPolicy() == RefundPolicy(window_days=14)


@pytest.mark.parametrize(
    ("window", "on", "refunded", "amount"),
    [
        (30, date(2021, 5, 1), 12, "120.00"),  # day 30
        (30, date(2021, 5, 2), 10, "100.00"),  # day 31: past May 1, so April and May are kept
        (7, date(2021, 4, 8), 12, "120.00"),  # day 7
        (7, date(2021, 4, 9), 11, "110.00"),  # day 8
        (0, date(2021, 4, 1), 12, "120.00"),  # day 0 only
        (0, date(2021, 3, 20), 12, "120.00"),  # before the start counts as day 0
        (0, date(2021, 4, 2), 11, "110.00"),
    ],
)
def test_window_length_is_configurable(window: int, on: date, refunded: int, amount: str) -> None:
    decision = decide_refund(_terms(on), RefundPolicy(window_days=window))
    _assert_refund(
        decision, amount, refunded, Rule.FULL_WITHIN_WINDOW if refunded == 12 else Rule.UNUSED_MONTHS
    )


def test_refuses_a_negative_window() -> None:
    with pytest.raises(DomainError, match="must not be negative"):
        RefundPolicy(window_days=-1)


# --- a credit note chosen as the refund ------------------------------------------------------------------


def test_credit_note_within_window_is_the_refund() -> None:
    decision = decide_refund(_terms(date(2021, 4, 12), credit_note="50.00"))
    _assert_refund(decision, "50.00", 12, Rule.CREDIT_NOTE)
    assert str(decision.policy_amount) == "120.00"
    assert decision.cycle_months == 12
    assert decision.credit_note == CreditNoteChoice("CN-7", Money(5000, Currency.of("SGD")))


def test_credit_note_after_window_shows_the_policy_amount_beside_it() -> None:
    decision = decide_refund(_terms(date(2021, 4, 17), credit_note="115.00"))
    _assert_refund(decision, "115.00", 11, Rule.CREDIT_NOTE)
    assert str(decision.policy_amount) == "110.00"
    assert decision.credit_note is not None
    assert decision.credit_note.credit_note_id == "CN-7"


def test_credit_note_equal_to_the_amount_paid_is_accepted() -> None:
    decision = decide_refund(_terms(date(2021, 6, 1), credit_note="120.00"))
    _assert_refund(decision, "120.00", 9, Rule.CREDIT_NOTE)
    assert str(decision.policy_amount) == "90.00"


def test_credit_note_is_honoured_when_the_policy_alone_gives_nothing() -> None:
    # rules 1-3 allow a refund; the operator's note is the refund even where rule 5 keeps everything
    decision = decide_refund(_terms(date(2021, 4, 20), months=1, paid="9.99", credit_note="4.00"))
    _assert_refund(decision, "4.00", 0, Rule.CREDIT_NOTE)
    assert str(decision.policy_amount) == "0.00"


@pytest.mark.parametrize(("currency", "paid", "note"), [("JPY", "1000", "500"), ("KWD", "1.000", "0.250")])
def test_credit_note_in_other_currencies(currency: str, paid: str, note: str) -> None:
    decision = decide_refund(_terms(date(2021, 4, 16), currency=currency, paid=paid, credit_note=note))
    _assert_refund(decision, note, 11, Rule.CREDIT_NOTE)
    assert decision.amount.currency == Currency.of(currency)


@pytest.mark.parametrize(
    ("note", "message"), [("120.01", "more than"), ("500.00", "more than"), ("0.00", "nothing")]
)
def test_credit_note_above_amount_paid_or_zero_is_invalid(note: str, message: str) -> None:
    with pytest.raises(CreditNoteInvalid, match=message) as raised:
        decide_refund(_terms(date(2021, 4, 17), credit_note=note))
    assert raised.value.reason_code == "credit_note_invalid"
    assert "CN-7" in str(raised.value)


def test_credit_note_in_another_currency_is_invalid() -> None:
    terms = TerminationTerms(
        cycle=Cycle(date(2021, 4, 1), 12),
        amount_paid=Money.parse("120.00", Currency.of("SGD")),
        requested_at=_on(date(2021, 4, 17)),
        allow_refund=True,
        credit_note=CreditNoteChoice("CN-8", Money.parse("50.00", Currency.of("USD"))),
    )
    with pytest.raises(CreditNoteInvalid, match="USD"):
        decide_refund(terms)


@pytest.mark.parametrize(
    ("on", "overrides", "reason"),
    [
        (date(2021, 4, 12), {"allow_refund": False}, NoRefundReason.REFUND_DISABLED),
        (date(2021, 4, 12), {"is_trial": True}, NoRefundReason.NOTHING_PAID),
        (date(2022, 4, 1), {}, NoRefundReason.OUTSIDE_CYCLE),
    ],
)
@pytest.mark.parametrize("note", ["50.00", "999.00"])  # valid or not, it does not get past rules 1-3
def test_credit_note_does_not_override_rules_one_to_three(
    on: date, overrides: dict[str, bool], reason: NoRefundReason, note: str
) -> None:
    decision = decide_refund(_terms(on, credit_note=note, **overrides))  # type: ignore[arg-type]
    _assert_no_refund(decision, reason)


def test_credit_note_does_not_override_nothing_paid_when_amount_is_zero() -> None:
    terms = TerminationTerms(
        cycle=Cycle(date(2021, 4, 1), 12),
        amount_paid=Money.zero(Currency.of("SGD")),
        requested_at=_on(date(2021, 4, 12)),
        allow_refund=True,
        credit_note=CreditNoteChoice("CN-9", Money.parse("10.00", Currency.of("SGD"))),
    )
    _assert_no_refund(decide_refund(terms), NoRefundReason.NOTHING_PAID)
