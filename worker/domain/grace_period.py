"""Expiry (contract section 3): when an expired subscription is terminated, and what stops it.

A subscription that expired at `E` is terminated at its deadline `E + grace` unless it is renewed
in between: a renewal at `R` cancels exactly when `E < R < E + grace`. Each subscription has at
most one expiry timer, for its latest known expiry.

Renewals and expiries come on different topics, so either may arrive first. The rules therefore
take every renewal known for the subscription, not only those that arrived after the expiry: an
expiry arriving after a renewal that falls inside its grace period is born cancelled.

Timers fire on what has been read, not on the wall clock alone: a timer is due once its deadline
is at or before the **low watermark** of `subscription-renewed`, the instant before which every
renewal has been read (`low_watermark`), so that a renewal still waiting in a backlog can save its
subscription. docs/expiry.md tells the design.

Pure: the caller reads what the store knows, asks these functions, and writes what they return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from worker.domain.errors import DomainError

DEFAULT_GRACE_DAYS = 28

# The instants an expiry and its deadline may take: a day inside what Python represents, so that
# any UTC offset still converts, and PostgreSQL never stores them as -infinity or +infinity
# (asyncpg writes datetime.min and datetime.max so, and reads them back as values that fail).
EARLIEST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 30, tzinfo=UTC)


class InstantOutOfRange(DomainError):
    """An expiry or deadline outside EARLIEST_INSTANT..LATEST_INSTANT: no timer can be kept for it."""


class TimerState(StrEnum):
    PENDING = "pending"
    """Armed: terminates the subscription at `due_at` (at once if that has passed)."""
    CANCELLED = "cancelled"
    """Stopped by a renewal or by a termination request; never fires."""
    FIRED = "fired"
    """The subscription was terminated by this timer."""


class CancelledBy(StrEnum):
    RENEWAL = "renewal"
    REQUEST = "request"
    """A termination request terminated the subscription first (or meanwhile)."""


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What cancelling a timer writes: a pending timer becomes cancelled, and says by whom. A fired
    timer has terminated the subscription and stays fired."""

    cancelled_by: CancelledBy
    state: TimerState = TimerState.CANCELLED
    applies_to: TimerState = TimerState.PENDING


BY_REQUEST = Cancellation(CancelledBy.REQUEST)
"""A termination request cancels the subscription's pending timer (contract section 3), also when
it terminated the subscription while the timer was firing."""


@dataclass(frozen=True, slots=True)
class GracePeriod:
    """How long an expired subscription can still be recovered: EXPIRY_GRACE_DAYS, fractions allowed."""

    days: float = DEFAULT_GRACE_DAYS

    def __post_init__(self) -> None:
        if not math.isfinite(self.days) or self.days < 0:
            raise DomainError(f"the grace period must be a finite number of days >= 0, got {self.days}")

    @property
    def length(self) -> timedelta:
        return timedelta(days=self.days)

    def deadline(self, expired_at: datetime) -> datetime:
        """When a subscription that expired at `expired_at` is terminated unless renewed."""
        _require_aware(expired_at, "expired_at")
        require_in_range(expired_at, "expired_at")
        try:
            deadline = expired_at + self.length
        except OverflowError:
            raise InstantOutOfRange(
                f"the deadline of an expiry at {expired_at.isoformat()} is past year 9999"
            ) from None
        require_in_range(deadline, "the deadline")
        return deadline


def require_in_range(instant: datetime, name: str) -> None:
    if not EARLIEST_INSTANT <= instant <= LATEST_INSTANT:
        raise InstantOutOfRange(
            f"{name} {instant.isoformat()} is outside {EARLIEST_INSTANT.isoformat()}"
            f" .. {LATEST_INSTANT.isoformat()}"
        )


def renewal_cancels(expired_at: datetime, renewed_at: datetime, deadline: datetime) -> bool:
    """A renewal saves an expired subscription when it is after the expiry and before the deadline."""
    _require_aware(renewed_at, "renewed_at")
    return expired_at < renewed_at < deadline


@dataclass(frozen=True, slots=True)
class Timer:
    """What the store holds about a subscription's latest known expiry."""

    expired_at: datetime
    due_at: datetime
    state: TimerState
    renewed_at: datetime | None = None
    """The renewal that cancelled it, if one did."""
    cancelled_by: CancelledBy | None = None

    def is_due(self, watermark: datetime | None) -> bool:
        """Pending, and every renewal that could still save it has been read (`low_watermark`)."""
        return self.state is FIRES_FROM and deadline_reached(self.due_at, watermark)


