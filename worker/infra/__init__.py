"""Local infrastructure the worker can start by itself: an embedded Kafka broker and PostgreSQL."""

from worker.infra.embedded import (
    TANSU_GROUP_SETTINGS,
    EmbeddedServiceError,
    embedded_kafka,
    embedded_postgres,
)

__all__ = ["TANSU_GROUP_SETTINGS", "EmbeddedServiceError", "embedded_kafka", "embedded_postgres"]
