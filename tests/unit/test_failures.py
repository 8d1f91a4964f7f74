"""The failure taxonomy: every error the worker can meet falls in exactly one class, with one label."""

from __future__ import annotations

import asyncpg.exceptions as asyncpg_errors
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    UnknownTopicOrPartitionError,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, ProgrammingError

from schemas.errors import InvalidAttribute, MissingAttribute, NotJson
from worker.domain.errors import InvalidAmount
from worker.engine.failures import (
    ConcurrentWrite,
    FailureKind,
    IdempotencyConflict,
    RetriesExhausted,
    SchemaNotAtHead,
    brief,
    classify,
    driver_brief,
    failure_reason,
)


class DriverError(Exception):
    """What asyncpg raises, reduced to what classify reads: the SQLSTATE."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def database_error(sqlstate: str | None, kind: type[DBAPIError] = DBAPIError) -> DBAPIError:
    return kind("INSERT ...", {}, DriverError(sqlstate))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (NotJson("value is not JSON"), FailureKind.POISON),
        (MissingAttribute("ce_id is missing"), FailureKind.POISON),
        (InvalidAmount("120.001 has too many digits"), FailureKind.POISON),
        (IdempotencyConflict("same ce_id, other payload"), FailureKind.POISON),
        (database_error("23505", IntegrityError), FailureKind.CONTENTION),
        (database_error("40001"), FailureKind.CONTENTION),
        (database_error("40P01"), FailureKind.CONTENTION),
        (database_error("57P01"), FailureKind.INFRASTRUCTURE),  # admin shutdown: the server stops
        (database_error("57P03"), FailureKind.INFRASTRUCTURE),  # cannot connect now: it is starting
        (database_error("08006"), FailureKind.INFRASTRUCTURE),
        (database_error("53300"), FailureKind.INFRASTRUCTURE),  # too many connections
        (database_error(None, InterfaceError), FailureKind.INFRASTRUCTURE),  # "connection is closed"
        (ConnectionRefusedError(111, "Connect call failed"), FailureKind.INFRASTRUCTURE),
        (KafkaConnectionError("broker away"), FailureKind.INFRASTRUCTURE),
        (KafkaTimeoutError(), FailureKind.INFRASTRUCTURE),
        (NotLeaderForPartitionError(), FailureKind.INFRASTRUCTURE),
        (UnknownTopicOrPartitionError(), FailureKind.INFRASTRUCTURE),
        (MessageSizeTooLargeError(), FailureKind.UNEXPECTED),
        # a schema behind the code (migration Job late, a release adding a column): an outage
        (database_error("42P01", ProgrammingError), FailureKind.INFRASTRUCTURE),  # undefined table
        (database_error("42703", ProgrammingError), FailureKind.INFRASTRUCTURE),  # undefined column
        (asyncpg_errors.UndefinedTableError("relation does not exist"), FailureKind.INFRASTRUCTURE),
        (asyncpg_errors.UndefinedColumnError("column does not exist"), FailureKind.INFRASTRUCTURE),
        (SchemaNotAtHead("behind: no schema yet"), FailureKind.INFRASTRUCTURE),
        (ConcurrentWrite("a balance started meanwhile"), FailureKind.CONTENTION),
        (database_error("42601", ProgrammingError), FailureKind.UNEXPECTED),  # a syntax error is a bug
        (database_error("3D000"), FailureKind.UNEXPECTED),  # no such database: no wait fixes it
        (database_error("22P02", ProgrammingError), FailureKind.UNEXPECTED),
        (database_error("P0001"), FailureKind.UNEXPECTED),
        # asyncpg's own, raised past SQLAlchemy where the raw connection is used (COPY)
        (asyncpg_errors.UniqueViolationError("duplicate key"), FailureKind.CONTENTION),
        (asyncpg_errors.DeadlockDetectedError("deadlock"), FailureKind.CONTENTION),
        (asyncpg_errors.AdminShutdownError("terminating connection"), FailureKind.INFRASTRUCTURE),
        (asyncpg_errors.ConnectionDoesNotExistError("closed mid-operation"), FailureKind.INFRASTRUCTURE),
        (asyncpg_errors.InterfaceError("connection is closed"), FailureKind.INFRASTRUCTURE),
        (asyncpg_errors.RaiseError("raised by a trigger"), FailureKind.UNEXPECTED),
        (RuntimeError("a bug"), FailureKind.UNEXPECTED),
        (KeyError("missing"), FailureKind.UNEXPECTED),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_classify(error: BaseException, kind: FailureKind) -> None:
    assert classify(error) is kind


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NotJson("x"), "not_json"),
        (InvalidAttribute("x"), "invalid_envelope"),
        (InvalidAmount("x"), "domain_refused"),
        (IdempotencyConflict("x"), "idempotency_conflict"),
        (RetriesExhausted(RuntimeError("x"), 3), "retries_exhausted"),
        (RuntimeError("x"), "unexpected"),
    ],
)
def test_failure_reason_names_the_class_of_problem(error: BaseException, reason: str) -> None:
    assert failure_reason(error) == reason


def test_retries_exhausted_keeps_the_error_as_its_cause() -> None:
    error = ValueError("bad thing\nwith a second line")
    exhausted = RetriesExhausted(error, 3)
    assert exhausted.__cause__ is error
    assert exhausted.attempts == 3
    assert str(exhausted) == "ValueError: bad thing (after 3 attempts)"
    assert classify(exhausted) is FailureKind.UNEXPECTED


def test_brief_is_one_line_even_without_a_message() -> None:
    assert brief(RuntimeError()) == "RuntimeError: "
    assert brief(RuntimeError("first\nsecond")) == "RuntimeError: first"


def test_driver_brief_names_the_drivers_error_beneath_sqlalchemys() -> None:
    missing = asyncpg_errors.InvalidCatalogNameError('database "x" does not exist')
    wrapper = DriverError("3D000")
    wrapper.__cause__ = missing
    error = DBAPIError("connect", {}, wrapper)
    assert driver_brief(error) == 'InvalidCatalogNameError: database "x" does not exist'
    assert (
        driver_brief(ConnectionRefusedError(111, "refused")) == "ConnectionRefusedError: [Errno 111] refused"
    )


def test_driver_brief_says_a_kafka_errors_class_once() -> None:
    error = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 2)]")
    assert driver_brief(error) == "KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 2)]"


def test_retries_exhausted_after_one_attempt_says_attempt() -> None:
    assert str(RetriesExhausted(ValueError("bad thing"), 1)) == "ValueError: bad thing (after 1 attempt)"
