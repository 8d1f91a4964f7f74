"""Alembic environment: runs on the connection handed over by worker.db.migrate (asyncpg)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import worker.db.adjustment_tables  # noqa: F401 - its tables join the metadata
from worker.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `refund-worker migrate`, which supplies the connection")
_run(connection)
