"""What each `subscription-expired` and `subscription-renewed` does to the subscription's timer
(contract section 3): arm it, find it born cancelled, cancel it, or leave it.

The rules take every renewal known for the subscription, not only those that arrived after the
expiry: renewals and expiries come on different topics, so either may arrive first, and an expiry
arriving after a renewal that falls inside its grace period is born cancelled.

Pure: the caller reads what the store knows, asks these functions, and writes what they return.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from worker.domain.grace_period import (
    CancelledBy,
    GracePeriod,
    Timer,
    TimerState,
    renewal_cancels,
    require_aware,
)


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
    require_aware(renewed_at, "renewed_at")
    if current is None or renewed_at <= current.expired_at or current.state is TimerState.CANCELLED:
        return RenewalVerdict(RenewalOutcome.RECORDED, None)
    if current.state is TimerState.PENDING and renewed_at < current.due_at:
        cancelled = replace(
            current, state=TimerState.CANCELLED, renewed_at=renewed_at, cancelled_by=CancelledBy.RENEWAL
        )
        return RenewalVerdict(RenewalOutcome.CANCELLED, cancelled)
    return RenewalVerdict(RenewalOutcome.TOO_LATE, None)
