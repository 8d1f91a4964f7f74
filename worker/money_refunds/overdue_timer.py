"""The background task that reports overdue money refunds, asking the broker how far the group has read
payment-refund-settled when needed: the expiry timers' loop (worker.engine.deadline_loop) for another
deadline. The instructions are rows in PostgreSQL, so a restart loses none and whichever worker runs
next reports what fell due meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.engine.clock import utc_now
from worker.engine.deadline_loop import ReadGatedDeadlines, Wording
from worker.expiry.read_progress import CaughtUp, ReadProbe
from worker.money_refunds.commands import StoredInstruction
from worker.money_refunds.overdue import REPORT_BATCH_SIZE, OverdueReport, report_overdue

log = logging.getLogger("worker.money_refunds")
decisions = logging.getLogger("worker.decisions")

_WORDING = Wording(
    task="reporting overdue money refunds",
    meanwhile="the instructions are durable and are reported once it works again",
    waiting="overdue money refunds",
)


class OverdueReports(ReadGatedDeadlines[OverdueReport, CaughtUp]):
    """Reports overdue instructions until cancelled: every `check_seconds` (at most 60, so within a
    minute of the deadline), sooner when the next deadline comes sooner or `wake()` is called (after
    a money refund batch commits). `on_reported` sees what each round reported (metrics);
    `after_report` runs after a round that reported any (it wakes the relay)."""

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
        super().__init__(
            check_seconds=check_seconds,
            batch_size=batch_size,
            clock=clock,
            probe=probe,
            wording=_WORDING,
            log=log,
        )
        self._engine = engine
        self._after_report = after_report
        self._on_reported = on_reported

    async def report_all(self) -> float:
        """Report every instruction overdue now; returns how long to wait before looking again."""
        return await self.act_on_due()

    async def _round(self, now: datetime, limit: int, reads: CaughtUp | None) -> OverdueReport:
        return await report_overdue(self._engine, now, limit, reads=reads)

    def _after_round(self, report: OverdueReport) -> None:
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
