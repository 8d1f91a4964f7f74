"""How the dlq commands end when something expected goes wrong: one line on stderr and an exit
status (1 Kafka failed along the way, 2 bad arguments or settings), never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import typer

T = TypeVar("T")

FAILED = 1
USAGE_ERROR = 2


class UsageError(Exception):
    """Exit status 2 with this message."""


def run_quietly(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine with aiokafka's connection errors silenced (`user_errors` says them)."""
    # aiokafka logs each failed connection attempt; the one-line message says it once.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(coroutine)
    finally:
        kafka_log.setLevel(level)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures as one line on stderr and an exit status, never a traceback."""
    from aiokafka.errors import KafkaError

    from worker.dlq.kafka import KafkaUnavailable, UnknownTopic
    from worker.dlq.selection import InvalidSelection

    try:
        yield
    except (UsageError, InvalidSelection, UnknownTopic) as error:
        raise _exit(str(error), USAGE_ERROR) from None
    except KafkaUnavailable as error:
        raise _exit(str(error), FAILED) from None
    except KafkaError as error:
        raise _exit(f"Kafka failed: {error}", FAILED) from None
    except KeyboardInterrupt:
        raise _exit("interrupted; running the same command again is safe", FAILED) from None


def _exit(message: str, status: int) -> typer.Exit:
    typer.echo(f"refund-worker dlq: {' '.join(message.split())}", err=True)  # one line, always
    return typer.Exit(status)
