"""Calendar: anniversaries counted from the cycle start, and the customer's local date."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.calendar import add_months, local_date, time_zone, whole_months_elapsed
from worker.domain.errors import DomainError, InvalidTimeZone


def _reference_add_months(start: date, months: int) -> date:
    """An independent reading of "S + k months, clamped to the month's last day"."""
    year, month0 = divmod(start.month - 1 + months, 12)
    year += start.year
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(start.day, last_day))


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2021, 4, 1), 0, date(2021, 4, 1)),
        (date(2021, 4, 1), 1, date(2021, 5, 1)),
        (date(2021, 4, 1), 12, date(2022, 4, 1)),
        (date(2021, 1, 31), 1, date(2021, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2021, 1, 31), 2, date(2021, 3, 31)),  # not Mar 28: never chained
        (date(2021, 1, 31), 3, date(2021, 4, 30)),
        (date(2021, 1, 31), 12, date(2022, 1, 31)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2024, 2, 29), 1, date(2024, 3, 29)),
        (date(2021, 3, 31), 1, date(2021, 4, 30)),
        (date(2021, 8, 31), 6, date(2022, 2, 28)),
        (date(2021, 12, 15), 1, date(2022, 1, 15)),
        (date(2021, 11, 30), 3, date(2022, 2, 28)),
        (date(2021, 4, 1), 18, date(2022, 10, 1)),
    ],
)
def test_anniversary_is_counted_from_the_start_and_clamped_to_month_end(
    start: date, months: int, expected: date
) -> None:
    assert add_months(start, months) == expected


def test_anniversaries_are_never_chained() -> None:
    start = date(2021, 1, 31)
    chained = add_months(add_months(start, 1), 1)
    assert chained == date(2021, 3, 28)
    assert add_months(start, 2) == date(2021, 3, 31)


@pytest.mark.parametrize(
    ("start", "on", "expected"),
    [
        (date(2021, 4, 1), date(2021, 4, 1), 0),
        (date(2021, 4, 1), date(2021, 3, 31), 0),  # before the start
        (date(2021, 4, 1), date(2020, 1, 1), 0),
        (date(2021, 4, 1), date(2021, 4, 30), 0),
        (date(2021, 4, 1), date(2021, 5, 1), 1),
        (date(2021, 4, 1), date(2022, 3, 31), 11),
        (date(2021, 4, 1), date(2022, 4, 1), 12),
        (date(2021, 1, 31), date(2021, 2, 27), 0),
        (date(2021, 1, 31), date(2021, 2, 28), 1),
        (date(2024, 1, 31), date(2024, 2, 28), 0),
        (date(2024, 1, 31), date(2024, 2, 29), 1),
        (date(2021, 1, 31), date(2021, 3, 30), 1),
        (date(2021, 1, 31), date(2021, 3, 31), 2),
        (date(2021, 1, 31), date(2021, 4, 29), 2),
        (date(2021, 1, 31), date(2021, 4, 30), 3),
        (date(2024, 2, 29), date(2024, 3, 28), 0),
        (date(2024, 2, 29), date(2024, 3, 29), 1),
        (date(2024, 2, 29), date(2025, 2, 27), 11),
        (date(2024, 2, 29), date(2025, 2, 28), 12),
        (date(2021, 3, 31), date(2021, 4, 30), 1),
        (date(2021, 3, 31), date(2021, 5, 30), 1),
        (date(2021, 3, 31), date(2021, 5, 31), 2),
    ],
)
def test_whole_months_elapsed_counts_anniversaries_reached(start: date, on: date, expected: int) -> None:
    assert whole_months_elapsed(start, on) == expected


_DATES = st.dates(min_value=date(1999, 1, 1), max_value=date(2040, 12, 31))


@st.composite
def _month_end_heavy_dates(draw: st.DrawFn) -> date:
    """Mostly the 28th-31st of a month, where clamping matters, with leap years in range."""
    year = draw(st.integers(min_value=2019, max_value=2030))
    month = draw(st.integers(min_value=1, max_value=12))
    last = calendar.monthrange(year, month)[1]
    day = draw(st.one_of(st.integers(min_value=max(28, last - 3), max_value=last), st.integers(1, last)))
    return date(year, month, day)


_STARTS = st.one_of(_month_end_heavy_dates(), _DATES)


@settings(max_examples=300)
@given(start=_STARTS, months=st.integers(min_value=0, max_value=400))
def test_add_months_matches_the_clamped_anniversary(start: date, months: int) -> None:
    assert add_months(start, months) == _reference_add_months(start, months)


@settings(max_examples=300)
@given(start=_STARTS, offset_days=st.integers(min_value=-100, max_value=3 * 366 + 40))
def test_whole_months_elapsed_is_the_largest_k_with_anniversary_not_after_the_date(
    start: date, offset_days: int
) -> None:
    on = start + timedelta(days=offset_days)
    k = 0
    while add_months(start, k + 1) <= on:  # brute force over the definition
        k += 1
    assert whole_months_elapsed(start, on) == k
    assert add_months(start, k) <= on or on < start
    assert add_months(start, k + 1) > on


_UTC = UTC


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        (datetime(2021, 4, 15, 20, 0, tzinfo=_UTC), "Asia/Singapore", date(2021, 4, 16)),
        (datetime(2021, 4, 15, 15, 59, 59, tzinfo=_UTC), "Asia/Singapore", date(2021, 4, 15)),
        (datetime(2021, 4, 15, 16, 0, 0, tzinfo=_UTC), "Asia/Singapore", date(2021, 4, 16)),
        (datetime(2021, 4, 15, 20, 0, tzinfo=_UTC), "UTC", date(2021, 4, 15)),
        (datetime(2021, 4, 16, 3, 0, tzinfo=_UTC), "America/New_York", date(2021, 4, 15)),  # EDT, -4
        (datetime(2021, 4, 16, 4, 0, tzinfo=_UTC), "America/New_York", date(2021, 4, 16)),
        (datetime(2021, 1, 16, 4, 59, tzinfo=_UTC), "America/New_York", date(2021, 1, 15)),  # EST, -5
        (datetime(2021, 4, 16, 10, 0, tzinfo=_UTC), "Pacific/Pago_Pago", date(2021, 4, 15)),  # -11
        (datetime(2021, 4, 15, 10, 0, tzinfo=_UTC), "Pacific/Kiritimati", date(2021, 4, 16)),  # +14
        (datetime(2021, 4, 15, 18, 14, tzinfo=_UTC), "Asia/Kathmandu", date(2021, 4, 15)),  # +5:45
        (datetime(2021, 4, 15, 18, 15, tzinfo=_UTC), "Asia/Kathmandu", date(2021, 4, 16)),
        # an instant written with another offset is the same instant
        (datetime(2021, 4, 16, 0, 30, tzinfo=timezone(timedelta(hours=8))), "UTC", date(2021, 4, 15)),
        (
            datetime(2021, 4, 15, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
            "Asia/Singapore",
            date(2021, 4, 16),
        ),
    ],
)
def test_local_date_is_the_calendar_date_in_the_zone(instant: datetime, zone: str, expected: date) -> None:
    assert local_date(instant, zone) == expected


@pytest.mark.parametrize(
    "zone",
    [
        "Mars/Olympus_Mons",
        "",
        "Singapore/Asia",
        "Asia/Singapore/",
        "America",  # a folder of the tz database, not a zone
        "Etc",
        "../etc/passwd",
        "/etc/localtime",
        "+08:00",
        "UTC+8",
        "zone1970.tab",
        "a" * 300,
    ],
)
def test_refuses_names_that_are_not_iana_zones(zone: str) -> None:
    with pytest.raises(InvalidTimeZone, match="not an IANA time zone name"):
        local_date(datetime(2021, 4, 15, 20, 0, tzinfo=_UTC), zone)
    with pytest.raises(DomainError):
        time_zone(zone)


def test_refuses_a_naive_datetime() -> None:
    with pytest.raises(InvalidTimeZone, match="without an offset"):
        local_date(datetime(2021, 4, 15, 20, 0), "Asia/Singapore")


class _NoOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_refuses_a_datetime_whose_zone_gives_no_offset() -> None:
    with pytest.raises(InvalidTimeZone, match="without an offset"):
        local_date(datetime(2021, 4, 15, 20, 0, tzinfo=_NoOffset()), "UTC")
