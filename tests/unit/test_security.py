"""Kafka over TLS/SASL and PostgreSQL over TLS: from the environment to every client's arguments."""

from __future__ import annotations

import ssl
from typing import Any

import certifi
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

import worker.app
import worker.engine.runtime
from tests.unit.exact_settings import exact_settings
from worker.app import Services, build_worker
from worker.config.security import database_connect_args, kafka_client_options, kafka_security
from worker.config.settings import Settings
from worker.engine.failures import StartupFailed

CA_BUNDLE = certifi.where()  # any valid PEM bundle will do


def settings(**values: Any) -> Settings:
    return exact_settings(values)


def options(**values: Any) -> dict[str, Any]:
    return kafka_client_options(kafka_security(settings(**values)))


def test_plaintext_adds_nothing() -> None:
    assert kafka_security(settings()) is None
    assert options() == {}


def test_sasl_ssl_with_scram_verifies_the_brokers_and_authenticates() -> None:
    found = options(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="refund-worker",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=CA_BUNDLE,
    )
    context = found.pop("ssl_context")
    assert found == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "refund-worker",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_sasl_plaintext_has_no_tls() -> None:
    found = options(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert (found["security_protocol"], found["sasl_mechanism"], found["ssl_context"]) == (
        "SASL_PLAINTEXT",
        "PLAIN",
        None,
    )


def test_ssl_alone_uses_the_systems_trusted_cas_when_no_cafile_is_given() -> None:
    found = options(kafka_security_protocol="SSL")
    assert found["security_protocol"] == "SSL"
    assert found["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_settings_read_from_the_environment_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "p")
    monkeypatch.setenv("DATABASE_SSLMODE", "VERIFY-FULL")
    found = Settings()
    assert (found.kafka_security_protocol, found.kafka_sasl_mechanism, found.database_sslmode) == (
        "SASL_SSL",
        "SCRAM-SHA-256",
        "verify-full",
    )
    assert "p" not in repr(found.kafka_sasl_password)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"},
            "needs KAFKA_SASL_MECHANISM",
        ),
        ({"kafka_sasl_mechanism": "PLAIN"}, "is not SASL_*"),
        ({"kafka_ssl_cafile": CA_BUNDLE}, "is not SSL or SASL_SSL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": CA_BUNDLE}, "go together"),
        ({"database_sslrootcert": CA_BUNDLE, "database_sslmode": "prefer"}, "DATABASE_SSLROOTCERT needs"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ],
)
def test_incomplete_or_contradictory_security_settings_are_refused(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        settings(**values)


def test_database_tls_is_left_to_the_driver_when_unset() -> None:
    assert database_connect_args(settings()) == {}


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require"])
def test_non_verifying_database_modes_go_to_asyncpg_by_name(mode: str) -> None:
    assert database_connect_args(settings(database_sslmode=mode)) == {"ssl": mode}


@pytest.mark.parametrize(
    ("mode", "checks_hostname"), [("verify-full", True), ("verify-ca", False), ("require", False)]
)
def test_verifying_database_modes_get_a_context_with_the_configured_ca(
    mode: str, checks_hostname: bool
) -> None:
    context = database_connect_args(settings(database_sslmode=mode, database_sslrootcert=CA_BUNDLE))["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, checks_hostname)


SASL_SSL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "refund-worker",
    "kafka_sasl_password": "s3cret",
}


async def test_every_kafka_client_accepts_the_options() -> None:
    found = options(**SASL_SSL)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **found)
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:1", **found)
    assert producer.client._security_protocol == "SASL_SSL"
    assert admin._client._sasl_mechanism == "SCRAM-SHA-512"
    await producer.stop()
    await admin.close()


class StopBeforeConnecting(Exception):
    pass


async def test_the_worker_hands_the_same_security_to_the_broker_its_producer_and_its_topic_admin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producers: list[dict[str, Any]] = []
    admins: list[dict[str, Any]] = []
    real_create_producer = worker.engine.runtime.create_producer

    def create_producer(bootstrap: str, **client_options: Any) -> AIOKafkaProducer:
        producers.append(client_options)
        return real_create_producer(bootstrap, **client_options)

    async def ensure_topics(bootstrap: str, *, partitions: int, **client_options: Any) -> None:
        admins.append(client_options)
        raise StopBeforeConnecting

    async def database_at_head(*args: Any, **kwargs: Any) -> None:
        """Start-up waits for the database first; there is none here."""

    monkeypatch.setattr(worker.app, "create_producer", create_producer)
    monkeypatch.setattr(worker.app, "ensure_topics", ensure_topics)
    monkeypatch.setattr(worker.app, "database_at_head", database_at_head)
    built = build_worker(
        settings(**SASL_SSL, migrate_on_start=False), Services("kafka:9093", "postgresql://u@db/x")
    )
    try:
        with pytest.raises(StartupFailed, match="StopBeforeConnecting"):  # what no wait can fix
            await built.app.start()  # runs the startup hooks, which create the topics first
        servers = built.app.schema.to_specification().to_jsonable()["servers"]
        assert [server.get("security") for server in servers.values()] == [
            [{"$ref": "#/components/securitySchemes/scram512"}]
        ]
        assert [(o["security_protocol"], o["sasl_plain_username"]) for o in producers + admins] == [
            ("SASL_SSL", "refund-worker"),
            ("SASL_SSL", "refund-worker"),
        ]
    finally:
        await built.app.stop()
