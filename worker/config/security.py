"""Kafka over TLS/SASL and PostgreSQL over TLS, from the settings, for every client the worker makes.

Kafka: the settings become one FastStream security object; the broker takes it as it is, and the
worker's own aiokafka clients (the outbox producer, the topic admin) take the keyword arguments
FastStream itself derives from it (`parse_security`), so all of them always connect alike.

PostgreSQL: asyncpg's `ssl` connect argument. The modes that do not verify are passed by name;
verify-ca and verify-full get an SSL context of ours, so the CA bundle is the configured one (or the
system's) rather than whatever asyncpg finds in the home directory.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from worker.config.settings import Settings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """The FastStream security object for the configured protocol; None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    tls = protocol.endswith("SSL")
    context = _kafka_ssl_context(settings) if tls else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    mechanism, username, password = (
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        settings.kafka_sasl_password,
    )
    if mechanism is None or username is None or password is None:  # Settings already refuses this
        raise ValueError(f"{protocol} needs a SASL mechanism, username and password")
    return _SASL[mechanism](username, password.get_secret_value(), ssl_context=context, use_ssl=tls)


def kafka_client_options(security: BaseSecurity | None) -> dict[str, Any]:
    """aiokafka keyword arguments (security_protocol, ssl_context, sasl_*) for the same security."""
    return parse_security(security)


def _kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
    )
    return context


def database_connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg connect arguments for DATABASE_SSLMODE / DATABASE_SSLROOTCERT; {} when unset."""
    mode = settings.database_sslmode
    if mode is None:
        return {}
    root = settings.database_sslrootcert
    if mode == "require" and root is not None:
        mode = "verify-ca"  # as libpq: require with a root certificate verifies the server's chain
    if mode not in ("verify-ca", "verify-full"):
        return {"ssl": mode}
    context = ssl.create_default_context(cafile=root)
    context.check_hostname = mode == "verify-full"
    return {"ssl": context}
