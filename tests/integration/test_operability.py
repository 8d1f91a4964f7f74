"""The worker's HTTP side against the real broker and database: probes, metrics, and readiness that
fails while a dependency is away or the schema is behind, and recovers when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from alembic import command
from faststream.kafka import KafkaBroker
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.topics import INPUT_TOPICS, Topic
from tests.databases import fresh_database
from tests.headers import header
from tests.integration.harness import OutputWatcher, event, publish, termination_data, unique, worker_settings
from worker.app import Services, Worker, build_worker
from worker.config.settings import Settings
from worker.db.migrate import alembic_config, head_revision, upgrade_to_head
from worker.engine.runtime import create_engine
from worker.infra.tansu import embedded_kafka
from worker.ops.health import LIVE_PATH, METRICS_PATH, READY_PATH, Check, HttpServer, Readiness

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def http_get(url: str) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    return await asyncio.to_thread(fetch)


async def eventually(probe: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Worker, str]]:
    """The worker as `refund-worker run` serves it, on a free port of 127.0.0.1."""
    assert settings.kafka_bootstrap_servers
    assert settings.database_url
    worker = build_worker(settings, Services(settings.kafka_bootstrap_servers, settings.database_url))
    server = HttpServer(worker.app, worker.http_routes, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    running = asyncio.create_task(server.serve())

    async def answers() -> bool:
        assert not running.done(), "the server stopped while starting"
        with contextlib.suppress(OSError):
            return (await http_get(base + LIVE_PATH))[0] == 200
        return False

    try:
        await eventually(answers, within=30)
        yield worker, base
    finally:
        server.stop()
        await running


async def readiness(base: str) -> tuple[int, dict[str, Any]]:
    status, body = await http_get(base + READY_PATH)
    parsed: dict[str, Any] = json.loads(body)
    return status, parsed


async def is_ready(base: str) -> bool:
    return (await readiness(base))[0] == 200


async def scrape(base: str) -> Samples:
    status, body = await http_get(base + METRICS_PATH)
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def with_name(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: found for (sample, labels), found in samples.items() if sample == name}


async def test_probes_and_metrics_of_a_running_worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> None:
    settings = worker_settings(kafka_bootstrap, database_url, kafka_group_settings)
    async with serving(settings) as (_, base), OutputWatcher(kafka_bootstrap) as watcher:
        status, body = await http_get(base + LIVE_PATH)
        assert (status, json.loads(body)) == (200, {"status": "alive"})
        await eventually(partial(is_ready, base))  # the broker may still be connecting as HTTP opens
        assert await readiness(base) == (
            200,
            {
                "status": "ready",
                "checks": {"startup": "ok", "database": "ok", "migrations": "ok", "broker": "ok"},
            },
        )

        data = termination_data(amount_paid="12.345", currency="KWD", timezone="Asia/Kuwait")
        request = event(Topic.TERMINATION_REQUESTED, data)
        await publish(kafka_bootstrap, [request])
        await watcher.answers({header(tuple(request.headers), "ce_id").decode()})

        async def relayed() -> bool:
            return value(await scrape(base), "refund_worker_outbox_backlog") == 0

        await eventually(relayed)
        samples = await scrape(base)

    topic = Topic.TERMINATION_REQUESTED.value
    assert value(samples, "refund_worker_refunds_issued_total", currency="KWD", method="account_credit") == 1
    assert value(samples, "refund_worker_refunded_amount_total", currency="KWD") == 12.345
    assert value(samples, "refund_worker_decisions_total", outcome="terminated") == 1
    assert (value(samples, "refund_worker_messages_consumed_total", topic=topic) or 0) >= 1
    assert (value(samples, "refund_worker_batch_seconds_count", topic=topic) or 0) >= 1
    assert value(samples, "refund_worker_outbox_oldest_age_seconds") == 0
    assert value(samples, "refund_worker_expiry_timers_due") is not None
    # FastStream's own middleware, in the same registry. It labels a batch by its first record's
    # topic only (one subscriber reads every input topic), so its series are counted together.
    received = with_name(samples, "refund_worker_received_messages_total")
    assert all(dict(labels)["app_name"] == "refund-worker" for labels in received)
    assert sum(received.values()) >= 1
    lags = with_name(samples, "refund_worker_consumer_lag")
    assert {dict(labels)["topic"] for labels in lags} == {t.value for t in INPUT_TOPICS}
    assert all(lag == 0 for labels, lag in lags.items() if dict(labels)["topic"] == topic)


class TcpProxy:
    """A TCP relay to a server, which can be cut (listener and every connection) and restored."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(
            self._pump(client_reader, server_writer), self._pump(server_reader, client_writer)
        )
        self._writers -= {client_writer, server_writer}

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()


