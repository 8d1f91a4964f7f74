"""The low watermark of subscription-renewed: the instant before which every renewal has been read.

Renewals and expiries come on different topics, so a renewal may still wait unread in a backlog
when its subscription's deadline passes. A timer is therefore due once its deadline is at or before
the low watermark (`deadline_reached`), so that such a renewal can still save its subscription.
Each partition's mark comes from what the consumer read (`event_time_read`) and from when the
group had read it to its end; docs/expiry.md tells the design.

Pure: the caller reads what the store knows, asks these functions, and writes what they return.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


def deadline_reached(due_at: datetime, watermark: datetime | None) -> bool:
    """A deadline is reached once the renewals are read up to it: no renewal inside the grace
    period (strictly before `due_at`) can still be waiting unread. No watermark: nothing is."""
    return watermark is not None and due_at <= watermark


@dataclass(frozen=True, slots=True)
class ReadProgress:
    """How far one partition of subscription-renewed is read into the store (table read_progress)."""

    partition: int
    read_through: datetime | None = None
    """Event time: the latest renewed_at read from it, never later than the clock when read.
    A partition carries renewals in about the order they happen, so those before are read."""
    caught_up_at: datetime | None = None
    """The latest time at which the consumer group had read it to its end: every renewal
    published before that instant is stored."""

    @property
    def mark(self) -> datetime | None:
        """Every renewal of this partition made before this instant has been read (None: unknown)."""
        known = [t for t in (self.read_through, self.caught_up_at) if t is not None]
        return max(known, default=None)


def low_watermark(
    progress: Iterable[ReadProgress], *, now: datetime, partitions: Iterable[int] = ()
) -> datetime | None:
    """The instant before which every renewal, of every partition, has been read: the earliest
    partition mark, never later than `now`. None while no partition is known, or while one of
    them (from `progress` or `partitions`, e.g. the broker's list) has no mark yet. A partition
    may come more than once (stored, and just seen by the broker): its latest mark counts."""
    marks: dict[int, datetime | None] = {partition: None for partition in partitions}
    for row in progress:
        known = [m for m in (marks.get(row.partition), row.mark) if m is not None]
        marks[row.partition] = max(known, default=None)
    if not marks or any(mark is None for mark in marks.values()):
        return None
    return min([now, *(mark for mark in marks.values() if mark is not None)])


def event_time_read(renewed_at: Iterable[datetime], *, now: datetime) -> datetime | None:
    """The event time a batch of one partition's renewals shows: the latest renewed_at, but never
    later than `now` (a renewal dated in the future must not let every timer fire early)."""
    latest = max(renewed_at, default=None)
    return None if latest is None else min(latest, now)
