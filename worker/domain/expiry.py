"""Expiry (contract section 3): when an expired subscription is terminated, and what stops it.

A subscription that expired at `E` is terminated at its deadline `E + grace` unless it is renewed
in between: a renewal at `R` cancels exactly when `E < R < E + grace`. Each subscription has at
most one expiry timer, for its latest known expiry.

Renewals and expiries come on different topics, so either may arrive first. The rules therefore
take every renewal known for the subscription, not only those that arrived after the expiry: an
expiry arriving after a renewal that falls inside its grace period is born cancelled.

Pure: the caller reads what the store knows, asks these functions, and writes what they return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from worker.domain.errors import DomainError

DEFAULT_GRACE_DAYS = 28


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
        return expired_at + self.length


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

    def is_due(self, now: datetime) -> bool:
        """Pending and its deadline reached: an expiry already past its deadline on arrival is due at once."""
        return self.state is TimerState.PENDING and self.due_at <= now


class ExpiryOutcome(StrEnum):
    ARMED = "armed"
    """A pending timer, due in the future."""
    DUE = "due"
    """A pending timer whose deadline had already passed on arrival: it fires at once."""
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
