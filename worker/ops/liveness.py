"""Liveness: alive while no batch is stuck in hand and the event loop is not blocked (/health/live)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from worker.engine.failures import FailureKind
from worker.engine.observer import PipelineObserver
from worker.engine.records import InboundRecord
from worker.ops.health import Check


class Liveness(PipelineObserver):
    """Alive = no batch has been in hand for longer than `stall_seconds` without a sign of progress,
    and the event loop was not blocked for longer than `blocked_seconds` since the last probe.

    A batch is in hand from the first time a pipeline takes it (a rewound batch that comes back
    keeps its first time) until it is handled. Each failed attempt counts as progress: retries are
    bounded, and an outage is waited out on purpose (readiness reports it; a restart would not help).
    So what fails liveness is a batch rewound without end, or one step that never returns. A worker
    given nothing to do stays alive: consumer lag is on /metrics. The loop is measured by a
    heartbeat (`watch_loop`): how late its wake-ups come; a loop blocked right now cannot answer at
    all, which a probe's timeout reports.
    """

    def __init__(
        self,
        *,
        stall_seconds: float,
        blocked_seconds: float,
        heartbeat_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stall = stall_seconds
        self._blocked = blocked_seconds
        self._heartbeat = heartbeat_seconds
        self._clock = clock
        self._in_hand: dict[str, float] = {}
        """Per topic: since when a batch of it has been in hand without progress."""
        self._last_beat: float | None = None
        self._worst_lag = 0.0

    def batch_started(self, records: Sequence[InboundRecord]) -> None:
        now = self._clock()
        for topic in {record.topic for record in records}:
            self._in_hand.setdefault(topic, now)

    def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
        for topic in {record.topic for record in records}:
            self._in_hand.pop(topic, None)

    def attempt_failed(self, records: Sequence[InboundRecord], kind: FailureKind) -> None:
        now = self._clock()
        for topic in {record.topic for record in records}:
            if topic in self._in_hand:
                self._in_hand[topic] = now

    def beat(self) -> None:
        """One heartbeat of the event loop; its lateness is how long the loop was blocked."""
        now = self._clock()
        if self._last_beat is not None:
            self._worst_lag = max(self._worst_lag, now - self._last_beat - self._heartbeat)
        self._last_beat = now

    async def watch_loop(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self._heartbeat)

    def check(self) -> Check:
        """Judged at each probe; the loop's worst lag is that since the previous probe."""
        now = self._clock()
        late = 0.0 if self._last_beat is None else now - self._last_beat - self._heartbeat
        lag, self._worst_lag = max(self._worst_lag, late), 0.0
        stuck = {topic: now - since for topic, since in self._in_hand.items() if now - since > self._stall}
        if stuck:
            topic, seconds = max(stuck.items(), key=lambda item: item[1])
            return Check(
                False, f"consumer stuck: a batch of {topic} in hand for {seconds:.0f}s without progress"
            )
        if lag > self._blocked:
            return Check(False, f"event loop blocked for {lag:.1f}s")
        return Check(True, "alive")
