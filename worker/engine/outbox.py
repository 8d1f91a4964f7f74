"""The transactional outbox: events stored with the decision that caused them, published after.

An event's ce_id is fixed when it is stored (and derived from the request that caused it), so a
re-publish after a crash carries the same ce_id and consumers de-duplicate on it.

Two ways out, one relay task, so one worker's events leave in the order they committed:
- from memory (`publish`): a pipeline hands the relay the events its batch just committed; the relay
  marks them sent (one UPDATE of their ids, index probes, which also locks them) and publishes them
  inside that transaction, so it neither reads back rows it just wrote nor rebuilds their JSON;
- from the table (`relay_once`): unsent rows claimed in order, FOR UPDATE SKIP LOCKED. The relay
  starts with it (a crash between a commit and its publishing left rows unsent), goes back to it
  after any failure, when another use case wakes it, and every `poll_seconds`.
A row is published by whichever takes its lock first: the other finds it sent (the UPDATE
re-checks `sent_at IS NULL` once the lock is released) or skips it. docs/performance.md, "Issue 13".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from sqlalchemy import BigInteger, Text, func, select, update

from worker.db.inbox import one_of
from worker.db.schema.outbox import outbox
from worker.engine.database import Database, Queries
from worker.engine.failures import FailureKind, classify
from worker.engine.outage import Outage, RetryPolicy
from worker.engine.outbox_events import OutboxEvent, RecordBuilder, derived_id
from worker.engine.records import SendAll

__all__ = ["OutboxEvent", "OutboxRelay", "derived_id"]

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
        self._pending: list[OutboxEvent] = []
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

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Called once the transaction that stored `events` has committed: publish them from memory.
        Past `max_pending` waiting (the broker is away) they are dropped here and claimed from the
        table once it is back, so memory stays bounded."""
        if len(self._pending) + len(events) > self._max_pending:
            self._pending.clear()
            self._claim_due = True
        else:
            self._pending.extend(events)
        self._wake.set()

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
                self._pending.clear()  # all in the table: claimed in order once the outage ends
                self._claim_due = True
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
        """The table first when due (its rows are older than any waiting in memory), then memory.
        Due when woken for it, after a failure, and every `poll_seconds` however busy the relay is:
        another worker's crash leaves rows only the table knows."""
        now = time.monotonic()
        if self._claim_due or now >= self._next_claim:
            self._claim_due = False
            self._next_claim = now + self._poll_seconds
            while await self.relay_once() == self._batch_size:
                pass
        while self._pending:
            events = self._pending[: self._batch_size]
            del self._pending[: len(events)]
            await self.publish_committed(events)

    async def publish_committed(self, events: Sequence[OutboxEvent]) -> int:
        """Mark these committed events sent and publish those still unsent, in one transaction: a
        failure rolls the mark back. Returns how many were published."""
        async with self._engine.begin() as conn:
            marked = await conn.execute(_MARK_IDS, {"ids": [event.event_id for event in events]})
            unsent = {event_id for (event_id,) in marked.all()}
            if len(unsent) < len(events):  # another relay published some first
                events = [event for event in events if event.event_id in unsent]
            if events:
                await self._send_all(self._records.records(events))
        return len(events)

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows from the table; returns how many were published."""
        async with self._engine.begin() as conn:
            claim = (
                select(
                    outbox.c.seq,
                    outbox.c.event_id,
                    outbox.c.topic,
                    outbox.c.key,
                    outbox.c.ce_type,
                    outbox.c.ce_time,
                    outbox.c.data.cast(type_=outbox.c.event_id.type).label("json"),
                )
                .where(outbox.c.sent_at.is_(None))
                .order_by(outbox.c.seq)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = (await conn.execute(claim)).all()
            if not rows:
                return 0
            record = self._records.record
            await self._send_all(
                [record(r.event_id, r.topic, r.key, r.ce_type, r.ce_time, r.json.encode()) for r in rows]
            )
            seqs = [row.seq for row in rows]
            sent = one_of(outbox.c.seq, "seqs", BigInteger())  # index probes at any size (issue 13)
            mark = update(outbox).where(sent).values(sent_at=func.now())
            await conn.execute(mark, {"seqs": seqs})
        return len(rows)


# Index probes of the unique event_id at any size (worker.db.inbox.one_of); the row locks it takes
# make a concurrent claim skip these rows, and a concurrent mark wait and then find them sent.
_MARK_IDS = (
    update(outbox)
    .where(one_of(outbox.c.event_id, "ids", Text()), outbox.c.sent_at.is_(None))
    .values(sent_at=func.now())
    .returning(outbox.c.event_id)
)
