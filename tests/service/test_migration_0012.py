"""Migration 0012 drops the refunds' foreign key to terminations (its per-row check was the costliest
statement of a termination batch) and puts it back on the way down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import empty_engine, migrate


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with empty_engine(postgres_server_url, "refund_svc_m12") as engine:
        yield engine


def _refunds_foreign_keys(connection: Connection) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (key["referred_table"], tuple(key["constrained_columns"]))
        for key in inspect(connection).get_foreign_keys("refunds")
    ]


async def test_0012_drops_the_refunds_key_to_terminations_and_the_way_down_restores_it(
    empty_database: AsyncEngine,
) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(migrate, "0011")
        before = await conn.run_sync(_refunds_foreign_keys)
        await conn.run_sync(migrate, "0012")
        after = await conn.run_sync(_refunds_foreign_keys)
        await conn.run_sync(migrate, "0011", down=True)
        restored = await conn.run_sync(_refunds_foreign_keys)

    assert before == [("terminations", ("reseller_id", "subscription_id"))]
    assert after == []
    assert restored == before
