"""Session-wide services for the integration tests: a Kafka broker and a fresh PostgreSQL database.

Each service comes from the first of: its environment variable (KAFKA_BOOTSTRAP_SERVERS,
DATABASE_URL), a Docker engine through testcontainers, the embedded services of worker.infra
(Tansu, embedded PostgreSQL). Nothing starts unless a test asks for it, so unit runs stay fast.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from urllib.parse import urlsplit

import pytest

from tests.databases import fresh_database
from worker.infra.postgres import embedded_postgres
from worker.infra.tansu import TANSU_GROUP_SETTINGS, embedded_kafka

# Timeouts any Kafka accepts (its minimum session timeout is 6 s by default).
KAFKA_GROUP_SETTINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

# Pinned images for the testcontainers branch, so a run does not change under us.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:18-alpine"


def _from_environment(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None  # blank means unset, as in worker.config.settings


@functools.cache
def docker_engine_answers(timeout: float = 0.5) -> bool:
    """Whether a Docker engine answers `GET /_ping` on DOCKER_HOST (unix or tcp) within `timeout`."""
    parts = urlsplit(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock")
    address: str | tuple[str, int]
    if parts.scheme == "unix":
        family, address = socket.AF_UNIX, parts.path
    elif parts.scheme == "tcp" and parts.hostname:
        family, address = socket.AF_INET, (parts.hostname, parts.port or 2375)
    else:
        return False  # ssh://, npipe://: not worth a slow probe; the embedded services are used
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


@contextmanager
def _testcontainers_kafka() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE) as kafka:
        yield str(kafka.get_bootstrap_server())


@contextmanager
def _testcontainers_postgres() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver=None) as postgres:
        yield str(postgres.get_connection_url())


@contextmanager
def _given(value: str) -> Iterator[str]:
    yield value


def _kafka_source() -> tuple[AbstractContextManager[str], dict[str, int]]:
    if given := _from_environment("KAFKA_BOOTSTRAP_SERVERS"):
        return _given(given), KAFKA_GROUP_SETTINGS
    if docker_engine_answers():
        return _testcontainers_kafka(), KAFKA_GROUP_SETTINGS
    return embedded_kafka(), TANSU_GROUP_SETTINGS


def _postgres_source() -> AbstractContextManager[str]:
    if given := _from_environment("DATABASE_URL"):
        return _given(given)
    if docker_engine_answers():
        return _testcontainers_postgres()
    return embedded_postgres()


@pytest.fixture(scope="session")
def _kafka() -> Iterator[tuple[str, dict[str, int]]]:
    source, group_settings = _kafka_source()
    with source as bootstrap:
        yield bootstrap, group_settings


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka: tuple[str, dict[str, int]]) -> str:
    """`host:port` of a Kafka broker shared by the session; tests keep apart by topic names."""
    return _kafka[0]


@pytest.fixture(scope="session")
def kafka_group_settings(_kafka: tuple[str, dict[str, int]]) -> dict[str, int]:
    """Consumer-group timeouts (aiokafka keyword arguments) that suit the session's broker."""
    return dict(_kafka[1])


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A URL of the session's PostgreSQL server; its database is not ours to fill."""
    with _postgres_source() as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A plain postgresql:// URL of a database created for this session alone, dropped after it."""
    async with fresh_database(postgres_server_url, prefix="refund_test") as url:
        yield url
