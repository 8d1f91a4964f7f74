"""OverdueReports.run: survives a database outage, counts and logs each report once and wakes the relay,
sleeps until the next deadline (never longer than its check interval), asks the broker only when a
deadline has passed by the clock, and waits when another worker is reporting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.domain.money import Currency, Money
from worker.domain.money_refund_facts import InstructionState, MoneyRefundMethod
from worker.expiry.read_progress import CaughtUp
from worker.money_refunds import overdue_timer
from worker.money_refunds.commands import StoredInstruction
from worker.money_refunds.overdue import OverdueReport
from worker.money_refunds.overdue_timer import OverdueReports

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SILENT = StoredInstruction(
    reseller_id="res-1",
    instruction_id="ins-1",
    request_id="req-1",
    account_id="acc-1",
    payment_id="pay-1",
    method=MoneyRefundMethod.CHARGE_BACK,
    amount=Money(2099, Currency.of("SGD")),
    debited=0,
    state=InstructionState.INSTRUCTED,
    reason="money back",
    requested_by="finance@res-1",
    requested_at=NOW - timedelta(hours=72),
    instructed_at=NOW - timedelta(hours=72),
    due_at=NOW,
)


def scripted(monkeypatch: pytest.MonkeyPatch, steps: list[Callable[[], OverdueReport]]) -> list[Any]:
    """Replace report_overdue by these steps, in turn; then nothing is due. Returns the `reads` given."""
    given: list[Any] = []

    async def report(engine: Any, now: datetime, limit: int = 500, *, reads: Any = None) -> OverdueReport:
        given.append(reads)
        return steps.pop(0)() if steps else OverdueReport()

    monkeypatch.setattr(overdue_timer, "report_overdue", report)
    return given


def outage() -> OverdueReport:
    raise OSError("connection refused")


class Probe:
    def __init__(self) -> None:
        self.asked = 0

    async def probe(self) -> CaughtUp:
        self.asked += 1
        return CaughtUp(NOW, frozenset({0}), frozenset({0}))

    async def close(self) -> None:
        return None


async def test_a_database_outage_is_logged_as_it_starts_and_ends_and_each_report_is_counted_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    given = scripted(monkeypatch, [outage, outage, lambda: OverdueReport(claimed=1, reported=(SILENT,))])
    woken: list[bool] = []
    counted: list[int] = []
    reports = OverdueReports(
        None,  # type: ignore[arg-type]
        check_seconds=0.01,
        after_report=lambda: woken.append(True),
        on_reported=lambda reported: counted.append(len(reported)),
    )
    task = asyncio.create_task(reports.run())
    with caplog.at_level(logging.INFO):
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert len(given) > 3  # went on after the outage
    assert (woken, counted) == ([True], [1])
    outage_lines = [
        r for r in caplog.records if r.getMessage().startswith("reporting overdue money refunds ")
    ]
    assert len(outage_lines) == 2
    assert all(r.exc_info is None for r in outage_lines)  # an outage is no bug: no traceback
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("money refund overdue")]
    assert line == (
        "money refund overdue reseller=res-1 instruction=ins-1 account=acc-1 "
        "instructed_at=2024-02-27T12:00:00+00:00 due_at=2024-03-01T12:00:00+00:00"
    )


async def test_full_batches_are_reported_back_to_back(monkeypatch: pytest.MonkeyPatch) -> None:
    full = OverdueReport(claimed=2, reported=(SILENT, SILENT))
    given = scripted(monkeypatch, [lambda: full, lambda: full, lambda: OverdueReport(claimed=1)])
    reports = OverdueReports(None, check_seconds=10, batch_size=2)  # type: ignore[arg-type]

    assert await reports.report_all() == 10
    assert len(given) == 3


async def test_sleeps_until_the_next_deadline_when_sooner_than_the_check_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted(monkeypatch, [lambda: OverdueReport(next_due_at=NOW + timedelta(seconds=2))])
    reports = OverdueReports(None, check_seconds=5, clock=lambda: NOW)  # type: ignore[arg-type]

    assert await reports.report_all() == pytest.approx(2.005)


async def test_a_deadline_passed_by_the_clock_asks_the_broker_once_and_reports_on_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting = OverdueReport(next_due_at=NOW - timedelta(seconds=1))
    given = scripted(monkeypatch, [lambda: waiting, lambda: OverdueReport(claimed=1, reported=(SILENT,))])
    probe = Probe()
    reports = OverdueReports(None, check_seconds=5, clock=lambda: NOW, probe=probe)  # type: ignore[arg-type]

    assert await reports.report_all() == 5
    assert probe.asked == 1
    assert given == [None, CaughtUp(NOW, frozenset({0}), frozenset({0}))]


async def test_nothing_due_asks_the_broker_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch, [lambda: OverdueReport(next_due_at=NOW + timedelta(hours=1))])
    probe = Probe()
    reports = OverdueReports(None, check_seconds=5, clock=lambda: NOW, probe=probe)  # type: ignore[arg-type]

    assert await reports.report_all() == 5
    assert probe.asked == 0


async def test_a_worker_locked_out_waits_the_check_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    given = scripted(monkeypatch, [lambda: OverdueReport(locked_out=True)])
    reports = OverdueReports(None, check_seconds=3)  # type: ignore[arg-type]

    assert await reports.report_all() == 3
    assert len(given) == 1


async def test_wake_looks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    given = scripted(monkeypatch, [])
    reports = OverdueReports(None, check_seconds=60)  # type: ignore[arg-type]
    task = asyncio.create_task(reports.run())
    try:
        await asyncio.sleep(0.05)
        assert len(given) == 1
        reports.wake()
        await asyncio.sleep(0.05)
        assert len(given) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
