"""The background task that reports overdue money refunds, asking the broker how far the group has read
payment-refund-settled when needed. The expiry timers' loop (worker/expiry/timers.py) for another
deadline: the instructions are rows in PostgreSQL, so a restart loses none and whichever worker runs
next reports what fell due meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.engine.clock import utc_now
from worker.engine.failures import FailureKind, brief, classify
from worker.engine.outage import OutageLog, jittered
from worker.expiry.read_progress import CaughtUp, ReadProbe
from worker.expiry.timers import MAX_BACKOFF_SECONDS, MIN_PROBE_INTERVAL_SECONDS
from worker.money_refunds.commands import StoredInstruction
from worker.money_refunds.overdue import REPORT_BATCH_SIZE, OverdueReport, report_overdue

log = logging.getLogger("worker.money_refunds")
decisions = logging.getLogger("worker.decisions")


class OverdueReports:
    """Reports overdue instructions until cancelled: every `check_seconds` (at most 60, so within a
    minute of the deadline), sooner when the next deadline comes sooner or `wake()` is called (after
    a money refund batch commits). When one is due by the clock but not by the stored read progress,
    a round asks `probe` how far the consumer group has read payment-refund-settled. A database
    outage is logged and retried with backoff; a broker outage only stops the watermark from moving.
    `on_reported` sees what each round reported (metrics)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        check_seconds: float,
        batch_size: int = REPORT_BATCH_SIZE,
        after_report: Callable[[], None] = lambda: None,
        on_reported: Callable[[Sequence[StoredInstruction]], None] = lambda _: None,
        clock: Callable[[], datetime] = utc_now,
        probe: ReadProbe | None = None,
    ) -> None:
        self._engine = engine
        self._check_seconds = check_seconds
        self._batch_size = batch_size
        self._after_report = after_report
        self._on_reported = on_reported
        self._clock = clock
        self._probe = probe
        self._probe_failing = False
        self._last_reads: tuple[float, CaughtUp] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._probe is not None:
                await self._probe.close()

    async def _run(self) -> None:
        backoff = self._check_seconds
        outage = OutageLog(
            "reporting overdue money refunds",
            meanwhile="the instructions are durable and are reported once it works again",
            logger=log,
        )
        while True:
            try:
                delay = await self.report_all()
                outage.ended()
                backoff = self._check_seconds
            except Exception as error:  # noqa: BLE001 - logged by OutageLog; the rows are durable, retry later
                outage.failed(error, traceback=classify(error) is not FailureKind.INFRASTRUCTURE)
                delay = jittered(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def report_all(self) -> float:
        """Report every instruction overdue now; returns how long to wait before looking again. The
        broker is asked only when one is due by the clock but not by the stored read progress."""
        reads: CaughtUp | None = None
        asked = False
        while True:
            now = self._clock()
            report = await report_overdue(self._engine, now, self._batch_size, reads=reads)
            self._reported(report)
            if report.locked_out:
                break
            if report.claimed >= self._batch_size:
                continue
            if not asked and report.next_due_at is not None and report.next_due_at <= now:
                asked = True
                reads = await self._read_progress()
                if reads is not None:
                    continue
            break
        if report.next_due_at is None:
            return self._check_seconds
        until_due = (report.next_due_at - self._clock()).total_seconds()
        if until_due <= 0:  # due by the clock, waiting for settlements to be read: a batch wakes us
            return self._check_seconds
        return min(until_due + 0.005, self._check_seconds)

    def _reported(self, report: OverdueReport) -> None:
        for instruction in report.reported:
            decisions.info(
                "money refund overdue reseller=%s instruction=%s account=%s instructed_at=%s due_at=%s",
                instruction.reseller_id,
                instruction.instruction_id,
                instruction.account_id,
                instruction.instructed_at.isoformat(),
                instruction.due_at.isoformat(),
            )
        if report.reported:
            self._on_reported(report.reported)
            self._after_report()

    async def _read_progress(self) -> CaughtUp | None:
        """What the broker says of the group's progress; None while it does not answer (the
        watermark then rests on what the database recorded)."""
        if self._probe is None:
            return None
        if self._last_reads and time.monotonic() - self._last_reads[0] < MIN_PROBE_INTERVAL_SECONDS:
            return self._last_reads[1]  # older, so it claims less: safe to reuse under a flood of wakes
        try:
            reads = await self._probe.probe()
        except Exception as error:  # noqa: BLE001 - whatever it is, the broker's answer is unknown
            if not self._probe_failing:
                log.warning(
                    "cannot tell how far the group has read (%s); overdue money refunds wait", brief(error)
                )
            self._probe_failing = True
            return None
        if self._probe_failing:
            log.warning("the broker answers again: overdue money refunds follow the group's progress")
        self._probe_failing = False
        self._last_reads = (time.monotonic(), reads)
        return reads
