"""A batch of Kafka records through one database transaction, with the failure policy applied.

parse each record -> apply all commands in one transaction -> dead-letter the poison -> the offsets
to commit. The caller commits those offsets only after `process` returns, i.e. after the database
commit and after every dead letter was acknowledged, so a crash anywhere repeats work the inbox
recognises, and loses none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.deadletter import dead_letter
from worker.failures import FailureKind, PoisonMessage, RetriesExhausted, classify
from worker.records import InboundRecord, OutboundRecord, SendAll, next_offsets

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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    unexpected_attempts: int = 3
    contention_attempts: int = 20
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2 ** max(attempt - 1, 0), self.max_backoff_seconds))


@dataclass(frozen=True, slots=True)
class BatchReport:
    processed: int
    dead_lettered: int
    offsets: dict[tuple[str, int], int]


class BatchPipeline(Generic[C]):
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        parse: Parse[C],
        apply: Apply[C],
        send_all: SendAll,
        consumer_group: str,
        retry: RetryPolicy = RetryPolicy(),
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._parse = parse
        self._apply = apply
        self._send_all = send_all
        self._group = consumer_group
        self._retry = retry
        self._after_commit = after_commit

    async def process(self, records: Sequence[InboundRecord]) -> BatchReport:
        good: list[tuple[InboundRecord, C]] = []
        poison: list[tuple[InboundRecord, BaseException, FailureKind]] = []
        for record in records:
            try:
                good.append((record, self._parse(record)))
            except Exception as error:
                kind = classify(error)
                if kind is not FailureKind.POISON:
                    raise
                poison.append((record, error, kind))
        poison += await self._apply_isolating(good)
        self._after_commit()
        await self._dead_letter(poison)
        return BatchReport(len(records) - len(poison), len(poison), next_offsets(records))

    async def _apply_isolating(
        self, items: Sequence[tuple[InboundRecord, C]]
    ) -> list[tuple[InboundRecord, BaseException, FailureKind]]:
        """Apply all in one transaction; if that keeps failing, one by one, to find the culprit."""
        if not items:
            return []
        failure = await self._apply_with_retries(items)
        if isinstance(failure, list):
            return failure
        if len(items) == 1:
            record = items[0][0]
            log.error("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, failure)
            return [(record, failure, classify(failure))]
        log.warning("batch of %d failed (%s); applying its messages one by one", len(items), failure)
        found = []
        for item in items:
            found += await self._apply_isolating([item])
        return found

    async def _apply_with_retries(
        self, items: Sequence[tuple[InboundRecord, C]]
    ) -> list[tuple[InboundRecord, BaseException, FailureKind]] | BaseException:
        """The poison found by a committed transaction, or the error that outlived its retries."""
        commands = [command for _, command in items]
        unexpected = contention = outage = 0
        while True:
            try:
                async with self._engine.begin() as conn:
                    applied = await self._apply(conn, commands)
                applied.on_commit()
                if outage:
                    log.warning("database is back after %d failed attempts", outage)
                return [(items[index][0], error, FailureKind.POISON) for index, error in applied.conflicts]
            except Exception as error:  # noqa: BLE001 - every failure is classified (worker/failures.py)
                kind = classify(error)
                if kind is FailureKind.INFRASTRUCTURE:
                    outage += 1
                    delay = self._retry.backoff(outage)
                    log.warning("database unavailable (%s); retrying in %.1fs", _brief(error), delay)
                    await asyncio.sleep(delay)
                elif kind is FailureKind.CONTENTION and contention < self._retry.contention_attempts:
                    contention += 1
                    log.info("concurrent writer committed first (%s); retrying batch", _brief(error))
                elif kind is FailureKind.POISON:
                    return error
                else:
                    unexpected += 1
                    if unexpected >= self._retry.unexpected_attempts:
                        return RetriesExhausted(f"{_brief(error)} (after {unexpected} attempts)")
                    log.warning("unexpected error, attempt %d: %s", unexpected, _brief(error))
                    await asyncio.sleep(self._retry.backoff(unexpected))

    async def _dead_letter(self, poison: Sequence[tuple[InboundRecord, BaseException, FailureKind]]) -> None:
        if not poison:
            return
        letters = [
            dead_letter(record, error, group=self._group, reason=_reason(error))
            for record, error, _ in poison
        ]
        await self._send_until_acknowledged(letters)

    async def _send_until_acknowledged(self, letters: Sequence[OutboundRecord]) -> None:
        attempt = 0
        while True:
            try:
                await self._send_all(letters)
                return
            except Exception as error:
                if classify(error) is not FailureKind.INFRASTRUCTURE:
                    raise
                attempt += 1
                delay = self._retry.backoff(attempt)
                log.warning("broker unavailable for dead letters (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)


def _reason(error: BaseException) -> str:
    return str(getattr(error, "reason", "domain"))


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
