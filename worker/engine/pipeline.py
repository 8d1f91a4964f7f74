"""A batch of Kafka records through one database transaction, with the failure policy applied.

parse each record -> apply all commands in one transaction -> dead-letter the poison -> the offsets
to commit. The caller commits those offsets only after `process` returns, i.e. after the database
commit and after every dead letter was acknowledged, so a crash anywhere repeats work the inbox
recognises, and loses none.

The pipeline needs of the database only `Database` and of a connection only `Statements`
(worker/engine/database.py); the dead-lettering is worker/engine/dead_letters.py, what it reports
worker/engine/observer.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from sqlalchemy import text

from worker.engine.database import Database, Statements
from worker.engine.dead_letters import DeadLetterSender, Poison
from worker.engine.failures import (
    FailureKind,
    PoisonMessage,
    RetriesExhausted,
    brief,
    classify,
    failure_reason,
)
from worker.engine.observer import PipelineObserver
from worker.engine.outage import Outage, RetryPolicy, jittered
from worker.engine.records import InboundRecord, SendAll, next_offsets

log = logging.getLogger(__name__)

C = TypeVar("C")
ConnectionT = TypeVar("ConnectionT", bound=Statements)
"""The connection the database gives and the applier is handed (an AsyncConnection in the worker)."""

Parse: TypeAlias = Callable[[InboundRecord], C]


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a batch found: the poison among it (an idempotency conflict), as (index,
    error), and what to do once its transaction has committed (logging, waking the relay)."""

    conflicts: list[tuple[int, PoisonMessage]]
    on_commit: Callable[[], None] = _nothing


# Applies the commands in the given connection's transaction, which the pipeline commits.
Apply: TypeAlias = Callable[[ConnectionT, Sequence[C]], Awaitable[Applied]]


@dataclass(frozen=True, slots=True)
class BatchReport:
    processed: int
    dead_lettered: int
    offsets: dict[tuple[str, int], int]


class BatchPipeline(Generic[ConnectionT, C]):
    def __init__(
        self,
        *,
        engine: Database[ConnectionT],
        parse: Parse[C],
        apply: Apply[ConnectionT, C],
        send_all: SendAll,
        consumer_group: str,
        retry: RetryPolicy = RetryPolicy(),
        after_commit: Callable[[], None] = lambda: None,
        observer: PipelineObserver | None = None,
    ) -> None:
        self._engine = engine
        self._parse = parse
        self._apply = apply
        self._retry = retry
        self._after_commit = after_commit
        self._observer = observer or PipelineObserver()
        self._dead_letters = DeadLetterSender(engine, send_all, consumer_group=consumer_group, retry=retry)

    async def process(self, records: Sequence[InboundRecord]) -> BatchReport:
        started = time.perf_counter()
        self._observer.batch_started(records)
        good: list[tuple[InboundRecord, C]] = []
        poison: list[Poison] = []
        for record in records:
            try:
                good.append((record, self._parse(record)))
            except Exception as error:
                kind = classify(error)
                if kind is not FailureKind.POISON:
                    # Parsing is pure: a message it fails on fails again at every redelivery, so
                    # raising would rewind the batch without end. Dead-letter it, as a bug to fix.
                    log.error("parsing %s[%d]@%d failed unexpectedly", *_where(record), exc_info=error)
                    self._observer.attempt_failed([record], kind)
                poison.append((record, error, kind))
        poison += await self._apply_isolating(good)
        self._after_commit()
        await self._dead_letters.send(poison)
        for record, failure, kind in poison:
            self._observer.dead_lettered(record, failure_reason(failure), kind)
        self._observer.batch_handled(records, time.perf_counter() - started)
        return BatchReport(len(records) - len(poison), len(poison), next_offsets(records))

    async def _apply_isolating(self, items: Sequence[tuple[InboundRecord, C]]) -> list[Poison]:
        """Apply all in one transaction; if that fails for one of them, halve the batch to find it (a
        few transactions for one culprit among hundreds). Only a message alone has its retries."""
        if not items:
            return []
        alone = len(items) == 1
        failure = await self._apply_with_retries(items, self._retry.unexpected_attempts if alone else 1)
        if isinstance(failure, list):
            return failure
        if alone:
            record = items[0][0]
            log.error("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, failure)
            return [(record, failure, classify(failure))]
        log.warning("batch of %d failed (%s); halving it to find the culprit", len(items), brief(failure))
        middle = len(items) // 2
        return await self._apply_isolating(items[:middle]) + await self._apply_isolating(items[middle:])

    async def _apply_with_retries(
        self, items: Sequence[tuple[InboundRecord, C]], unexpected_attempts: int
    ) -> list[Poison] | BaseException:
        """The poison found by a committed transaction, or the error that outlived its retries."""
        commands = [command for _, command in items]
        outage = Outage("database", self._retry, logger=log)
        unexpected = contention = 0
        while True:
            try:
                async with self._engine.begin() as conn:
                    applied = await self._apply(conn, commands)
            except Exception as error:  # noqa: BLE001 - every failure is classified (worker/engine/failures.py)
                kind = classify(error)
                if kind is not FailureKind.POISON:  # poison is counted once found, when dead-lettered
                    self._observer.attempt_failed([record for record, _ in items], kind)
                if kind is FailureKind.INFRASTRUCTURE:
                    await outage.wait(error)
                elif kind is FailureKind.CONTENTION and contention < self._retry.contention_attempts:
                    contention += 1
                    log.info("concurrent writer committed first (%s); retrying batch", brief(error))
                elif kind is FailureKind.POISON:
                    return error
                else:
                    unexpected += 1
                    if unexpected < unexpected_attempts:
                        log.warning("unexpected error, attempt %d: %s", unexpected, brief(error))
                        await asyncio.sleep(jittered(self._retry.backoff(unexpected)))
                    elif await self._database_unreachable(outage):
                        unexpected = 0  # an outage in disguise: waited out, so the message starts afresh
                    else:
                        return RetriesExhausted(error, unexpected)
                continue
            outage.ended()
            applied.on_commit()
            return [(items[index][0], error, FailureKind.POISON) for index, error in applied.conflicts]

    async def _database_unreachable(self, outage: Outage) -> bool:
        """Asked before dead-lettering for an unexpected error: an outage can surface as an error
        nobody classified as one, and an outage must dead-letter nothing."""
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - whatever it is, the database is not answering
            await outage.wait(error)
            return True
        return False


def _where(record: InboundRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset
