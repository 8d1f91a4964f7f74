"""Migration 0012 drops the refunds' foreign key to terminations (its per-row check was the costliest
statement of a termination batch) and puts it back on the way down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import fresh_database
from worker.db.migrate import alembic_config
from worker.engine.runtime import create_engine


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with fresh_database(postgres_server_url, prefix="refund_svc_m12") as url:
        engine = create_engine(url, pool_size=1)
        try:
            yield engine
        finally:
            await engine.dispose()


def _migrate(connection: Connection, revision: str, *, down: bool = False) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


def _refunds_foreign_keys(connection: Connection) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (key["referred_table"], tuple(key["constrained_columns"]))
        for key in inspect(connection).get_foreign_keys("refunds")
    ]


async def test_0012_drops_the_refunds_key_to_terminations_and_the_way_down_restores_it(
    empty_database: AsyncEngine,
) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(_migrate, "0011")
        before = await conn.run_sync(_refunds_foreign_keys)
        await conn.run_sync(_migrate, "0012")
        after = await conn.run_sync(_refunds_foreign_keys)
        await conn.run_sync(_migrate, "0011", down=True)
        restored = await conn.run_sync(_refunds_foreign_keys)

    assert before == [("terminations", ("reseller_id", "subscription_id"))]
    assert after == []
    assert restored == before
