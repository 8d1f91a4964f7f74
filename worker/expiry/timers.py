"""The background task that fires due timers, asking the broker how far the group has read when needed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.engine.clock import utc_now
from worker.engine.failures import FailureKind, brief, classify
from worker.engine.outage import OutageLog, jittered
from worker.expiry.firing import FIRE_BATCH_SIZE, FireReport, fire_due_timers
from worker.expiry.read_progress import (
    CaughtUp,
    ReadProbe,
)

log = logging.getLogger("worker.expiry")
decisions = logging.getLogger("worker.decisions")


MAX_BACKOFF_SECONDS = 30.0


MIN_PROBE_INTERVAL_SECONDS = 0.1
"""Rounds woken by every committed batch ask the broker at most this often (three requests each)."""


class ExpiryTimers:
    """Fires due timers until cancelled: every `check_seconds`, or sooner when the next is due
    sooner or `wake()` is called (after an input batch commits). When a timer is due by the clock
    but not by the stored read progress, a round asks `probe` how far the consumer group has read
    subscription-renewed. A database outage is logged and retried with backoff; a broker outage
    only stops the watermark from moving."""

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
        self._engine = engine
        self._check_seconds = check_seconds
        self._batch_size = batch_size
        self._after_fire = after_fire
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
        # One line as an outage starts, a reminder a minute, one as it ends: not a traceback a round.
        outage = OutageLog(
            "firing expiry timers", meanwhile="they are durable and fire once it works again", logger=log
        )
        while True:
            try:
                delay = await self.fire_all()
                outage.ended()
                backoff = self._check_seconds
            except Exception as error:  # noqa: BLE001 - logged by OutageLog; the timers are durable, retry later
                outage.failed(error, traceback=classify(error) is not FailureKind.INFRASTRUCTURE)
                delay = jittered(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def fire_all(self) -> float:
        """Fire every timer due now; returns how long to wait before looking again.

        The broker is asked only when a timer is due by the clock but not by the stored read
        progress: a worker with nothing waiting sends it nothing."""
        reads: CaughtUp | None = None
        asked = False
        while True:
            now = self._clock()
            report = await fire_due_timers(self._engine, now, self._batch_size, reads=reads)
            _log_fired(report)
            if report.terminated:
                self._after_fire()
            if report.locked_out:
                break
            if report.claimed >= self._batch_size:
                continue
            if not asked and _waits_for_reads(report, now):
                asked = True
                reads = await self._read_progress()
                if reads is not None:
                    continue
            break
        if report.next_due_at is None:
            return self._check_seconds
        until_due = (report.next_due_at - self._clock()).total_seconds()
        if until_due <= 0:  # due by the clock, waiting for renewals to be read: a batch wakes us
            return self._check_seconds
        return min(until_due + 0.005, self._check_seconds)

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
                log.warning("cannot tell how far the group has read (%s); expiry timers wait", brief(error))
            self._probe_failing = True
            return None
        if self._probe_failing:
            log.warning("the broker answers again: expiry timers follow the group's progress")
        self._probe_failing = False
        self._last_reads = (time.monotonic(), reads)
        return reads


def _waits_for_reads(report: FireReport, now: datetime) -> bool:
    """A pending timer is due by the clock, but the renewals are not known to be read up to it."""
    return report.next_due_at is not None and report.next_due_at <= now


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
