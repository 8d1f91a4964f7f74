"""The broker and PostgreSQL server the benchmark runs against, and its throw-away databases."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text

from worker.engine.runtime import create_engine
from worker.infra.postgres import embedded_postgres
from worker.infra.tansu import embedded_kafka


@contextlib.contextmanager
def services(*, kafka: bool = True) -> Iterator[tuple[str, str]]:
    with contextlib.ExitStack() as stack:
        bootstrap = ""
        if kafka:
            bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(embedded_kafka())
        server = os.environ.get("DATABASE_URL") or stack.enter_context(embedded_postgres())
        yield bootstrap, server


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, template: str | None = None) -> AsyncIterator[str]:
    """A new database; a copy of `template` (a database URL on the same server) if given."""
    name = f"refund_bench_{secrets.token_hex(4)}"
    copy_of = f' TEMPLATE "{database_name(template)}"' if template else ""
    admin = create_engine(server_url)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