FIRES_FROM = TimerState.PENDING
"""Only a pending timer fires (`Timer.is_due`; worker/expiry/store.py `due_clause` says it in SQL)."""


def deadline_reached(due_at: datetime, watermark: datetime | None) -> bool:
    """A deadline is reached once the renewals are read up to it: no renewal inside the grace
    period (strictly before `due_at`) can still be waiting unread. No watermark: nothing is."""
    return watermark is not None and due_at <= watermark


# --- how far subscription-renewed has been read -----------------------------------------------


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


class ExpiryOutcome(StrEnum):
    ARMED = "armed"
    """A pending timer, due in the future."""
    DUE = "due"
    """A pending timer whose deadline had already passed on arrival: it fires as soon as the
    renewals are read up to its deadline (at once, unless a backlog holds them)."""
    CANCELLED = "cancelled"
    """Born cancelled: a renewal inside its grace period is already known."""
    ALREADY_TERMINATED = "already_terminated"
    """The subscription is terminated (by a request or an earlier timer): nothing to do."""
    KNOWN = "known"
    """This expiry, or a later one of the same subscription, is already recorded: nothing to do."""


@dataclass(frozen=True, slots=True)
class ExpiryVerdict:
    outcome: ExpiryOutcome
    timer: Timer | None
    """The timer to store; None: leave the stored one (if any) as it is."""


def judge_expiry(
    expired_at: datetime,
    *,
    now: datetime,
    grace: GracePeriod,
    terminated: bool,
    current: Timer | None,
    renewals: Iterable[datetime] = (),
) -> ExpiryVerdict:
    """What an expiry does, given whether the subscription is terminated, its stored timer and renewals."""
    if terminated or (current is not None and current.state is TimerState.FIRED):
        return ExpiryVerdict(ExpiryOutcome.ALREADY_TERMINATED, None)
    if current is not None and expired_at <= current.expired_at:
        # The same expiry again under another ce_id, or an older cycle's: a later expiry means the
        # subscription was renewed after this one, and the latest expiry is the one that counts.
        return ExpiryVerdict(ExpiryOutcome.KNOWN, None)
    deadline = grace.deadline(expired_at)
    saving = sorted(r for r in renewals if renewal_cancels(expired_at, r, deadline))
    if saving:
        timer = Timer(expired_at, deadline, TimerState.CANCELLED, saving[0], CancelledBy.RENEWAL)
        return ExpiryVerdict(ExpiryOutcome.CANCELLED, timer)
    outcome = ExpiryOutcome.DUE if deadline <= now else ExpiryOutcome.ARMED
    return ExpiryVerdict(outcome, Timer(expired_at, deadline, TimerState.PENDING))


class RenewalOutcome(StrEnum):
    CANCELLED = "cancelled"
    """It cancelled the pending timer."""
    RECORDED = "recorded"
    """Nothing pending to cancel; kept, so that an expiry arriving later can be born cancelled."""
    TOO_LATE = "too_late"
    """After the expiry, but the deadline had passed or the timer had fired: it does not save it."""


@dataclass(frozen=True, slots=True)
class RenewalVerdict:
    outcome: RenewalOutcome
    timer: Timer | None
    """The timer to store; None: leave the stored one (if any) as it is."""


def judge_renewal(renewed_at: datetime, *, current: Timer | None) -> RenewalVerdict:
    """What a renewal does to the subscription's stored timer (the renewal itself is always kept)."""
    _require_aware(renewed_at, "renewed_at")
    if current is None or renewed_at <= current.expired_at or current.state is TimerState.CANCELLED:
        return RenewalVerdict(RenewalOutcome.RECORDED, None)
    if current.state is TimerState.PENDING and renewed_at < current.due_at:
        cancelled = replace(
            current, state=TimerState.CANCELLED, renewed_at=renewed_at, cancelled_by=CancelledBy.RENEWAL
        )
        return RenewalVerdict(RenewalOutcome.CANCELLED, cancelled)
    return RenewalVerdict(RenewalOutcome.TOO_LATE, None)


def _require_aware(instant: datetime, name: str) -> None:
    if instant.utcoffset() is None:
        raise DomainError(f"{name} must carry a UTC offset, got {instant.isoformat()}")
