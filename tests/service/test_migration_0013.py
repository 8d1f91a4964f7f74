"""Migration 0013 adds the outbox in batches beside the release before's `outbox`, which it leaves as
it is (that release, still running during a rollout, goes on using it), and on the way down moves
what is unpublished back into `outbox`, where the release before publishes it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.databases import empty_engine, migrate


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with empty_engine(postgres_server_url, "refund_svc_m13") as engine:
        yield engine


async def legacy_rows(conn: AsyncConnection) -> list[tuple[str, bool, str]]:
    """(event_id, sent, request_id) of every row of `outbox`."""
    rows = await conn.execute(
        text("SELECT event_id, sent_at IS NOT NULL, data->>'request_id' FROM outbox ORDER BY seq")
    )
    return [(event_id, sent, request_id) for event_id, sent, request_id in rows]


async def test_0013_leaves_the_release_befores_outbox_and_the_way_down_keeps_whats_unpublished(
    empty_database: AsyncEngine,
) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(migrate, "0012")
        await conn.execute(
            text("""
            INSERT INTO outbox (event_id, topic, key, ce_type, ce_time, data, sent_at) VALUES
                ('old-sent', 'refund-issued', 'sub-1', 'refund.issued', now(), '{"request_id": "r1"}', now()),
                ('old-unsent', 'refund-issued', 'sub-2', 'refund.issued', now(), '{"request_id": "r2"}', NULL)
            """)
        )
        before = await legacy_rows(conn)
        await conn.run_sync(migrate, "0013")
        after = await legacy_rows(conn)
        await conn.execute(
            text(
                "INSERT INTO outbox_batches (batch, events, published_at) VALUES (1, 1, now()), (2, 2, NULL)"
            )
        )
        for batch, position, event_id, request_id in (
            (1, 0, "new-sent", "r3"),
            (2, 0, "new-a", "r4"),
            (2, 1, "new-b", "r4"),
        ):
            await conn.execute(
                text("""
                INSERT INTO outbox_events (batch, position, event_id, topic, key, ce_type, ce_time, body)
                VALUES (:batch, :position, :event_id, 'refund-issued', 'sub-3', 'refund.issued', now(), :body)
                """),
                {
                    "batch": batch,
                    "position": position,
                    "event_id": event_id,
                    "body": f'{{"request_id":"{request_id}"}}',
                },
            )
        await conn.run_sync(migrate, "0012", down=True)
        restored = await legacy_rows(conn)
        tables = await conn.scalar(
            text("SELECT to_regclass('outbox_events') IS NULL AND to_regclass('outbox_batches') IS NULL")
        )

    assert before == after == [("old-sent", True, "r1"), ("old-unsent", False, "r2")]
    assert restored == [*before, ("new-a", False, "r4"), ("new-b", False, "r4")]
    assert tables is True
