"""What kind of failure an exception is, and so what the worker does about it. One place only.

- POISON: the message itself is wrong (not a CloudEvent, not the schema, a value the rules refuse,
  an idempotency conflict). Retrying cannot help: dead-letter it at once.
- CONTENTION: a concurrent writer committed first (a unique key, a serialization failure, a
  deadlock). Retry the batch at once; it will see what was committed.
- INFRASTRUCTURE: the database or the broker is away. Not the message's fault: wait, retry with
  backoff for as long as it takes, dead-letter nothing.
- UNEXPECTED: anything else. Retry a bounded number of times with backoff, then dead-letter.
"""

from __future__ import annotations

from enum import StrEnum

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from schemas.errors import InvalidMessage
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


class RetriesExhausted(Exception):
    """An unexpected error outlived its retries; the message is dead-lettered with this."""

    reason = "retries_exhausted"


_CONTENTION_STATES = {"23505", "40001", "40P01"}  # unique violation, serialization, deadlock
_INFRASTRUCTURE_STATE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention


def classify(error: BaseException) -> FailureKind:
    if isinstance(error, PoisonMessage | InvalidMessage | DomainError):
        return FailureKind.POISON
    if isinstance(error, DBAPIError):
        return _classify_database(error)
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
    return FailureKind.UNEXPECTED


def _classify_database(error: DBAPIError) -> FailureKind:
    state = _sqlstate(error)
    if state in _CONTENTION_STATES:
        return FailureKind.CONTENTION
    if error.connection_invalidated or (
        state is not None and state.startswith(_INFRASTRUCTURE_STATE_CLASSES)
    ):
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
