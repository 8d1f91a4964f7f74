"""A transaction's events stored as one outbox batch (worker/db/schema/outbox.py), and the relay's
statements on batches: claim the unpublished, read their events, mark them published.

Every batch look-up is by index probes at any table size (worker.db.inbox.one_of); a claim reads
the partial index of unpublished batches, which holds only those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.bulk import copy_records
from worker.db.inbox import one_of
from worker.db.schema.outbox import outbox, outbox_batches, outbox_events
from worker.engine.outbox_events import OutboxEvent


class StoredBatch(NamedTuple):
    """Events stored in one transaction, as the outbox batch `batch`, in order."""

    batch: int
    events: Sequence[OutboxEvent]


async def store_events(conn: AsyncConnection, events: Sequence[OutboxEvent]) -> StoredBatch | None:
    """Store `events` in the outbox, in the connection's transaction, as one batch (None: no events)."""
    if not events:
        return None
    batch: int = (await conn.execute(_NEW_BATCH, {"events": len(events)})).scalar_one()
    # A generator: each event's text exists only while the driver encodes it (as a list, a batch of
    # 2000 requests held 3 MiB of them at once, at the batch's peak of memory).
    records = (
        (batch, position, e.event_id, e.topic, e.key, e.ce_type, e.ce_time, e.value.decode())
        for position, e in enumerate(events)
    )
    await copy_records(conn, outbox_events, _EVENT_COLUMNS, records)
    return StoredBatch(batch, events)


_NEW_BATCH = insert(outbox_batches).values(events=bindparam("events")).returning(outbox_batches.c.batch)
_EVENT_COLUMNS = ("batch", "position", "event_id", "topic", "key", "ce_type", "ce_time", "body")

_b, _e = outbox_batches.c, outbox_events.c

MARK_PUBLISHED = (
    update(outbox_batches)
    .where(one_of(_b.batch, "batches", BigInteger()), _b.published_at.is_(None))
    .values(published_at=func.now())
    .returning(_b.batch)
)
"""Mark `:batches` published; returns those that were not yet. Its row locks make a concurrent claim
skip these batches, and a concurrent mark wait, then find them published and return nothing."""

CLAIM_UNPUBLISHED = (
    select(_b.batch, _b.events)
    .where(_b.published_at.is_(None))
    .order_by(_b.batch)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
"""The oldest `:limit` unpublished batches no other relay holds, locked until the transaction ends."""

EVENTS_OF = (
    select(_e.batch, _e.event_id, _e.topic, _e.key, _e.ce_type, _e.ce_time, _e.body)
    .where(one_of(_e.batch, "batches", BigInteger()))
    .order_by(_e.batch, _e.position)
)
"""The events of `:batches`, in the order they were stored."""


def within(claimed: Sequence[Any], limit: int) -> list[int]:
    """The first of the claimed (batch, events) rows whose events add up to `limit` at most (at
    least one: a batch is published whole)."""
    taken: list[int] = []
    total = 0
    for batch, events in claimed:
        if taken and total + events > limit:
            break
        taken.append(batch)
        total += events
    return taken


_o = outbox.c

RELEASE_BEFORE_UNSENT = (
    select(
        _o.seq,
        _o.event_id,
        _o.topic,
        _o.key,
        _o.ce_type,
        _o.ce_time,
        _o.data.cast(_o.event_id.type).label("json"),
    )
    .where(_o.sent_at.is_(None))
    .order_by(_o.seq)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
"""The oldest `:limit` events the release before left unsent in `outbox` (migration 0013)."""

RELEASE_BEFORE_SENT = update(outbox).where(one_of(_o.seq, "seqs", BigInteger())).values(sent_at=func.now())
"""Mark `:seqs` of `outbox` sent, as the release before does."""
