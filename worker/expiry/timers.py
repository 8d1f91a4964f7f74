"""The background task that fires due timers, asking the broker how far the group has read
subscription-renewed when needed (the loop is worker.engine.deadline_loop's)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.engine.clock import utc_now
from worker.engine.deadline_loop import ReadGatedDeadlines, Wording
from worker.expiry.firing import FIRE_BATCH_SIZE, FireReport, fire_due_timers
from worker.expiry.read_progress import CaughtUp, ReadProbe

log = logging.getLogger("worker.expiry")
decisions = logging.getLogger("worker.decisions")

_WORDING = Wording(
    task="firing expiry timers",
    meanwhile="they are durable and fire once it works again",
    waiting="expiry timers",
)


class ExpiryTimers(ReadGatedDeadlines[FireReport, CaughtUp]):
    """Fires due timers until cancelled: every `check_seconds`, or sooner when the next is due
    sooner or `wake()` is called (after an input batch commits); `after_fire` runs after a round
    that terminated subscriptions (it wakes the relay)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        check_seconds: float,
        batch_size: int = FIRE_BATCH_SIZE,
        after_fire: Callable[[], None] = lambda: None,
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
        self._after_fire = after_fire

    async def fire_all(self) -> float:
        """Fire every timer due now; returns how long to wait before looking again."""
        return await self.act_on_due()

    async def _round(self, now: datetime, limit: int, reads: CaughtUp | None) -> FireReport:
        return await fire_due_timers(self._engine, now, limit, reads=reads)

    def _after_round(self, report: FireReport) -> None:
        _log_fired(report)
        if report.terminated:
            self._after_fire()


def _log_fired(report: FireReport) -> None:
    for fired in report.terminated:
        decisions.info(
            "expired reseller=%s subscription=%s account=%s expired_at=%s due_at=%s",
            fired.reseller_id,
            fired.subscription_id,
            fired.account_id,
            fired.expired_at.isoformat(),
            fired.due_at.isoformat(),
        )
    for reseller, subscription in report.already_terminated:
        decisions.info(
            "expiry timer of reseller=%s subscription=%s found it terminated by a request",
            reseller,
            subscription,
        )
    for parked in report.parked:  # once: a parked timer is never claimed again
        log.warning(
            "expiry timer of subscription=%s (expiry ce_id=%s) cannot fire and is set aside in "
            "expiry_timer_failures: %s",
            parked.subscription_id,
            parked.expiry_ce_id,
            parked.error,
        )
