"""Expiry (contract section 3): the grace period, and the timer that terminates an expired
subscription at its deadline unless something stops it.

A subscription that expired at `E` is terminated at its deadline `E + grace` unless it is renewed
in between: a renewal at `R` cancels exactly when `E < R < E + grace`. Each subscription has at
most one expiry timer, for its latest known expiry. A timer fires on what has been read, not on
the wall clock alone (`Timer.is_due`, worker/domain/watermark.py); what each expiry and renewal
does to the timer is worker/domain/timer_verdicts.py. docs/expiry.md tells the design.

Pure: the caller reads what the store knows, asks these functions, and writes what they return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from worker.domain.errors import DomainError
from worker.domain.watermark import deadline_reached

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
        require_aware(expired_at, "expired_at")
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
    require_aware(renewed_at, "renewed_at")
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
"""Only a pending timer fires (`Timer.is_due`; worker/expiry/firing_store.py `due_clause` says it in SQL)."""


def require_aware(instant: datetime, name: str) -> None:
    if instant.utcoffset() is None:
        raise DomainError(f"{name} must carry a UTC offset, got {instant.isoformat()}")
