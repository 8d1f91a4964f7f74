"""The Deployment's init container, run as Kubernetes runs it, against PostgreSQL: a new pod's
worker does not start until the migration Job has brought the schema to the image's head."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.databases import fresh_database
from tests.unit.test_deploy_k8s import wait_for_schema_script
from worker.db.migrate import head_revision
from worker.engine.runtime import migrate_database

pytestmark = pytest.mark.slow  # each runs the init container's script as a process: about 10 s

POLL_SECONDS = "0.2"  # the Deployment waits 5 s between looks; the test need not


@asynccontextmanager
async def waiting_container(database_url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    script, interval = wait_for_schema_script()
    assert float(interval) >= 1  # the real interval spares the database
    environment = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, POLL_SECONDS, env=environment, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def next_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode().strip()


async def test_waits_while_the_schema_is_behind_and_ends_once_it_is_at_head(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url, waiting_container(url) as container:
        assert await next_line(container) == f"schema behind: no schema yet, head is {head_revision()}"
        assert await next_line(container) == f"schema behind: no schema yet, head is {head_revision()}"
        assert container.returncode is None

        await migrate_database(url)  # the Job
        lines = [await next_line(container)]
        while lines[-1]:  # until the program ends (an empty read)
            lines.append(await next_line(container))
        assert lines[-2] == "schema ok"
        assert await asyncio.wait_for(container.wait(), timeout=30) == 0


async def test_keeps_waiting_while_the_database_is_unreachable() -> None:
    unreachable = "postgresql://postgres@127.0.0.1:9/none"  # the discard port: nothing listens
    async with waiting_container(unreachable) as container:
        assert (await next_line(container)).startswith("database unreachable (")
        assert (await next_line(container)).startswith("database unreachable (")
        assert container.returncode is None
