"""Calendar facts the refund rules need: anniversaries and the customer's local date."""

from __future__ import annotations

from datetime import date, datetime
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

from worker.domain.errors import InvalidTimestamp, InvalidTimeZone


@lru_cache(maxsize=65536)  # pure, and relativedelta is the hot spot of a decision
def add_months(start: date, months: int) -> date:
    """The `months`-th anniversary of `start`, clamped to the month's last day.

    Always counted from `start` itself, never chained: Jan 31 + 1 = Feb 28/29, + 2 = Mar 31.
    """
    return start + relativedelta(months=months)


@lru_cache(maxsize=65536)
def whole_months_elapsed(start: date, on: date) -> int:
    """The largest k >= 0 with add_months(start, k) <= on (0 when `on` is before `start`)."""
    if on < start:
        return 0
    delta = relativedelta(on, start)
    k = delta.years * 12 + delta.months
    # relativedelta measures from `start` too, but clamping can put the k-th anniversary
    # a day off at month ends; settle it against the definition.
    while add_months(start, k + 1) <= on:
        k += 1
    while k > 0 and add_months(start, k) > on:
        k -= 1
    return k


@cache
def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a folder of the tz database ("America", "Etc") or a name too long for a file name.
        raise InvalidTimeZone(f"{name!r} is not an IANA time zone name") from None


def local_date(instant: datetime, zone: str) -> date:
    """The calendar date the customer saw at `instant` in their time zone."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidTimeZone("a timestamp without an offset has no local date")
    try:
        return instant.astimezone(time_zone(zone)).date()
    except OverflowError:
        raise InvalidTimestamp(f"{instant.isoformat()} in {zone} falls past the calendar's end") from None
