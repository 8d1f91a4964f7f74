"""Which dead letters an SRE means: the filters `dlq list` and `dlq replay` share. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_AGE = re.compile(r"(\d+)([smhd])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class InvalidSelection(ValueError):
    """Filters that cannot be used as given; the message is for the person who typed them."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Dead letters by their place in the dead-letter topic, their key, their reason and when they
    were dead-lettered.

    Offsets are the dead-letter topic's, `offset_to` included. Times are the dead letter's own
    record timestamp, in milliseconds since the epoch: `since_ms` included, `until_ms` excluded.
    `keys` and `reasons`: any of them (empty: any at all); a reason is `kafka_dlt-failure-reason`.
    """

    partition: int | None = None
    offset_from: int | None = None
    offset_to: int | None = None
    keys: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.offset_from is not None and self.offset_to is not None and self.offset_from > self.offset_to:
            raise InvalidSelection(
                f"--offset-from {self.offset_from} is after --offset-to {self.offset_to}: nothing to select"
            )
        if self.since_ms is not None and self.until_ms is not None and self.since_ms >= self.until_ms:
            raise InvalidSelection("--since is not before --until: nothing to select")

    def offsets(self, beginning: int, end: int) -> range:
        """The offsets to read from a partition that holds `beginning` up to `end` (excluded)."""
        start = max(beginning, self.offset_from or 0)
        stop = end if self.offset_to is None else min(end, self.offset_to + 1)
        return range(start, max(start, stop))

    def accepts(self, key: bytes | None, timestamp_ms: int, reason: str | None = None) -> bool:
        if self.keys and key not in {wanted.encode() for wanted in self.keys}:
            return False
        if self.reasons and reason not in self.reasons:
            return False
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms < self.until_ms


def parse_time(text: str, *, option: str, now: datetime) -> int:
    """Milliseconds since the epoch for an RFC 3339 timestamp, a date (midnight UTC), or an age
    such as `30m`, `2h` or `7d` (that long before `now`). A timestamp without an offset is UTC."""
    value = text.strip()
    if age := _AGE.fullmatch(value):
        amount, unit = age.groups()
        return _millis(now - timedelta(**{_AGE_UNITS[unit]: int(amount)}))
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return _millis(datetime(day.year, day.month, day.day, tzinfo=UTC))
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidSelection(
            f"{option} {text!r} is not a time: use RFC 3339 (2024-05-01T10:00:00Z), "
            "a date (2024-05-01) or an age (30m, 2h, 7d)"
        ) from None
    return _millis(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact: no float on the way
