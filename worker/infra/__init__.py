"""Local infrastructure the worker can start by itself: an embedded Kafka broker and PostgreSQL."""

from worker.infra.embedded import (
    EXTRA_MISSING,
    TANSU_GROUP_SETTINGS,
    EmbeddedServiceError,
    embedded_kafka,
    embedded_postgres,
    embedded_services_installed,
)

__all__ = [
    "EXTRA_MISSING",
    "TANSU_GROUP_SETTINGS",
    "EmbeddedServiceError",
    "embedded_kafka",
    "embedded_postgres",
    "embedded_services_installed",
]
