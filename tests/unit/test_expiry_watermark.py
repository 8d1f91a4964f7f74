"""worker.domain.watermark and grace_period: the low watermark of subscription-renewed, when a timer
is due, the instants a timer can hold; and the timer loop's use of them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.domain.grace_period import (
    EARLIEST_INSTANT,
    LATEST_INSTANT,
    GracePeriod,
    InstantOutOfRange,
    Timer,
    TimerState,
)
from worker.domain.watermark import ReadProgress, deadline_reached, event_time_read, low_watermark
from worker.engine.failures import FailureKind, classify
from worker.expiry import timers as expiry
from worker.expiry.firing import FireReport
from worker.expiry.read_progress import CaughtUp
from worker.expiry.timers import ExpiryTimers

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


# --- the watermark ----------------------------------------------------------------------------


def test_nothing_is_known_until_some_partition_is() -> None:
    assert low_watermark([], now=NOW) is None


def test_a_partition_with_no_mark_holds_every_timer_back() -> None:
    read = ReadProgress(0, caught_up_at=NOW)
    assert low_watermark([read, ReadProgress(1)], now=NOW) is None
    assert low_watermark([read], now=NOW, partitions={0, 1}) is None  # listed by the broker, no row


def test_the_watermark_is_the_earliest_partition_mark() -> None:
    progress = [
        ReadProgress(0, caught_up_at=NOW - HOUR),
        ReadProgress(1, read_through=NOW - 3 * HOUR, caught_up_at=NOW - 5 * HOUR),
        ReadProgress(2, read_through=NOW - 2 * HOUR),
    ]
    assert low_watermark(progress, now=NOW, partitions={0, 1, 2}) == NOW - 3 * HOUR


def test_a_partition_seen_twice_counts_its_latest_mark() -> None:
    stored, just_seen = ReadProgress(0, read_through=NOW - 2 * HOUR), ReadProgress(0, caught_up_at=NOW - HOUR)
    assert low_watermark([stored, just_seen], now=NOW) == NOW - HOUR
    assert low_watermark([just_seen, ReadProgress(0)], now=NOW) == NOW - HOUR


def test_the_watermark_never_passes_the_clock() -> None:
    assert low_watermark([ReadProgress(0, caught_up_at=NOW + HOUR)], now=NOW) == NOW


_INSTANTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
_MARKS = st.lists(
    st.builds(ReadProgress, st.integers(0, 5), st.none() | _INSTANTS, st.none() | _INSTANTS), max_size=8
)


@given(progress=_MARKS, now=_INSTANTS)
def test_every_partition_is_read_up_to_the_watermark(progress: list[ReadProgress], now: datetime) -> None:
    watermark = low_watermark(progress, now=now)
    if watermark is None:
        return
    assert watermark <= now
    for partition in {row.partition for row in progress}:
        marks = [row.mark for row in progress if row.partition == partition and row.mark is not None]
        assert marks
        assert watermark <= max(marks)


def test_event_time_read_is_the_latest_renewal_but_never_ahead_of_the_clock() -> None:
    assert event_time_read([NOW - 2 * HOUR, NOW - HOUR], now=NOW) == NOW - HOUR
    assert event_time_read([NOW + timedelta(days=900)], now=NOW) == NOW
    assert event_time_read([], now=NOW) is None


# --- when a timer is due ------------------------------------------------------------------------


def test_a_timer_is_due_once_renewals_are_read_up_to_its_deadline() -> None:
    timer = Timer(NOW - 28 * 24 * HOUR, NOW, TimerState.PENDING)
    assert not timer.is_due(None)
    assert not timer.is_due(NOW - timedelta(microseconds=1))
    assert timer.is_due(NOW)
    assert deadline_reached(NOW, NOW + HOUR)
    assert not deadline_reached(NOW, None)


# --- the instants a timer can hold ----------------------------------------------------------------


@pytest.mark.parametrize(
    "expired_at",
    [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
)
def test_an_expiry_at_the_ends_of_the_calendar_is_refused_as_poison(expired_at: datetime) -> None:
    with pytest.raises(InstantOutOfRange) as refused:
        GracePeriod(28).deadline(expired_at)
    assert classify(refused.value) is FailureKind.POISON  # dead-lettered, never stored


def test_a_deadline_past_the_last_supported_instant_is_refused() -> None:
    with pytest.raises(InstantOutOfRange):
        GracePeriod(28).deadline(LATEST_INSTANT - timedelta(days=1))


def test_the_supported_range_is_accepted_to_its_ends() -> None:
    assert GracePeriod(0).deadline(EARLIEST_INSTANT) == EARLIEST_INSTANT
    assert GracePeriod(0).deadline(LATEST_INSTANT) == LATEST_INSTANT


# --- the loop ---------------------------------------------------------------------------------

WAITING = FireReport(watermark=NOW - HOUR, next_due_at=NOW - timedelta(minutes=1))
"""A timer due by the clock, but the renewals are not known to be read up to it."""


async def test_a_worker_with_nothing_waiting_asks_the_broker_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fire(engine: Any, now: datetime, limit: int = 500, **kwargs: Any) -> FireReport:
        return FireReport(watermark=NOW, next_due_at=datetime.now(UTC) + HOUR)

    monkeypatch.setattr(expiry, "fire_due_timers", fire)
    probe = CountingProbe()
    timers = ExpiryTimers(None, check_seconds=1, probe=probe)  # type: ignore[arg-type]
    await timers.fire_all()

    assert probe.asked == 0


class CountingProbe:
    def __init__(self) -> None:
        self.asked = 0

    async def probe(self) -> CaughtUp:
        self.asked += 1
        return CaughtUp(NOW, frozenset({0}), frozenset({0}))

    async def close(self) -> None:
        return None


class FailingProbe:
    def __init__(self) -> None:
        self.asked = 0

    async def probe(self) -> CaughtUp:
        self.asked += 1
        raise OSError("broker unreachable")

    async def close(self) -> None:
        return None


async def test_a_broker_that_does_not_answer_is_logged_once_and_the_firing_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []

    async def fire(engine: Any, now: datetime, limit: int = 500, **kwargs: Any) -> FireReport:
        seen.append(kwargs["reads"])
        return WAITING

    monkeypatch.setattr(expiry, "fire_due_timers", fire)
    probe = FailingProbe()
    timers = ExpiryTimers(None, check_seconds=1, probe=probe)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="worker.expiry"):
        for _ in range(3):
            await timers.fire_all()

    assert (probe.asked, seen) == (3, [None, None, None])  # the stored progress alone
    assert len([r for r in caplog.records if "cannot tell how far" in r.getMessage()]) == 1


async def test_a_timer_due_by_the_clock_but_not_yet_read_to_waits_the_check_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def fire(engine: Any, now: datetime, limit: int = 500, **kwargs: Any) -> FireReport:
        return WAITING

    monkeypatch.setattr(expiry, "fire_due_timers", fire)
    timers = ExpiryTimers(None, check_seconds=2, clock=lambda: NOW)  # type: ignore[arg-type]

    assert await timers.fire_all() == 2  # not a busy loop on a deadline already past


async def test_a_flood_of_wakes_asks_the_broker_at_most_every_tenth_of_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Any] = []

    async def fire(engine: Any, now: datetime, limit: int = 500, **kwargs: Any) -> FireReport:
        seen.append(kwargs["reads"])
        return WAITING

    monkeypatch.setattr(expiry, "fire_due_timers", fire)
    probe = CountingProbe()
    timers = ExpiryTimers(None, check_seconds=1, probe=probe)  # type: ignore[arg-type]
    for _ in range(5):
        await timers.fire_all()

    assert probe.asked == 1
    assert len(seen) == 10  # each round: with the stored progress, then with the broker's answer
    answers = seen[1::2]
    assert answers[0] is not None
    assert all(reads is answers[0] for reads in answers)  # the same, older answer
