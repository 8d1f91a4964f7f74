"""worker.domain.grace_period and timer_verdicts: the deadline, what a renewal cancels, and what each
expiry and renewal does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.domain.errors import DomainError
from worker.domain.grace_period import (
    DEFAULT_GRACE_DAYS,
    CancelledBy,
    GracePeriod,
    Timer,
    TimerState,
    renewal_cancels,
)
from worker.domain.timer_verdicts import ExpiryOutcome, RenewalOutcome, judge_expiry, judge_renewal

EXPIRED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
GRACE = GracePeriod(DEFAULT_GRACE_DAYS)
DEADLINE = datetime(2024, 3, 29, 12, 0, tzinfo=UTC)  # 28 days, across the leap day
SECOND = timedelta(seconds=1)


def pending(expired_at: datetime = EXPIRED, grace: GracePeriod = GRACE) -> Timer:
    return Timer(expired_at, grace.deadline(expired_at), TimerState.PENDING)


# --- the deadline -----------------------------------------------------------------------------


def test_default_grace_is_28_days() -> None:
    assert GracePeriod().days == 28
    assert GRACE.deadline(EXPIRED) == DEADLINE


def test_fractions_of_a_day_give_seconds() -> None:
    assert GracePeriod(3 / 86400).deadline(EXPIRED) == EXPIRED + timedelta(seconds=3)
    assert GracePeriod(0.5).deadline(EXPIRED) == EXPIRED + timedelta(hours=12)


def test_zero_grace_is_due_at_expiry() -> None:
    assert GracePeriod(0).deadline(EXPIRED) == EXPIRED


def test_deadline_keeps_the_instant_whatever_the_offset() -> None:
    singapore = EXPIRED.astimezone(timezone(timedelta(hours=8)))
    assert GRACE.deadline(singapore) == DEADLINE


@pytest.mark.parametrize("days", [-1, -1e-9, float("inf"), float("nan")])
def test_grace_must_be_a_finite_non_negative_number(days: float) -> None:
    with pytest.raises(DomainError, match="grace period"):
        GracePeriod(days)


def test_a_naive_expiry_is_refused() -> None:
    with pytest.raises(DomainError, match="offset"):
        GRACE.deadline(datetime(2024, 3, 1, 12, 0))


# --- which renewals cancel ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("renewed_at", "cancels"),
    [
        (EXPIRED - SECOND, False),  # before the expiry: an earlier cycle's renewal
        (EXPIRED, False),  # at the expiry itself: not after it
        (EXPIRED + SECOND, True),
        (DEADLINE - SECOND, True),
        (DEADLINE, False),  # at the deadline: too late
        (DEADLINE + SECOND, False),
    ],
)
def test_a_renewal_cancels_strictly_between_expiry_and_deadline(renewed_at: datetime, cancels: bool) -> None:
    assert renewal_cancels(EXPIRED, renewed_at, DEADLINE) is cancels


# --- an expiry arriving ---------------------------------------------------------------------------


def test_an_expiry_arms_a_pending_timer_due_at_its_deadline() -> None:
    verdict = judge_expiry(EXPIRED, now=EXPIRED, grace=GRACE, terminated=False, current=None)
    assert verdict.outcome is ExpiryOutcome.ARMED
    assert verdict.timer == Timer(EXPIRED, DEADLINE, TimerState.PENDING)


@pytest.mark.parametrize("now", [DEADLINE, DEADLINE + timedelta(days=400)])
def test_an_expiry_past_its_deadline_on_arrival_is_due_at_once(now: datetime) -> None:
    verdict = judge_expiry(EXPIRED, now=now, grace=GRACE, terminated=False, current=None)
    assert verdict.outcome is ExpiryOutcome.DUE
    assert verdict.timer is not None
    assert verdict.timer.is_due(now)


def test_a_timer_is_not_due_a_moment_before_its_deadline() -> None:
    timer = pending()
    assert not timer.is_due(DEADLINE - timedelta(microseconds=1))
    assert timer.is_due(DEADLINE)


@pytest.mark.parametrize("state", [TimerState.CANCELLED, TimerState.FIRED])
def test_only_a_pending_timer_is_ever_due(state: TimerState) -> None:
    timer = Timer(EXPIRED, DEADLINE, state)
    assert not timer.is_due(DEADLINE + timedelta(days=1))


def test_an_expiry_for_a_terminated_subscription_does_nothing() -> None:
    verdict = judge_expiry(EXPIRED, now=EXPIRED, grace=GRACE, terminated=True, current=None)
    assert (verdict.outcome, verdict.timer) == (ExpiryOutcome.ALREADY_TERMINATED, None)


def test_an_expiry_after_a_fired_timer_does_nothing() -> None:
    fired = Timer(EXPIRED, DEADLINE, TimerState.FIRED)
    later = EXPIRED + timedelta(days=60)
    verdict = judge_expiry(later, now=later, grace=GRACE, terminated=False, current=fired)
    assert (verdict.outcome, verdict.timer) == (ExpiryOutcome.ALREADY_TERMINATED, None)


def test_a_renewal_known_before_the_expiry_arrives_makes_it_born_cancelled() -> None:
    renewed = EXPIRED + timedelta(days=3)
    verdict = judge_expiry(
        EXPIRED, now=EXPIRED, grace=GRACE, terminated=False, current=None, renewals=[renewed]
    )
    assert verdict.outcome is ExpiryOutcome.CANCELLED
    assert verdict.timer == Timer(EXPIRED, DEADLINE, TimerState.CANCELLED, renewed, CancelledBy.RENEWAL)


def test_the_earliest_saving_renewal_is_the_one_recorded() -> None:
    first, second = EXPIRED + timedelta(days=2), EXPIRED + timedelta(days=5)
    verdict = judge_expiry(
        EXPIRED, now=EXPIRED, grace=GRACE, terminated=False, current=None, renewals=[second, first]
    )
    assert verdict.timer is not None
    assert verdict.timer.renewed_at == first


def test_renewals_outside_the_grace_period_do_not_cancel() -> None:
    # Out of order across topics: this cycle's and a later cycle's renewals both arrived first.
    outside = [EXPIRED - timedelta(days=30), EXPIRED, DEADLINE, DEADLINE + timedelta(days=30)]
    verdict = judge_expiry(
        EXPIRED, now=EXPIRED, grace=GRACE, terminated=False, current=None, renewals=outside
    )
    assert verdict.outcome is ExpiryOutcome.ARMED


def test_a_renewal_long_before_a_late_expiry_still_counts() -> None:
    # A replayed (dead-lettered) expiry handled months later is judged on every renewal known.
    renewed = EXPIRED + timedelta(days=1)
    now = EXPIRED + timedelta(days=200)
    verdict = judge_expiry(
        EXPIRED,
        now=now,
        grace=GRACE,
        terminated=False,
        current=None,
        renewals=[renewed, EXPIRED + timedelta(days=150)],
    )
    assert verdict.outcome is ExpiryOutcome.CANCELLED


@pytest.mark.parametrize("state", [TimerState.PENDING, TimerState.CANCELLED])
def test_the_same_or_an_older_expiry_again_changes_nothing(state: TimerState) -> None:
    current = Timer(EXPIRED, DEADLINE, state)
    for expired_at in (EXPIRED, EXPIRED - timedelta(days=30)):
        verdict = judge_expiry(expired_at, now=EXPIRED, grace=GRACE, terminated=False, current=current)
        assert (verdict.outcome, verdict.timer) == (ExpiryOutcome.KNOWN, None)


@pytest.mark.parametrize("state", [TimerState.PENDING, TimerState.CANCELLED])
def test_a_later_expiry_re_arms(state: TimerState) -> None:
    later = EXPIRED + timedelta(days=31)
    cancelled = state is TimerState.CANCELLED
    current = Timer(
        EXPIRED,
        DEADLINE,
        state,
        EXPIRED + SECOND if cancelled else None,
        CancelledBy.RENEWAL if cancelled else None,
    )
    verdict = judge_expiry(
        later, now=later, grace=GRACE, terminated=False, current=current, renewals=[EXPIRED + SECOND]
    )
    assert verdict.outcome is ExpiryOutcome.ARMED
    assert verdict.timer == Timer(later, GRACE.deadline(later), TimerState.PENDING)


# --- a renewal arriving ---------------------------------------------------------------------------


def test_a_renewal_inside_the_grace_period_cancels_the_pending_timer() -> None:
    renewed = EXPIRED + timedelta(days=27)
    verdict = judge_renewal(renewed, current=pending())
    assert verdict.outcome is RenewalOutcome.CANCELLED
    assert verdict.timer == Timer(EXPIRED, DEADLINE, TimerState.CANCELLED, renewed, CancelledBy.RENEWAL)


def test_a_renewal_with_no_timer_is_recorded_for_later() -> None:
    verdict = judge_renewal(EXPIRED, current=None)
    assert (verdict.outcome, verdict.timer) == (RenewalOutcome.RECORDED, None)


def test_a_renewal_before_the_expiry_does_not_cancel() -> None:
    for renewed in (EXPIRED - SECOND, EXPIRED):
        verdict = judge_renewal(renewed, current=pending())
        assert (verdict.outcome, verdict.timer) == (RenewalOutcome.RECORDED, None)


def test_a_renewal_at_or_after_the_deadline_is_too_late() -> None:
    for renewed in (DEADLINE, DEADLINE + SECOND):
        verdict = judge_renewal(renewed, current=pending())
        assert (verdict.outcome, verdict.timer) == (RenewalOutcome.TOO_LATE, None)


def test_a_renewal_arriving_after_the_timer_fired_is_too_late() -> None:
    fired = Timer(EXPIRED, DEADLINE, TimerState.FIRED)
    verdict = judge_renewal(EXPIRED + timedelta(days=2), current=fired)
    assert (verdict.outcome, verdict.timer) == (RenewalOutcome.TOO_LATE, None)


def test_a_second_renewal_leaves_a_cancelled_timer_as_it_is() -> None:
    cancelled = Timer(EXPIRED, DEADLINE, TimerState.CANCELLED, EXPIRED + SECOND, CancelledBy.RENEWAL)
    verdict = judge_renewal(EXPIRED + timedelta(days=2), current=cancelled)
    assert (verdict.outcome, verdict.timer) == (RenewalOutcome.RECORDED, None)


# --- whatever the order -------------------------------------------------------------------------

_OFFSETS = st.integers(min_value=-40 * 86400, max_value=40 * 86400).map(lambda s: timedelta(seconds=s))


@given(renewal_offset=_OFFSETS, grace_seconds=st.integers(min_value=0, max_value=30 * 86400))
def test_expiry_and_renewal_agree_in_either_order(renewal_offset: timedelta, grace_seconds: int) -> None:
    """Renewal then expiry, or expiry then renewal: the timer ends cancelled in exactly the same cases."""
    grace = GracePeriod(grace_seconds / 86400)
    renewed = EXPIRED + renewal_offset
    cancels = renewal_cancels(EXPIRED, renewed, grace.deadline(EXPIRED))

    renewal_first = judge_expiry(
        EXPIRED, now=EXPIRED, grace=grace, terminated=False, current=None, renewals=[renewed]
    )
    assert renewal_first.timer is not None
    assert (renewal_first.timer.state is TimerState.CANCELLED) is cancels

    armed = judge_expiry(EXPIRED, now=EXPIRED, grace=grace, terminated=False, current=None).timer
    assert armed is not None
    expiry_first = judge_renewal(renewed, current=armed)
    assert (expiry_first.outcome is RenewalOutcome.CANCELLED) is cancels
    if cancels:
        assert expiry_first.timer == renewal_first.timer
