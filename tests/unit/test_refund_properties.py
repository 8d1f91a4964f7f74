"""Properties of decide_refund that hold for every cycle, date, zone and currency."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from worker.domain.calendar import local_date
from worker.domain.money import Currency, Money
from worker.domain.policy import (
    CreditNoteChoice,
    Cycle,
    NoRefundReason,
    RefundDecision,
    RefundMethod,
    RefundPolicy,
    Rule,
    TerminationTerms,
    decide_refund,
)

_ZONES = [
    "UTC",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Asia/Kathmandu",  # +5:45
    "America/Los_Angeles",
    "America/St_Johns",  # -3:30 with DST
    "Pacific/Kiritimati",  # +14
    "Pacific/Pago_Pago",  # -11
    "Australia/Lord_Howe",  # half-hour DST
    "Europe/London",
]
_CURRENCIES = [Currency.of("JPY"), Currency.of("SGD"), Currency.of("KWD")]


def _anniversary(start: date, months: int) -> date:
    """S + k months, clamped, computed independently of worker.domain."""
    year, month0 = divmod(start.month - 1 + months, 12)
    year += start.year
    return date(year, month0 + 1, min(start.day, calendar.monthrange(year, month0 + 1)[1]))


@st.composite
def _cycle_starts(draw: st.DrawFn) -> date:
    """Cycle starts across month ends and leap years."""
    year = draw(st.integers(min_value=2019, max_value=2030))
    month = draw(st.integers(min_value=1, max_value=12))
    last = calendar.monthrange(year, month)[1]
    day = draw(
        st.one_of(st.integers(min_value=last - 3, max_value=last), st.integers(min_value=1, max_value=last))
    )
    return date(year, month, day)


@dataclass(frozen=True)
class _Case:
    start: date
    months: int
    paid: Money
    zone: str
    window: int

    def on(self, local: date, at: time = time(12, 0)) -> TerminationTerms:
        instant = datetime.combine(local, at, tzinfo=ZoneInfo(self.zone)).astimezone(UTC)
        return TerminationTerms(
            cycle=Cycle(self.start, self.months),
            amount_paid=self.paid,
            requested_at=instant,
            allow_refund=True,
            timezone=self.zone,
        )

    def day(self, offset: int) -> date:
        return self.start + timedelta(days=offset)


_DEFAULT_WINDOW = st.just(14)


@st.composite
def _cases(draw: st.DrawFn, window: st.SearchStrategy[int] = _DEFAULT_WINDOW) -> _Case:
    currency = draw(st.sampled_from(_CURRENCIES))
    return _Case(
        start=draw(_cycle_starts()),
        months=draw(st.integers(min_value=1, max_value=36)),
        paid=Money(draw(st.integers(min_value=1, max_value=10**9)), currency),
        zone=draw(st.sampled_from(_ZONES)),
        window=draw(window),
    )


# offsets in days from the cycle start: a little before it to a little after the longest cycle ends
_OFFSETS = st.integers(min_value=-40, max_value=36 * 31 + 40)


def _expected(case: _Case, local: date) -> tuple[int, Rule | None, NoRefundReason | None]:
    """Months refunded, rule and reason, straight from contract section 2 (rules 3-5)."""
    if local >= _anniversary(case.start, case.months):
        return 0, None, NoRefundReason.OUTSIDE_CYCLE
    if max((local - case.start).days, 0) <= case.window:
        return case.months, Rule.FULL_WITHIN_WINDOW, None
    k = 0
    while _anniversary(case.start, k + 1) <= local:
        k += 1
    return case.months - k - 1, Rule.UNUSED_MONTHS, None


def _decide(case: _Case, local: date, at: time = time(12, 0)) -> RefundDecision:
    return decide_refund(case.on(local, at), RefundPolicy(window_days=case.window))


@settings(max_examples=300, deadline=None)
@given(case=_cases(window=st.integers(min_value=0, max_value=45)), offset=_OFFSETS)
def test_decision_follows_the_rules_of_policy_v1(case: _Case, offset: int) -> None:
    local = case.day(offset)
    decision = _decide(case, local)
    months, rule, reason = _expected(case, local)
    paid = case.paid.minor

    assert decision.cycle_months == case.months
    assert decision.amount.currency == case.paid.currency
    assert 0 <= decision.months_refunded <= case.months
    assert decision.amount <= case.paid
    assert decision.refundable is (decision.amount.minor > 0)
    assert (decision.rule is None) is (not decision.refundable)
    assert (decision.no_refund_reason is None) is decision.refundable
    assert decision.policy_amount == decision.amount

    if reason is not None:
        assert (decision.amount.minor, decision.months_refunded, decision.no_refund_reason) == (0, 0, reason)
    elif rule is Rule.FULL_WITHIN_WINDOW:
        assert decision.amount == case.paid
        assert (decision.months_refunded, decision.rule) == (case.months, rule)
        assert decision.method is RefundMethod.ACCOUNT_CREDIT
    elif paid * months // case.months == 0:
        assert (decision.amount.minor, decision.months_refunded) == (0, 0)
        assert decision.no_refund_reason is NoRefundReason.NO_UNUSED_MONTHS
    else:
        assert (decision.months_refunded, decision.rule) == (months, Rule.UNUSED_MONTHS)
        assert decision.amount.minor == paid * decision.months_refunded // case.months
        assert decision.method is RefundMethod.ACCOUNT_CREDIT


@settings(max_examples=300, deadline=None)
@given(case=_cases(), offset=_OFFSETS)
def test_refund_never_exceeds_the_amount_paid(case: _Case, offset: int) -> None:
    decision = _decide(case, case.day(offset))
    assert decision.amount.minor <= case.paid.minor
    assert 0 <= decision.months_refunded <= case.months
    assert decision.refundable is (decision.amount.minor > 0)


@settings(max_examples=250, deadline=None)
@given(case=_cases(), earlier=_OFFSETS, later_by=st.integers(min_value=0, max_value=400))
def test_refund_never_grows_as_the_termination_date_moves_later(
    case: _Case, earlier: int, later_by: int
) -> None:
    first = _decide(case, case.day(earlier))
    second = _decide(case, case.day(earlier + later_by))
    assert second.amount <= first.amount
    assert second.months_refunded <= first.months_refunded


@settings(max_examples=250, deadline=None)
@given(case=_cases(), offset=st.integers(min_value=-40, max_value=14))
def test_full_amount_inside_the_window(case: _Case, offset: int) -> None:
    local = case.day(offset)
    assume(local < _anniversary(case.start, case.months))  # always true for a 14-day window
    decision = _decide(case, local)
    assert decision.amount == case.paid
    assert (decision.months_refunded, decision.rule) == (case.months, Rule.FULL_WITHIN_WINDOW)


@settings(max_examples=250, deadline=None)
@given(case=_cases(), offset=st.integers(min_value=15, max_value=36 * 31))
def test_outside_the_window_refunds_the_unused_months_rounded_down(case: _Case, offset: int) -> None:
    local = case.day(offset)
    assume(local < _anniversary(case.start, case.months))
    decision = _decide(case, local)
    assert decision.months_refunded < case.months  # the current month is always kept
    assert decision.amount.minor == case.paid.minor * decision.months_refunded // case.months
    if decision.refundable:
        assert decision.rule is Rule.UNUSED_MONTHS
    else:
        assert decision.no_refund_reason is NoRefundReason.NO_UNUSED_MONTHS


@settings(max_examples=250, deadline=None)
@given(
    case=_cases(),
    offset=_OFFSETS,
    first=st.times(),
    second=st.times(),
)
def test_same_local_date_gives_the_same_decision_whatever_the_time_of_day(
    case: _Case, offset: int, first: time, second: time
) -> None:
    local = case.day(offset)
    terms_first, terms_second = case.on(local, first), case.on(local, second)
    # a wall time skipped by a DST change may land on another date; only compare real local times
    assume(local_date(terms_first.requested_at, case.zone) == local)
    assume(local_date(terms_second.requested_at, case.zone) == local)
    policy = RefundPolicy(window_days=case.window)
    decision = decide_refund(terms_first, policy)
    assert decision == decide_refund(terms_second, policy)
    # and it is the decision for that date in UTC: only the local date matters
    in_utc = _Case(case.start, case.months, case.paid, "UTC", case.window)
    assert decision == _decide(in_utc, local)


@settings(max_examples=200, deadline=None)
@given(case=_cases(), offset=st.integers(min_value=-40, max_value=36 * 31), data=st.data())
def test_credit_note_is_the_refund_and_policy_amount_is_unchanged(
    case: _Case, offset: int, data: st.DataObject
) -> None:
    local = case.day(offset)
    assume(local < _anniversary(case.start, case.months))
    note = CreditNoteChoice("CN-1", Money(data.draw(st.integers(1, case.paid.minor)), case.paid.currency))
    plain = _decide(case, local)
    terms = case.on(local)
    with_note = decide_refund(
        TerminationTerms(
            cycle=terms.cycle,
            amount_paid=terms.amount_paid,
            requested_at=terms.requested_at,
            allow_refund=True,
            timezone=terms.timezone,
            credit_note=note,
        )
    )
    assert with_note.amount == note.amount
    assert with_note.refundable is True
    assert (with_note.rule, with_note.method, with_note.credit_note) == (
        Rule.CREDIT_NOTE,
        RefundMethod.CREDIT_NOTE,
        note,
    )
    assert with_note.policy_amount == plain.amount
    expected_months = plain.months_refunded if plain.refundable else _expected(case, local)[0]
    assert with_note.months_refunded == expected_months
