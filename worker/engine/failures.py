"""What kind of failure an exception is, and so what the worker does about it. One place only.

- POISON: the message itself is wrong (not a CloudEvent, not the schema, a value the rules refuse,
  an idempotency conflict). Retrying cannot help: dead-letter it at once.
- CONTENTION: a concurrent writer committed first (a unique key, a serialization failure, a
  deadlock). Retry the batch at once; it will see what was committed.
- INFRASTRUCTURE: the database or the broker is away, or the schema is behind this release (a
  missing table or column, SQLSTATE 42P01 / 42703: the migration Job is late, a release added a
  column). Not the message's fault: wait, retry with backoff for as long as it takes, dead-letter
  nothing.
- UNEXPECTED: anything else. Retry a bounded number of times with backoff, then dead-letter.
"""

from __future__ import annotations

from enum import StrEnum

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from asyncpg.exceptions import InterfaceError as DriverInterfaceError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from schemas.errors import InvalidEnvelope, InvalidEventData, InvalidMessage, NotJson
from worker.domain.errors import DomainError


class FailureKind(StrEnum):
    POISON = "poison"
    CONTENTION = "contention"
    INFRASTRUCTURE = "infrastructure"
    UNEXPECTED = "unexpected"


class PoisonMessage(Exception):
    """A message no retry can fix. `reason` names the class of problem for metrics and SREs."""

    reason = "poison"


class IdempotencyConflict(PoisonMessage):
    """The same ce_id arrived earlier with another payload: a producer bug, not a redelivery."""

    reason = "idempotency_conflict"

    @classmethod
    def reused(cls, ce_id: str, what: str = "request") -> IdempotencyConflict:
        """The one wording of this dead letter: `what` names the kind of event that needs a new ce_id."""
        return cls(
            f"ce_id {ce_id!r} was processed before with another payload; a new {what} needs a new ce_id"
        )


class SubscriptionOfAnotherAccount(PoisonMessage):
    """An expiry or renewal naming a subscription its reseller knows under another account
    (worker.domain.ownership): it can never succeed."""

    reason = "account_mismatch"


class ConcurrentWrite(Exception):
    """A concurrent writer changed what a batch decided on, in a way no unique key reports (a balance
    started meanwhile): contention, so the batch is retried and then sees it."""


class CreditNoteRedefined(PoisonMessage):
    """A credit note from the invoice app whose id was recorded before with another amount, currency
    or subscription (worker.domain.credit_note_guard): it can never succeed."""

    reason = "credit_note_redefined"


class UnknownMoneyRefundInstruction(PoisonMessage):
    """A settlement from the payment service for an instruction its account does not have (contract
    section 9, worker.domain.payment_settlements): it can never succeed."""

    reason = "unknown_instruction"


class SettlementConflict(PoisonMessage):
    """A settlement with the other status than the one its instruction was already settled with: an
    instruction is settled once (contract section 9)."""

    reason = "settlement_conflict"


class SchemaNotAtHead(Exception):
    """At start-up: the database's schema is behind this release's head (or absent). An outage:
    the worker consumes nothing until `refund-worker migrate` (or another worker) has run."""


class StartupFailed(Exception):
    """Start-up met something no wait can fix (a taken METRICS_PORT, a database that does not
    exist, refused credentials): `refund-worker run` prints this one line and exits 2."""


class RetriesExhausted(Exception):
    """An unexpected error outlived its retries; the message is dead-lettered with this, and the
    error itself as its `__cause__` (the dead letter's `kafka_dlt-exception-cause-fqcn`)."""

    reason = "retries_exhausted"

    def __init__(self, cause: BaseException, attempts: int) -> None:
        super().__init__(f"{brief(cause)} (after {attempts} attempt{'' if attempts == 1 else 's'})")
        self.attempts = attempts
        self.__cause__ = cause


