"""A PostgreSQL database of one test (or one session) alone, created and dropped around it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from worker.config.settings import async_database_url
from worker.db.migrate import alembic_config, upgrade_to_head
from worker.engine.runtime import create_engine


@asynccontextmanager
async def fresh_database(server_url: str, prefix: str = "refund_svc") -> AsyncIterator[str]:
    """A plain postgresql:// URL of a new, empty database on the server of `server_url`; `prefix`
    names its owner, for whoever finds one a crashed run left behind."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    server = create_async_engine(
        async_database_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with server.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        async with server.connect() as connection:
            # FORCE: a connection a failed test left open must not keep the database alive.
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await server.dispose()


@asynccontextmanager
async def migrated_engine(server_url: str, prefix: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database with the schema at head."""
    async with fresh_database(server_url, prefix) as url:
        engine = create_engine(url, pool_size=2)
        try:
            await upgrade_to_head(engine)
            yield engine
        finally:
            await engine.dispose()


@asynccontextmanager
async def empty_engine(server_url: str, prefix: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database without a schema: a migration test takes it where it wants."""
    async with fresh_database(server_url, prefix) as url:
        engine = create_engine(url, pool_size=1)
        try:
            yield engine
        finally:
            await engine.dispose()


def migrate(connection: Connection, revision: str, *, down: bool = False) -> None:
    """Alembic up (or `down`) to `revision` on this connection, for `conn.run_sync(migrate, ...)`."""
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)
