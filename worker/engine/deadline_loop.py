"""The loop of a durable deadline that fires on what the consumer group has read (docs/expiry.md).

The expiry timers and the overdue report of money refunds are the same task over other rows: round
after round, act on what is due by the clock *and* by how far the group has read the topic whose
events would cancel it (renewals, settlements). When something is due by the clock but not by the
read progress stored in the database, a round asks the broker how far the group has read. The rows
are durable, so a database outage is logged (once as it starts, then once a minute, once as it
ends) and retried with jittered backoff; a broker outage only stops the watermark from moving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from worker.engine.failures import FailureKind, brief, classify
from worker.engine.outage import OutageLog, jittered

MAX_BACKOFF_SECONDS = 30.0
MIN_PROBE_INTERVAL_SECONDS = 0.1
"""Rounds woken by every committed batch ask the broker at most this often (three requests each)."""


class DueRound(Protocol):
    """What one round (one transaction) did, as far as the loop needs to know."""

    @property
    def locked_out(self) -> bool:
        """Another worker holds the task right now; this one did nothing."""

    @property
    def claimed(self) -> int: ...

    @property
    def next_due_at(self) -> datetime | None:
        """The earliest deadline still waiting after the watermark (None: none, or not known)."""


Reads = TypeVar("Reads")
ProbedReads = TypeVar("ProbedReads", covariant=True)
Round = TypeVar("Round", bound=DueRound)


class ReadProbe(Protocol[ProbedReads]):
    """Asks the broker how far the consumer group has read."""

    async def probe(self) -> ProbedReads: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Wording:
    task: str
    """What the loop does, for the outage lines: "firing expiry timers"."""
    meanwhile: str
    """What happens to the rows during an outage."""
    waiting: str
    """What waits while the broker cannot say how far the group has read: "expiry timers"."""


class ReadGatedDeadlines(ABC, Generic[Round, Reads]):
    """Acts on due rows until cancelled: every `check_seconds`, sooner when the next deadline comes
    sooner or `wake()` is called (after an input batch commits)."""

    def __init__(
        self,
        *,
        check_seconds: float,
        batch_size: int,
        clock: Callable[[], datetime],
        probe: ReadProbe[Reads] | None,
        wording: Wording,
        log: logging.Logger,
    ) -> None:
        self._check_seconds = check_seconds
        self._batch_size = batch_size
        self._clock = clock
        self._probe = probe
        self._wording = wording
        self._log = log
        self._probe_failing = False
        self._last_reads: tuple[float, Reads] | None = None
        self._wake = asyncio.Event()

    @abstractmethod
    async def _round(self, now: datetime, limit: int, reads: Reads | None) -> Round:
        """One transaction: act on up to `limit` rows due at `now`, recording `reads` first."""

    @abstractmethod
    def _after_round(self, report: Round) -> None:
        """Log and announce what the round did (it is committed)."""

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
        outage = OutageLog(self._wording.task, meanwhile=self._wording.meanwhile, logger=self._log)
        while True:
            try:
                delay = await self.act_on_due()
                outage.ended()
                backoff = self._check_seconds
            except Exception as error:  # noqa: BLE001 - logged by OutageLog; the rows are durable, retry later
                outage.failed(error, traceback=classify(error) is not FailureKind.INFRASTRUCTURE)
                delay = jittered(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def act_on_due(self) -> float:
        """Act on every row due now; returns how long to wait before looking again. The broker is
        asked only when a row is due by the clock but not by the stored read progress: a worker
        with nothing waiting sends it nothing."""
        reads: Reads | None = None
        asked = False
        while True:
            now = self._clock()
            report = await self._round(now, self._batch_size, reads)
            self._after_round(report)
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
        if until_due <= 0:  # due by the clock, waiting for the group's reads: a batch wakes us
            return self._check_seconds
        return min(until_due + 0.005, self._check_seconds)

    async def _read_progress(self) -> Reads | None:
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
                self._log.warning(
                    "cannot tell how far the group has read (%s); %s wait",
                    brief(error),
                    self._wording.waiting,
                )
            self._probe_failing = True
            return None
        if self._probe_failing:
            self._log.warning(
                "the broker answers again: %s follow the group's progress", self._wording.waiting
            )
        self._probe_failing = False
        self._last_reads = (time.monotonic(), reads)
        return reads
