"""Bringing the schema up to date, safely when several workers start at once."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

# Any constant shared by every worker: serialises concurrent `migrate` runs.
_MIGRATION_LOCK = 0x5EF0_0D01


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "worker.db:migrations")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> frozenset[str]:
    """Every revision this release knows: a schema at one of them but not at head is behind."""
    return frozenset(
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    )


async def schema_revision(engine: AsyncEngine) -> str | None:
    """What current_revision reads, without the two INFO lines Alembic's MigrationContext logs each
    time: readiness probes and start-up waits ask every few seconds."""
    async with engine.connect() as conn:
        if not await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL")):
            return None
        revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    return str(revision) if revision is not None else None


async def upgrade_to_head(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await connection.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def autogenerate(connection: Connection, message: str) -> None:
    """For developers: write a new revision from the difference between worker/db/schema/ and the database."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.revision(config, message=message, autogenerate=True)
