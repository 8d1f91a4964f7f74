"""The outbox as tests read it (worker/db/schema/outbox.py): every stored event with its data as
JSON, in the order stored, and how many are not yet published."""

from __future__ import annotations

from sqlalchemy import cast, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.schema.outbox import outbox, outbox_batches, outbox_events

_e = outbox_events.c
stored_events = select(
    _e.batch, _e.position, _e.event_id, _e.topic, _e.key, cast(_e.body, JSONB).label("data")
).subquery("stored_events")
"""Columns batch, position, event_id, topic, key and data (JSONB: `data["request_id"].astext`)."""

in_stored_order = (stored_events.c.batch, stored_events.c.position)


async def unpublished_events(conn: AsyncConnection) -> int:
    """Events of unpublished batches, and what the release before left unsent in its `outbox`."""
    batches = select(func.coalesce(func.sum(outbox_batches.c.events), 0)).where(
        outbox_batches.c.published_at.is_(None)
    )
    legacy = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
    return int(await conn.scalar(batches) or 0) + int(await conn.scalar(legacy) or 0)
