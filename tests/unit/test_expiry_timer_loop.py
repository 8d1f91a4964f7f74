"""ExpiryTimers.run: survives a database outage, wakes the relay, sleeps until the next deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.expiry import timers as expiry
from worker.expiry.firing import FireReport
from worker.expiry.plan import Fired
from worker.expiry.timers import ExpiryTimers

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
FIRED = Fired("res-1", "sub-1", "acc-1", NOW - timedelta(days=28), NOW)


def scripted(monkeypatch: pytest.MonkeyPatch, steps: list[Callable[[], FireReport]]) -> list[datetime]:
    """Replace fire_due_timers by these steps, in turn; then nothing is due. Returns the `now`s asked."""
    asked: list[datetime] = []

    async def fire(engine: Any, now: datetime, limit: int = 500, **_: Any) -> FireReport:
        asked.append(now)
        return steps.pop(0)() if steps else FireReport()

    monkeypatch.setattr(expiry, "fire_due_timers", fire)
    return asked


def outage() -> FireReport:
    raise OSError("connection refused")


async def run_for(timers: ExpiryTimers, seconds: float) -> None:
    task = asyncio.create_task(timers.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_database_outage_is_logged_once_as_it_starts_and_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    asked = scripted(monkeypatch, [outage, outage, lambda: FireReport(claimed=1, terminated=(FIRED,))])
    woken: list[bool] = []
    timers = ExpiryTimers(None, check_seconds=0.01, after_fire=lambda: woken.append(True))  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO):
        await run_for(timers, 0.3)

    assert len(asked) > 3  # went on after the outage
    assert woken == [True]  # the relay is woken once, after the firing
    outage_lines = [r for r in caplog.records if r.getMessage().startswith("firing expiry timers ")]
    assert len(outage_lines) == 2
    assert outage_lines[0].getMessage().startswith("firing expiry timers unavailable (OSError")
    assert outage_lines[1].getMessage().endswith("and 2 failed attempts; resuming")
    assert all(r.exc_info is None for r in outage_lines)  # an outage is no bug: no traceback
    assert any("expired reseller=res-1 subscription=sub-1" in r.getMessage() for r in caplog.records)


async def test_full_batches_are_fired_back_to_back(monkeypatch: pytest.MonkeyPatch) -> None:
    full = FireReport(claimed=2, terminated=(FIRED, FIRED))
    asked = scripted(monkeypatch, [lambda: full, lambda: full, lambda: FireReport(claimed=1)])
    timers = ExpiryTimers(None, check_seconds=10, batch_size=2)  # type: ignore[arg-type]

    assert await timers.fire_all() == 10
    assert len(asked) == 3


async def test_sleeps_until_the_next_deadline_when_sooner_than_the_check_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted(monkeypatch, [lambda: FireReport(next_due_at=NOW + timedelta(seconds=2))])
    timers = ExpiryTimers(None, check_seconds=5, clock=lambda: NOW)  # type: ignore[arg-type]

    assert await timers.fire_all() == pytest.approx(2.005)


async def test_a_worker_locked_out_waits_the_check_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = scripted(monkeypatch, [lambda: FireReport(locked_out=True)])
    timers = ExpiryTimers(None, check_seconds=3)  # type: ignore[arg-type]

    assert await timers.fire_all() == 3
    assert len(asked) == 1


async def test_wake_checks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = scripted(monkeypatch, [])
    timers = ExpiryTimers(None, check_seconds=60)  # type: ignore[arg-type]
    task = asyncio.create_task(timers.run())
    try:
        await asyncio.sleep(0.05)
        assert len(asked) == 1
        timers.wake()
        await asyncio.sleep(0.05)
        assert len(asked) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
