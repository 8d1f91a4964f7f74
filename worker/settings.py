"""The worker's configuration, read from the environment (contract section 4)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Unset KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL mean: start the embedded broker / database."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap_servers: str | None = None
    database_url: str | None = None
    refund_window_days: int = Field(14, ge=0)
    expiry_grace_days: float = Field(28, ge=0)
    consumer_group: str = Field("refund-worker", min_length=1)

    # Beyond the contract: knobs with safe defaults (README, "Configuration").
    ce_source: str = Field("/refund-worker", min_length=1)
    migrate_on_start: bool = True
    topic_partitions: int = Field(4, ge=1)
    """Partitions of a topic the worker has to create (an input or output topic missing at start)."""
    batch_max_records: int = Field(500, ge=1)
    batch_timeout_ms: int = Field(20, ge=0)
    outbox_batch_size: int = Field(2000, ge=1)
    outbox_poll_seconds: float = Field(1.0, gt=0)
    expiry_check_seconds: float = Field(1.0, gt=0)
    retry_attempts: int = Field(3, ge=1)
    """Attempts at a message that fails unexpectedly before it is dead-lettered."""
    retry_backoff_seconds: float = Field(0.2, ge=0)
    kafka_session_timeout_ms: int | None = Field(None, ge=1000)
    """None: 10 s against a real Kafka, 1 s against the embedded broker (Tansu rejoins slowly otherwise)."""
    kafka_heartbeat_interval_ms: int | None = Field(None, ge=100)
    database_pool_size: int = Field(5, ge=1)
    log_level: str = "INFO"

    @field_validator("kafka_bootstrap_servers", "database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def async_database_url(url: str) -> str:
    """The SQLAlchemy URL for a plain postgresql:// URL: the worker picks its own driver (asyncpg)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


def redacted(url: str) -> str:
    """A URL fit for logs: the password, if any, replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
