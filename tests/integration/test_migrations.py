"""The migrations build exactly the schema that worker/db/tables.py describes."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

import worker.db.adjustment_tables  # noqa: F401 - its tables join the metadata
from worker.db.migrate import current_revision, head_revision, upgrade_to_head
from worker.db.tables import metadata
from worker.engine.runtime import create_engine

pytestmark = pytest.mark.integration


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_database_matches_the_table_definitions(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)  # a second run is a no-op, as when two workers start at once
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()
