"""`refund-worker run` started while its broker or database is away: the process waits (no exit, no
traceback), readiness says what it waits for, one log line says so, and once the service is
there the worker answers requests as if it had started normally."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from schemas.topics import Topic
from tests.integration.harness import OutputWatcher, event, publish, termination_data, unique
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.worker_processes import WorkerProcess, worker_env
from worker.infra.processes import LOCALHOST

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A cold start of a worker process on a loaded 2-core machine took up to 19 s (the fault tests).
START_WITHIN = 90.0


def _readiness(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://{LOCALHOST}:{port}/health/ready", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


async def _until(condition: Callable[[], bool], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            if await asyncio.to_thread(condition):
                return
        except OSError:
            pass  # the HTTP server is not listening yet
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.3)


@asynccontextmanager
async def started_worker(env: dict[str, str], log: Path) -> AsyncIterator[WorkerProcess]:
    worker = WorkerProcess(env, metrics=True, log=log)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def _waiting_for(port: int, what: str) -> bool:
    status, body = _readiness(port)
    return status == 503 and what in json.dumps(body)


def _ready(port: int) -> bool:
    return _readiness(port)[0] == 200


async def _answered_after_the_outage(
    worker: WorkerProcess, proxy: TcpProxy, what: str, kafka_bootstrap: str, log: Path
) -> None:
    await _until(lambda: _waiting_for(worker.metrics_port, what), START_WITHIN)
    await asyncio.sleep(2.0)  # a few retries' worth: still waiting, not exited
    assert worker.running
    assert _waiting_for(worker.metrics_port, what)

    ce_id = unique("ce")
    async with OutputWatcher(kafka_bootstrap) as outputs:
        await proxy.restore()
        await _until(lambda: _ready(worker.metrics_port), 60.0)
        await publish(kafka_bootstrap, [event(Topic.TERMINATION_REQUESTED, termination_data(), ce_id)])
        await outputs.answers({ce_id}, within=60.0)

    assert await asyncio.to_thread(worker.terminate) == 0
    written = await asyncio.to_thread(log.read_text)
    assert "Traceback" not in written
    assert sum(f"start-up waits for {what}" in line for line in written.splitlines()) == 1


def _database_through_a_proxy(database_url: str) -> tuple[TcpProxy, str]:
    """A proxy to the database (not listening until restored or entered) and the URL through it."""
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.port or 5432)
    return proxy, urlunsplit(parts._replace(netloc=f"{parts.username}@{LOCALHOST}:{proxy.port}"))


async def test_run_with_the_broker_down_waits_says_so_and_answers_once_it_is_there(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int], tmp_path: Path
) -> None:
    broker_port = int(kafka_bootstrap.rsplit(":", 1)[1])
    proxy = TcpProxy(broker_port)  # not listening yet: the broker is away as the worker starts
    env = worker_env(f"{LOCALHOST}:{proxy.port}", database_url, unique("late-broker"), kafka_group_settings)
    log = tmp_path / "worker.log"
    try:
        async with started_worker(env, log) as worker:
            await _answered_after_the_outage(worker, proxy, "the broker", kafka_bootstrap, log)
    finally:
        await proxy.cut()


async def test_run_with_the_database_down_waits_says_so_and_answers_once_it_is_there(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int], tmp_path: Path
) -> None:
    proxy, through_proxy = _database_through_a_proxy(database_url)
    env = worker_env(kafka_bootstrap, through_proxy, unique("late-database"), kafka_group_settings)
    log = tmp_path / "worker.log"
    try:
        async with started_worker(env, log) as worker:
            await _answered_after_the_outage(worker, proxy, "the database", kafka_bootstrap, log)
    finally:
        await proxy.cut()


async def test_a_worker_whose_database_stops_answering_still_stops_on_sigterm(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int], tmp_path: Path
) -> None:
    proxy, through_proxy = _database_through_a_proxy(database_url)
    env = worker_env(kafka_bootstrap, through_proxy, unique("frozen-database"), kafka_group_settings)
    async with proxy, started_worker(env, tmp_path / "worker.log") as worker:
        await _until(lambda: _ready(worker.metrics_port), START_WITHIN)
        # Waiting here, not in a thread, freezes this loop and the proxy on it: the database
        # no longer answers, as behind a partition. The worker gives up its goodbye and exits.
        assert worker.terminate(within=30) == 0
