"""The worker's configuration, read from the environment (contract section 4)."""

from __future__ import annotations

from typing import Literal, Self, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.domain.grace_period import DEFAULT_GRACE_DAYS
from worker.domain.money_refund_facts import DEFAULT_MONEY_REFUND_TIMEOUT_HOURS
from worker.domain.policy import DEFAULT_WINDOW_DAYS

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


# The schemes DATABASE_URL may name: the worker picks its own driver (asyncpg).
DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+asyncpg"})


class Settings(BaseSettings):
    """Unset KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL mean: start the embedded broker / database."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap_servers: str | None = None
    database_url: str | None = None
    refund_window_days: int = Field(DEFAULT_WINDOW_DAYS, ge=0)
    expiry_grace_days: float = Field(DEFAULT_GRACE_DAYS, ge=0)
    consumer_group: str = Field("refund-worker", min_length=1)
    money_refund_timeout_hours: float = Field(DEFAULT_MONEY_REFUND_TIMEOUT_HOURS, gt=0)
    """Contract section 9: an unsettled money refund is reported overdue this long after it was
    instructed; fractions allowed. Read when a request is instructed: its deadline is stored then."""

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
    money_refund_check_seconds: float = Field(10.0, gt=0, le=60)
    """The longest a worker goes without looking for overdue money refunds: reported within a minute."""
    retry_attempts: int = Field(3, ge=1)
    """Attempts at a message that fails unexpectedly before it is dead-lettered."""
    retry_backoff_seconds: float = Field(0.2, ge=0)
    """The first wait before a retry, doubled at each one up to 30 s: after an unexpected error, and
    while the database or the broker is away (docs/dead-letters.md)."""
    kafka_session_timeout_ms: int | None = Field(None, ge=1000)
    """None: 10 s against a real Kafka, 1 s against the embedded broker (Tansu rejoins slowly otherwise)."""
    kafka_heartbeat_interval_ms: int | None = Field(None, ge=100)
    database_pool_size: int = Field(5, ge=1)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Operability (docs/production.md): one HTTP port for /metrics, /health/live and /health/ready.
    metrics_port: int = Field(9102, ge=0, le=65535)
    """0: no HTTP server at all, so no metrics and no probes."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scrapes and probes come from outside the container
    health_check_timeout_seconds: float = Field(2.0, gt=0)
    """How long readiness waits for the database or the broker to answer (and /metrics for its gauges)."""
    liveness_stall_seconds: float = Field(120.0, gt=0)
    """/health/live fails when a batch has been in hand this long without progress (rewound without
    end, or a step that never returns); keep it above the longest retry backoff."""
    liveness_loop_blocked_seconds: float = Field(10.0, gt=0)
    """/health/live fails when the event loop was blocked this long since the previous probe."""

    # Kafka over TLS and/or SASL: every Kafka client the worker creates uses these (config/security.py).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    """CA bundle to verify the brokers with; unset: the system's trusted CAs."""
    kafka_ssl_certfile: str | None = None
    """Client certificate, for brokers that require mutual TLS (with KAFKA_SSL_KEYFILE)."""
    kafka_ssl_keyfile: str | None = None
    # PostgreSQL over TLS, as libpq names it; unset: asyncpg's default (prefer TLS, do not verify).
    database_sslmode: SslMode | None = None
    database_sslrootcert: str | None = None
    """CA bundle to verify the server with (verify-ca, verify-full); unset: the system's trusted CAs."""
    # Latency (docs/performance.md): how long a fetch waits for data the broker does not have yet.
    # Tansu answers a waiting fetch only at this deadline, so it is a floor under every batch's latency.
    kafka_fetch_max_wait_ms: int = Field(100, ge=0)

    @field_validator(
        "kafka_bootstrap_servers",
        "database_url",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "database_sslmode",
        "database_sslrootcert",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _is_a_postgresql_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in DATABASE_SCHEMES:
            raise ValueError("is not a postgresql:// URL (the worker picks its own driver)")
        return value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", "database_sslmode", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Self:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        credentials = (self.kafka_sasl_mechanism, self.kafka_sasl_username, self.kafka_sasl_password)
        if sasl and None in credentials:
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if not sasl and self.kafka_sasl_mechanism is not None:
            raise ValueError("KAFKA_SASL_MECHANISM is set but KAFKA_SECURITY_PROTOCOL is not SASL_*")
        tls_files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if not self.kafka_security_protocol.endswith("SSL") and any(tls_files):
            raise ValueError("KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL is not SSL or SASL_SSL")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        return self

    @model_validator(mode="after")
    def _database_tls_is_consistent(self) -> Self:
        verifying = self.database_sslmode in ("require", "verify-ca", "verify-full")
        if self.database_sslrootcert is not None and not verifying:
            raise ValueError("DATABASE_SSLROOTCERT needs DATABASE_SSLMODE require, verify-ca or verify-full")
        return self


def async_database_url(url: str) -> str:
    """The SQLAlchemy URL for a plain postgresql:// URL: the worker picks its own driver (asyncpg)."""
    parts = urlsplit(url)
    if parts.scheme not in DATABASE_SCHEMES:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


def redacted(url: str) -> str:
    """A URL fit for logs: the password, if any, replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class InvalidSettings(ValueError):
    """The environment does not make a valid configuration; the message names each variable at fault."""


def load_settings() -> Settings:
    """Settings from the environment, or InvalidSettings with one line naming each bad variable."""
    try:
        return Settings()
    except ValidationError as invalid:
        raise InvalidSettings(describe_settings_error(invalid)) from None


_PROBLEMS = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "bool_parsing": "is not true or false (true/false, 1/0, yes/no, on/off)",
    "string_too_short": "must not be empty",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be above {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be below {lt}",
    "literal_error": "must be {expected}",
}


def describe_settings_error(invalid: ValidationError) -> str:
    """`REFUND_WINDOW_DAYS='abc' is not a whole number`: each problem with its variable and value,
    all on one line. A secret's value is never shown."""
    return "; ".join(_settings_problem(detail) for detail in invalid.errors(include_url=False))


def _settings_problem(detail: ErrorDetails) -> str:
    if not detail["loc"]:  # a check across variables (a model validator): its message names them
        return detail["msg"].removeprefix("Value error, ")
    field = str(detail["loc"][0])
    variable = f"{Settings.model_config.get('env_prefix', '')}{field}".upper()
    annotation = Settings.model_fields[field].annotation
    secret = annotation is SecretStr or SecretStr in get_args(annotation)
    shown = "'***'" if secret else repr(_without_password(field, detail["input"]))
    template = _PROBLEMS.get(detail["type"])
    limits = {name: _plain(value) for name, value in detail.get("ctx", {}).items()}
    if detail["type"] == "value_error":  # our own validators: their message is written for this line
        problem = detail["msg"].removeprefix("Value error, ")
    else:
        problem = template.format(**limits) if template else detail["msg"].lower()
    return f"{variable}={shown} {problem}"


def _plain(value: object) -> object:
    """0 rather than 0.0 in a message about a limit."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _without_password(field: str, value: object) -> object:
    return redacted(value) if field == "database_url" and isinstance(value, str) else value
