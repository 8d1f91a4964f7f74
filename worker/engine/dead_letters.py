"""Sending a batch's poison to the dead-letter topics, never dropping one: a letter too large for the
broker is cut to fit and its whole original kept in PostgreSQL first (oversize_dead_letters), and
while the broker or the database is away the pipeline waits and tries again.

Logs as the pipeline does (`worker.engine.pipeline`, docs/dead-letters.md names it), so an
outage while dead-lettering reads like any other of the pipeline's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeAlias

from sqlalchemy.dialects.postgresql import insert

from worker.db.schema.dead_letters import oversize_dead_letters
from worker.dlq.recoverer import FAILURE_REASON, dead_letter, fit_for_broker
from worker.engine.database import Database, Statements
from worker.engine.failures import FailureKind, brief, classify, failure_reason
from worker.engine.outage import Outage, RetryPolicy
from worker.engine.records import InboundRecord, OutboundRecord, SendAll

log = logging.getLogger("worker.engine.pipeline")

Poison: TypeAlias = tuple[InboundRecord, BaseException, FailureKind]
"""A record that goes to its dead-letter topic, why, and the kind of failure that put it there."""


class DeadLetterSender:
    def __init__(
        self, engine: Database[Statements], send_all: SendAll, *, consumer_group: str, retry: RetryPolicy
    ) -> None:
        self._engine = engine
        self._send_all = send_all
        self._group = consumer_group
        self._retry = retry

    async def send(self, poison: Sequence[Poison]) -> None:
        """Returns once the broker has acknowledged every one of them."""
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


def _original_row(record: InboundRecord, letter: OutboundRecord, group: str) -> dict[str, object]:
    return {
        "original_topic": record.topic,
        "original_partition": record.partition,
        "original_offset": record.offset,
        "consumer_group": group,
        "dead_letter_topic": letter.topic,
        "failure_reason": (dict(letter.headers).get(FAILURE_REASON) or b"").decode("utf-8", "replace"),
        "original_timestamp_ms": record.timestamp_ms,
        "key": record.key,
        "value": record.value,
        "header_names": [name.encode("utf-8", "surrogateescape") for name, _ in record.headers],
        "header_values": [value for _, value in record.headers],
    }
