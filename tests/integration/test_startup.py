"""Start-up is as patient as steady state: workers on a database without its schema consume nothing
until it is migrated, then answer every request once and dead-letter nothing; what no wait can fix
(a taken METRICS_PORT, a database that does not exist) is one line on stderr, no traceback."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from schemas.topics import Topic, dead_letter_topic
from tests.databases import fresh_database
from tests.integration.dead_letter_support import RecordWatcher
from tests.integration.harness import (
    OutputWatcher,
    Received,
    event,
    publish,
    termination_data,
    unique,
    worker_settings,
)
from worker.app import Services, build_worker
from worker.db.migrate import upgrade_to_head
from worker.engine.runtime import create_engine

pytestmark = pytest.mark.integration

REQUESTED = Topic.TERMINATION_REQUESTED
DLT = dead_letter_topic(REQUESTED)
WORKERS = 2


def distinct_events(received: list[Received], request_ids: set[str]) -> Counter[tuple[str, str]]:
    """(request, topic) -> how many distinct ce_ids: a relay repeating an event repeats its ce_id."""
    return Counter(
        {(r.data["request_id"], r.topic) for r in received if r.data.get("request_id") in request_ids}
    )


async def until(condition: Callable[[], bool], within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_workers_on_a_database_without_its_schema_wait_for_the_migration_and_dead_letter_nothing(
    kafka_bootstrap: str, postgres_server_url: str, kafka_group_settings: dict[str, int]
) -> None:
    requests = {unique("ce"): termination_data() for _ in range(8)}
    keys = [data["subscription_id"].encode() for data in requests.values()]
    async with fresh_database(postgres_server_url, prefix="refund_empty") as url:
        settings = worker_settings(
            kafka_bootstrap,
            url,
            kafka_group_settings,
            consumer_group=unique("schema-late"),
            migrate_on_start=False,
            retry_attempts=2,
            retry_backoff_seconds=0.05,
        )
        workers = [build_worker(settings, Services(kafka_bootstrap, url)) for _ in range(WORKERS)]
        async with (
            OutputWatcher(kafka_bootstrap) as outputs,
            RecordWatcher(kafka_bootstrap, [DLT]) as dead_letters,
        ):
            starting = [asyncio.create_task(worker.app.start()) for worker in workers]
            try:
                await until(lambda: all("schema" in w.startup.check().detail for w in workers))
                await publish(
                    kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in requests.items()]
                )
                await outputs.wait_for(lambda _: True, settle=3.0)  # the migration Job is late
                assert outputs.about(set(requests)) == []
                assert not any(task.done() for task in starting)  # still waiting, not crashed

                migrator = create_engine(url, pool_size=1)
                try:
                    await upgrade_to_head(migrator)
                finally:
                    await migrator.dispose()
                await asyncio.wait_for(asyncio.gather(*starting), timeout=60)
                assert all(worker.startup.check().ok for worker in workers)
                await outputs.answers(set(requests), within=60.0, settle=1.0)
                await dead_letters.wait_for(lambda _: True, settle=1.0)
            finally:
                for task in starting:
                    task.cancel()
                await asyncio.wait(starting)
                for worker in workers:
                    await worker.app.stop()

    assert dead_letters.with_keys(*keys) == []
    assert distinct_events(outputs.received, set(requests)) == {
        (ce_id, topic): 1 for ce_id in requests for topic in ("refund-issued", "subscription-terminated")
    }


def refund_worker(*args: str, timeout: float = 120.0, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, in its own process: what reaches stderr is what they see."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_with_its_metrics_port_taken_says_so_in_one_line_and_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = refund_worker(
            "run",
            METRICS_HOST="127.0.0.1",
            METRICS_PORT=str(port),
            KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",  # never reached: the port is checked first
            DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"refund-worker: cannot listen on 127.0.0.1:{port} (METRICS_PORT): Address already in use; "
        "set METRICS_PORT to a free port, or 0 for none"
    ]


def test_migrate_against_a_database_that_does_not_exist_says_so_in_one_line(postgres_server_url: str) -> None:
    name = f"refund_missing_{secrets.token_hex(4)}"
    missing = urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}"))

    result = refund_worker("migrate", DATABASE_URL=missing)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("refund-worker: cannot migrate ")
    assert line.endswith(f'InvalidCatalogNameError: database "{name}" does not exist')


def test_migrate_against_an_unreachable_server_says_so_in_one_line() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        result = refund_worker("migrate", DATABASE_URL=f"postgresql://nobody@127.0.0.1:{port}/none")

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"refund-worker: cannot migrate: the database at postgresql://nobody@127.0.0.1:{port}"
    )
    assert "is unreachable (ConnectionRefusedError" in line