_CONTENTION_STATES = {"23505", "40001", "40P01"}  # unique violation, serialization, deadlock
_INFRASTRUCTURE_STATE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention
# Undefined table, undefined column: a schema behind the code (it only ever adds), not a bad message.
_SCHEMA_BEHIND_STATES = {"42P01", "42703"}


def classify(error: BaseException) -> FailureKind:
    if isinstance(error, PoisonMessage | InvalidMessage | DomainError):
        return FailureKind.POISON
    if isinstance(error, SchemaNotAtHead):
        return FailureKind.INFRASTRUCTURE
    if isinstance(error, ConcurrentWrite):
        return FailureKind.CONTENTION
    if isinstance(error, DBAPIError):
        return _classify_database(error)
    # asyncpg's own errors, raised past SQLAlchemy where the raw connection is used (COPY): the
    # server's carry a SQLSTATE; a client-side InterfaceError means the connection is gone.
    if isinstance(error, DriverInterfaceError):
        return FailureKind.INFRASTRUCTURE
    if isinstance(state := getattr(error, "sqlstate", None), str):
        return _classify_state(state) or FailureKind.UNEXPECTED
    if isinstance(
        error,
        KafkaConnectionError
        | KafkaTimeoutError
        | NodeNotReadyError
        | RequestTimedOutError
        | PoolTimeoutError
        | ConnectionError
        | TimeoutError
        | OSError,
    ):
        return FailureKind.INFRASTRUCTURE
    if isinstance(error, KafkaError) and error.retriable:  # no leader, coordinator moving, broker away
        return FailureKind.INFRASTRUCTURE
    return FailureKind.UNEXPECTED


def failure_reason(error: BaseException) -> str:
    """Why a message is dead-lettered, as a short label (`kafka_dlt-failure-reason`, metrics)."""
    if isinstance(error, PoisonMessage | RetriesExhausted):
        return error.reason
    if isinstance(error, NotJson):
        return "not_json"
    if isinstance(error, InvalidEnvelope):
        return "invalid_envelope"
    if isinstance(error, InvalidEventData):
        return "invalid_data"
    if isinstance(error, DomainError):
        return "domain_refused"
    return "unexpected"


def brief(error: BaseException) -> str:
    """`ClassName: first line of the message`, for logs and dead-letter headers."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def driver_brief(error: BaseException) -> str:
    """brief() of the driver's own error beneath SQLAlchemy's wrapping, for a line a person reads:
    `InvalidCatalogNameError: database "x" does not exist`."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        inner: BaseException = error.orig
        error = inner.__cause__ if inner.__cause__ is not None else inner
    # aiokafka's errors put their own class name first: say it once.
    return brief(error).replace(
        f"{type(error).__name__}: {type(error).__name__}: ", f"{type(error).__name__}: ", 1
    )


def _classify_state(state: str) -> FailureKind | None:
    if state in _CONTENTION_STATES:
        return FailureKind.CONTENTION
    if state.startswith(_INFRASTRUCTURE_STATE_CLASSES) or state in _SCHEMA_BEHIND_STATES:
        return FailureKind.INFRASTRUCTURE
    return None


def _classify_database(error: DBAPIError) -> FailureKind:
    state = _sqlstate(error)
    by_state = None if state is None else _classify_state(state)
    if by_state is not None:
        return by_state
    if error.connection_invalidated:
        return FailureKind.INFRASTRUCTURE
    if state is None and isinstance(error, InterfaceError | OperationalError):
        return FailureKind.INFRASTRUCTURE  # no server answer at all: the connection failed
    if isinstance(error.orig, ConnectionError | OSError | TimeoutError):
        return FailureKind.INFRASTRUCTURE
    return FailureKind.UNEXPECTED


def _sqlstate(error: DBAPIError) -> str | None:
    original = error.orig
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(original, attribute, None)
        if isinstance(value, str):
            return value
    cause = getattr(original, "__cause__", None)
    value = getattr(cause, "sqlstate", None)
    return value if isinstance(value, str) else None
