"""A batch of Kafka records through one database transaction, with the failure policy applied.

parse each record -> apply all commands in one transaction -> dead-letter the poison -> the offsets
to commit. The caller commits those offsets only after `process` returns, i.e. after the database
commit and after every dead letter was acknowledged, so a crash anywhere repeats work the inbox
recognises, and loses none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.tables import oversize_dead_letters
from worker.dlq.recoverer import FAILURE_REASON, dead_letter, fit_for_broker
from worker.engine.failures import (
    FailureKind,
    PoisonMessage,
    RetriesExhausted,
    brief,
    classify,
    failure_reason,
)
from worker.engine.outage import Outage, RetryPolicy, jittered
from worker.engine.records import InboundRecord, OutboundRecord, SendAll, next_offsets

log = logging.getLogger(__name__)

C = TypeVar("C")

Parse = Callable[[InboundRecord], C]


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a batch found: the poison among it (an idempotency conflict), as (index,
    error), and what to do once its transaction has committed (logging, waking the relay)."""

    conflicts: list[tuple[int, PoisonMessage]]
    on_commit: Callable[[], None] = _nothing


# Applies the commands in the given connection's transaction, which the pipeline commits.
Apply = Callable[[AsyncConnection, Sequence[C]], Awaitable[Applied]]


class PipelineObserver:
    """What a pipeline reports as it works; these do nothing (worker/ops/observability.py counts them,
    worker/ops/liveness.py judges liveness by them)."""

    def batch_started(self, records: Sequence[InboundRecord]) -> None:
        """The pipeline took these records in hand (again, when a rewound batch comes back)."""

    def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
        """The batch is decided, committed and its poison dead-lettered: its offsets can be committed."""

    def attempt_failed(self, records: Sequence[InboundRecord], kind: FailureKind) -> None:
        """A transaction over these records failed for a reason other than poison, and is retried."""

    def dead_lettered(self, record: InboundRecord, reason: str, kind: FailureKind) -> None:
        """The record went to its dead-letter topic (acknowledged by the broker)."""


class ObserverGroup(PipelineObserver):
    """Several observers, each told everything, in order."""

    def __init__(self, *observers: PipelineObserver) -> None:
        self._observers = observers

    def batch_started(self, records: Sequence[InboundRecord]) -> None:
        for observer in self._observers:
            observer.batch_started(records)

    def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
        for observer in self._observers:
            observer.batch_handled(records, seconds)

    def attempt_failed(self, records: Sequence[InboundRecord], kind: FailureKind) -> None:
        for observer in self._observers:
            observer.attempt_failed(records, kind)

    def dead_lettered(self, record: InboundRecord, reason: str, kind: FailureKind) -> None:
        for observer in self._observers:
            observer.dead_lettered(record, reason, kind)


@dataclass(frozen=True, slots=True)
class BatchReport:
    processed: int
    dead_lettered: int
    offsets: dict[tuple[str, int], int]


class Database(Protocol):
    """What the pipeline needs of the database (an AsyncEngine is one): a transaction to apply a
    batch in, and a connection to see whether the database is back."""

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]: ...


class BatchPipeline(Generic[C]):
    def __init__(
        self,
        *,
        engine: Database,
        parse: Parse[C],
        apply: Apply[C],
        send_all: SendAll,
        consumer_group: str,
        retry: RetryPolicy = RetryPolicy(),
        after_commit: Callable[[], None] = lambda: None,
        observer: PipelineObserver | None = None,
    ) -> None:
        self._engine = engine
        self._parse = parse
        self._apply = apply
        self._send_all = send_all
        self._group = consumer_group
        self._retry = retry
        self._after_commit = after_commit
        self._observer = observer or PipelineObserver()

    async def process(self, records: Sequence[InboundRecord]) -> BatchReport:
        started = time.perf_counter()
        self._observer.batch_started(records)
        good: list[tuple[InboundRecord, C]] = []
        poison: list[tuple[InboundRecord, BaseException, FailureKind]] = []
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
        await self._dead_letter(poison)
        self._observer.batch_handled(records, time.perf_counter() - started)
        return BatchReport(len(records) - len(poison), len(poison), next_offsets(records))

    async def _apply_isolating(
        self, items: Sequence[tuple[InboundRecord, C]]
    ) -> list[tuple[InboundRecord, BaseException, FailureKind]]:
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
    ) -> list[tuple[InboundRecord, BaseException, FailureKind]] | BaseException:
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

    async def _dead_letter(self, poison: Sequence[tuple[InboundRecord, BaseException, FailureKind]]) -> None:
        if not poison:
            return
        letters = [
            fit_for_broker(dead_letter(record, error, group=self._group, reason=failure_reason(error)))
            for record, error, _ in poison
        ]
        cut = [
            (record, letter)
            for (record, *_), (letter, was_cut) in zip(poison, letters, strict=True)
            if was_cut
        ]
        if cut:
            await self._keep_originals(cut)
        await self._send_until_acknowledged([letter for letter, _ in letters])
        for record, error, kind in poison:
            self._observer.dead_lettered(record, failure_reason(error), kind)

    async def _keep_originals(self, cut: Sequence[tuple[InboundRecord, OutboundRecord]]) -> None:
        """The whole records whose dead letters were cut to fit the broker, kept in PostgreSQL before
        the cut letters are sent. Waits out an outage; any other failure is logged and the cut
        letters still go (a dead letter that is never sent would rewind its batch without end)."""
        rows = [_original_row(record, letter, self._group) for record, letter in cut]
        statement = insert(oversize_dead_letters).on_conflict_do_nothing()
        outage = Outage("database (oversize dead letters)", self._retry, logger=log)
        while True:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(statement, rows)
            except Exception as error:  # noqa: BLE001 - classified: an outage is waited out
                if classify(error) is FailureKind.INFRASTRUCTURE:
                    await outage.wait(error)
                    continue
                log.error(
                    "could not keep the originals of %d oversize dead letters: %s", len(rows), brief(error)
                )
                return
            outage.ended()
            log.warning(
                "%d dead letters cut to fit the broker; originals kept in oversize_dead_letters", len(rows)
            )
            return

    async def _send_until_acknowledged(self, letters: Sequence[OutboundRecord]) -> None:
        """Dead letters are never dropped: while the broker is away, wait and send them again (a
        repeat after a lost acknowledgement is a duplicate dead letter, which a replay absorbs)."""
        outage = Outage("broker (dead letters)", self._retry, logger=log)
        while True:
            try:
                await self._send_all(letters)
            except Exception as error:
                if classify(error) is not FailureKind.INFRASTRUCTURE:
                    raise
                await outage.wait(error)
                continue
            outage.ended()
            return


def _where(record: InboundRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _original_row(record: InboundRecord, letter: OutboundRecord, group: str) -> dict[str, object]:
    return {
        "original_topic": record.topic,
        "original_partition": record.partition,
        "original_offset": record.offset,
        "consumer_group": group,
        "dead_letter_topic": letter.topic,
        "failure_reason": dict(letter.headers).get(FAILURE_REASON, b"").decode("utf-8", "replace"),
        "original_timestamp_ms": record.timestamp_ms,
        "key": record.key,
        "value": record.value,
        "header_names": [name.encode("utf-8", "surrogateescape") for name, _ in record.headers],
        "header_values": [value for _, value in record.headers],
    }
