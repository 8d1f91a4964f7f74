"""The outbox gauges count what is not yet published in both tables: the events of unpublished
batches, and what the release before left unsent in its `outbox` (migration 0013)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.topics import TOPICS, Topic
from tests.databases import migrated_engine
from worker.db.schema.outbox import outbox, outbox_batches
from worker.engine.outbox import OutboxEvent
from worker.engine.outbox_store import store_events
from worker.ops.gauge_sources import read_database_gauges

SPEC = TOPICS[Topic.TERMINATION_REJECTED]
NOW = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)


@pytest.fixture
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_gauges") as engine:
        yield engine


def events(prefix: str, count: int) -> list[OutboxEvent]:
    data = {"request_id": "r", "subscription_id": "s"}
    return [OutboxEvent.built(f"{prefix}-{i}", SPEC, data, NOW) for i in range(count)]


def legacy_row(event_id: str, *, sent: bool, age: timedelta) -> dict[str, object]:
    return {
        "event_id": event_id,
        "topic": SPEC.topic.value,
        "key": "s",
        "ce_type": SPEC.ce_type.value,
        "ce_time": NOW,
        "data": {},
        "created_at": datetime.now(UTC) - age,
        "sent_at": NOW if sent else None,
    }


async def test_the_backlog_counts_unpublished_batches_and_the_release_befores_unsent_rows(
    database: AsyncEngine,
) -> None:
    async with database.begin() as conn:
        published = await store_events(conn, events("published", 5))
        await store_events(conn, events("waiting", 3))
        assert published is not None
        mark = update(outbox_batches).where(outbox_batches.c.batch == published.batch)
        await conn.execute(mark.values(published_at=func.now()))
        await conn.execute(
            insert(outbox),
            [
                legacy_row("old-unsent-1", sent=False, age=timedelta(minutes=10)),
                legacy_row("old-unsent-2", sent=False, age=timedelta(minutes=1)),
                legacy_row("old-sent", sent=True, age=timedelta(hours=1)),
            ],
        )

    gauges = await read_database_gauges(database)

    assert gauges.outbox_backlog == 3 + 2
    assert 600 <= gauges.outbox_oldest_age_seconds < 660  # the release before's oldest unsent row


async def test_an_empty_outbox_reports_nothing_waiting(database: AsyncEngine) -> None:
    gauges = await read_database_gauges(database)

    assert (gauges.outbox_backlog, gauges.outbox_oldest_age_seconds) == (0, 0.0)