# The proxy refuses connections: only the error class is shown, never its message (it names hosts).
DATABASE_AWAY = "unreachable (ConnectionRefusedError)"


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


async def test_readiness_fails_while_the_database_is_away_and_recovers(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> None:
    parts = urlsplit(database_url)
    assert parts.hostname
    assert parts.port
    proxy = TcpProxy(parts.hostname, parts.port)
    await proxy.start()
    settings = worker_settings(
        kafka_bootstrap,
        through(proxy, database_url),
        kafka_group_settings,
    )
    async with serving(settings) as (_, base):
        await eventually(partial(is_ready, base))
        await proxy.cut()

        status, body = await readiness(base)
        assert (status, body["status"]) == (503, "not ready")
        assert body["checks"] == {
            "startup": "ok",
            "database": DATABASE_AWAY,
            "migrations": "unknown",
            "broker": "ok",
        }
        assert (await http_get(base + LIVE_PATH))[0] == 200  # alive: it waits, it is not broken
        assert value(await scrape(base), "refund_worker_outbox_backlog") is not None  # stale but served

        await proxy.start()
        await eventually(partial(is_ready, base))


@contextlib.asynccontextmanager
async def fresh_engine(server_url: str) -> AsyncIterator[AsyncEngine]:
    async with fresh_database(server_url, prefix="refund_ready") as url:
        engine = create_engine(url, pool_size=1)
        try:
            yield engine
        finally:
            await engine.dispose()


def upgrade_to(revision: str) -> Callable[[Connection], None]:
    def upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade


async def test_readiness_names_a_schema_that_is_behind_until_it_is_migrated(
    kafka_bootstrap: str, postgres_server_url: str
) -> None:
    head = head_revision()
    broker = KafkaBroker(kafka_bootstrap, logger=None)
    await broker.start()
    try:
        async with fresh_engine(postgres_server_url) as engine:
            probe = Readiness(engine, broker, timeout=2.0)
            assert (await probe.checks())["migrations"] == Check(
                False, f"behind: no schema yet, head is {head}"
            )

            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to("0001"))
            assert (await probe.checks())["migrations"] == Check(False, f"behind: at 0001, head is {head}")

            await upgrade_to_head(engine)
            assert await probe.checks() == {
                "database": Check(True, "ok"),
                "migrations": Check(True, "ok"),
                "broker": Check(True, "ok"),
            }
    finally:
        await broker.stop()


async def test_readiness_fails_while_the_broker_is_away(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    exit_stack = contextlib.ExitStack()
    bootstrap = await asyncio.to_thread(exit_stack.enter_context, embedded_kafka())
    broker = KafkaBroker(bootstrap, logger=None, client_id=unique("readiness"))
    try:
        await broker.start()
        probe = Readiness(engine, broker, timeout=1.0)
        assert (await probe.checks())["broker"] == Check(True, "ok")

        await asyncio.to_thread(exit_stack.close)  # the broker process stops
        assert (await probe.checks())["broker"] == Check(False, "unreachable")
    finally:
        await asyncio.to_thread(exit_stack.close)
        await broker.stop()
        await engine.dispose()
