"""The transactional outbox: events stored with the decision that caused them, published after.

An event's ce_id is fixed when it is stored (and derived from the request that caused it), so a
re-publish after a crash carries the same ce_id and consumers de-duplicate on it. A transaction's
events are stored as one batch (worker/engine/outbox_store.py), and published and marked as one.

Two ways out, one relay task, so one worker's events leave in the order they committed:
- from memory (`publish`): a pipeline hands the relay the batch it just committed; the relay marks
  it published (one UPDATE of a row, which also locks it) and publishes its events inside that
  transaction, so it neither reads back rows it just wrote nor rebuilds their JSON;
- from the table (`relay_once`): unpublished batches claimed in order, FOR UPDATE SKIP LOCKED. The
  relay starts with it (a crash between a commit and its publishing left batches unpublished), goes
  back to it after any failure, when another use case wakes it, and every `poll_seconds`.
A batch is published by whichever takes its lock first: the other finds it published (the UPDATE
re-checks `published_at IS NULL` once the lock is released) or skips it.

What the release before left unsent in its one-row-per-event `outbox` is claimed first, the old
way (migration 0013). docs/performance.md, "Issue 13".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from worker.engine.database import Database, Queries
from worker.engine.failures import FailureKind, classify
from worker.engine.outage import Outage, RetryPolicy
from worker.engine.outbox_events import OutboxEvent, RecordBuilder, derived_id
from worker.engine.outbox_store import (
    CLAIM_UNPUBLISHED,
    EVENTS_OF,
    MARK_PUBLISHED,
    RELEASE_BEFORE_SENT,
    RELEASE_BEFORE_UNSENT,
    StoredBatch,
    within,
)
from worker.engine.records import SendAll

__all__ = ["OutboxEvent", "OutboxRelay", "StoredBatch", "derived_id"]

log = logging.getLogger(__name__)

# How long a graceful stop waits for the relay. With the broker and the database answering, a pass
# takes milliseconds; when one of them does not, waiting longer only delays the exit (the process
# must stop well inside its termination grace period), and what is left unsent stays in the table.
DRAIN_SECONDS = 5.0


class OutboxRelay:
    """Publishes committed events, then marks them sent; see the module's docstring.

    Several workers relay side by side without publishing a row twice in the normal case; a crash
    between the broker's acknowledgement and the commit publishes the same events again with the
    same ce_id (at least once, de-duplicable).
    """

    def __init__(
        self,
        engine: Database[Queries],
        send_all: SendAll,
        *,
        source: str,
        batch_size: int,
        max_pending: int = 20_000,
    ) -> None:
        self._engine = engine
        self._send_all = send_all
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._records = RecordBuilder(source)
        self._wake = asyncio.Event()
        self._pending: list[StoredBatch] = []
        self._pending_events = 0
        self._claim_due = True  # at start: whatever a crash left unsent goes first
        self._poll_seconds = 1.0
        self._next_claim = 0.0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Called after a decision commits whose events are only in the table: claim them now rather
        than at the next poll."""
        self._claim_due = True
        self._wake.set()

    def publish(self, stored: StoredBatch) -> None:
        """Called once the transaction that stored this batch has committed: publish it from memory.
        Past `max_pending` events waiting (the broker is away) they are dropped here and claimed from
        the table once it is back, so memory stays bounded."""
        if self._pending_events + len(stored.events) > self._max_pending:
            self._forget_pending()
        else:
            self._pending.append(stored)
            self._pending_events += len(stored.events)
        self._wake.set()

    def _forget_pending(self) -> None:
        """Everything pending is in the table too: claimed from there, in order."""
        self._pending.clear()
        self._pending_events = 0
        self._claim_due = True

    def start(self, poll_seconds: float) -> None:
        self._task = asyncio.create_task(self.run(poll_seconds), name="outbox-relay")

    async def drain(self, grace_seconds: float = DRAIN_SECONDS) -> None:
        """Called once the consumers have stopped: publish what they committed, then stop; cancelled
        after `grace_seconds` (a broker that never acknowledges), the rest left to the next start."""
        if self._task is None:
            return
        self.stop()
        try:
            await asyncio.wait_for(self._task, timeout=grace_seconds)
        except TimeoutError:
            log.warning("outbox relay stopped with events unpublished; the next start publishes them")

    def stop(self) -> None:
        """Graceful stop: `run` publishes what is waiting in memory and returns. Awaiting it, rather
        than cancelling it, matters: a pass cancelled between the broker's acknowledgement and the
        mark's commit rolls the mark back, and the next start publishes those events again."""
        self._stopping = True
        self._wake.set()

    async def run(self, poll_seconds: float) -> None:
        """Relay until stopped or cancelled; failures are retried with jittered backoff, never lost. An outage
        is logged as it starts, now and then while it lasts and when it ends (worker.engine.outage.Outage);
        only an error that is no outage carries its traceback, on its first line."""
        meanwhile = "unsent events stay in the outbox; retrying with backoff"
        outage = Outage(
            "outbox relay", RetryPolicy(backoff_seconds=poll_seconds), meanwhile=meanwhile, logger=log
        )
        self._poll_seconds = poll_seconds
        while True:
            delay = poll_seconds
            stopping = self._stopping  # read first: stop() during this pass gets one more pass
            try:
                await self.relay_due()
                outage.ended()
            except Exception as error:  # noqa: BLE001 - the broker or the database is away: keep the rows
                self._forget_pending()  # claimed in order once the outage ends
                delay = outage.failed(error, traceback=classify(error) is not FailureKind.INFRASTRUCTURE)
                stopping = self._stopping  # the next start claims them; no retrying while stopping
            if stopping:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                self._claim_due = True
            self._wake.clear()

    async def relay_due(self) -> None:
        """The table first when due for it (at the start, after a failure, when woken for it: its
        batches are older than any waiting in memory), then memory. Every `poll_seconds` however busy
        the relay is, the table after memory: another worker's crash leaves batches only it knows."""
        now = time.monotonic()
        if self._claim_due:
            await self._claim_all()
        if now >= self._next_claim:  # memory first, or the claim would read back what it holds
            await self._publish_pending()
            await self._claim_all()
        await self._publish_pending()

    async def _claim_all(self) -> None:
        self._claim_due = False
        self._next_claim = time.monotonic() + self._poll_seconds
        while await self._relay_release_before() == self._batch_size:
            pass
        while (await self._claim_once())[1]:
            pass

    async def _publish_pending(self) -> None:
        while self._pending:
            await self.publish_committed(self._take_pending())

    def _take_pending(self) -> list[StoredBatch]:
        """The oldest pending batches, up to `batch_size` events (at least one batch)."""
        count = total = 0
        for stored in self._pending:
            if count and total + len(stored.events) > self._batch_size:
                break
            count += 1
            total += len(stored.events)
        taken = self._pending[:count]
        del self._pending[:count]
        self._pending_events -= total
        return taken

    async def publish_committed(self, batches: Sequence[StoredBatch]) -> int:
        """Mark these committed batches published and publish the events of those still unpublished,
        in one transaction: a failure rolls the mark back. Returns how many events were published."""
        async with self._engine.begin() as conn:
            marked = await conn.execute(MARK_PUBLISHED, {"batches": [stored.batch for stored in batches]})
            unpublished = {batch for (batch,) in marked.all()}
            events = [event for stored in batches if stored.batch in unpublished for event in stored.events]
            if events:
                await self._send_all(self._records.records(events))
        return len(events)

    async def relay_once(self) -> int:
        """Publish the oldest unpublished batches from the table, up to `batch_size` events (at least
        one batch); returns how many events were published."""
        return (await self._claim_once())[0]

    async def _claim_once(self) -> tuple[int, bool]:
        """relay_once's work; also whether more batches were waiting than it took."""
        async with self._engine.begin() as conn:
            claimed = (await conn.execute(CLAIM_UNPUBLISHED, {"limit": self._batch_size})).all()
            taken = within(claimed, self._batch_size)
            if not taken:
                return 0, False
            rows = (await conn.execute(EVENTS_OF, {"batches": taken})).all()
            record = self._records.record
            await self._send_all(
                [record(r.event_id, r.topic, r.key, r.ce_type, r.ce_time, r.body.encode()) for r in rows]
            )
            await conn.execute(MARK_PUBLISHED, {"batches": taken})
        return len(rows), len(taken) < len(claimed) or len(claimed) == self._batch_size

    async def _relay_release_before(self) -> int:
        """Publish one batch of what the release before left unsent in `outbox`, and mark it sent as
        that release does (migration 0013); returns how many were published."""
        async with self._engine.begin() as conn:
            rows = (await conn.execute(RELEASE_BEFORE_UNSENT, {"limit": self._batch_size})).all()
            if not rows:
                return 0
            record = self._records.record
            await self._send_all(
                [record(r.event_id, r.topic, r.key, r.ce_type, r.ce_time, r.json.encode()) for r in rows]
            )
            await conn.execute(RELEASE_BEFORE_SENT, {"seqs": [row.seq for row in rows]})
        return len(rows)
