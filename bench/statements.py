"""The statements the worker issues for a batch of termination requests, captured from its own code.

`record_batches` runs the worker's termination applier (and the outbox relay's mark of the batch's
events) on real commands, inside one transaction it rolls back, and keeps each statement's
final SQL text and parameters as asyncpg received them, and each COPY's rows as asyncpg would
send them. The ceiling (bench/ceiling.py) replays them; the plan test (tests/service) explains
the look-ups. Nothing here is a copy of the worker's SQL, so a change there changes both.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import worker.engine.outbox_store as outbox_store_module
import worker.terminations.store as terminations_module
from schemas.envelope import binary_headers
from schemas.topics import TOPICS, Topic
from worker.db import bulk
from worker.domain.policy import RefundPolicy
from worker.engine.outbox import OutboxRelay
from worker.engine.outbox_store import StoredBatch
from worker.engine.parsing import termination_command
from worker.engine.records import InboundRecord, OutboundRecord
from worker.terminations.commands import TerminationCommand
from worker.terminations.service import termination_applier

REQUESTED = Topic.TERMINATION_REQUESTED.value


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    args: tuple[Any, ...]
    role: str | None = None
    """NEW_BATCH or MARKS_BATCHES: replayed with the outbox batch ids of the replay's database."""


NEW_BATCH = "new outbox batch"
MARKS_BATCHES = "marks outbox batches"
OUTBOX_EVENTS = "outbox_events"


@dataclass(frozen=True, slots=True)
class Copy:
    table: str
    columns: tuple[str, ...]
    records: list[tuple[Any, ...]]


Step = Statement | Copy


@dataclass(frozen=True, slots=True)
class RecordedBatch:
    apply: list[Step]
    """The batch's own transaction: look-ups, counter upserts, timer update, COPYs."""
    relay: list[Step]
    """The outbox relay's transaction after it: mark the batch published (from memory)."""


def request(index: int, run: str, accounts: int) -> tuple[str, bytes, bytes]:
    """(ce_id, key, value) of the index-th request: yearly SGD, asked at varied points of the cycle."""
    day = 1 + index % 80
    data: dict[str, Any] = {
        "subscription_id": f"sub-{run}-{index}",
        "account_id": f"acc-{run}-{index % accounts}",
        "reseller_id": f"res-{run}-{index % 7}",
        "cycle_start": "2026-01-01",
        "cycle_months": 12,
        "amount_paid": "1200.00",
        "currency": "SGD",
        "timezone": "Asia/Singapore",
        "allow_refund": index % 10 != 0,
        "requested_at": f"2026-{1 + day // 30:02d}-{1 + day % 28:02d}T10:00:00+08:00",
        "requested_by": "bench",
        "reason": "benchmark",
        "credit_note": None,
    }
    return f"bench-{run}-{index}", data["subscription_id"].encode(), json.dumps(data).encode()


def commands(messages: Sequence[tuple[str, bytes, bytes]], first_offset: int = 0) -> list[TerminationCommand]:
    """The commands the worker parses from these messages, as it would read them."""
    ce_type = TOPICS[Topic.TERMINATION_REQUESTED].ce_type
    now = datetime.now(UTC)
    parsed = []
    for offset, (ce_id, key, value) in enumerate(messages, start=first_offset):
        headers = binary_headers(event_id=ce_id, source="/bench", ce_type=ce_type, time=now)
        record = InboundRecord(REQUESTED, offset % 8, offset, key, value, tuple(headers), 0)
        parsed.append(termination_command(record))
    return parsed


class _Recorder:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    def on_execute(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        args = tuple(parameters or ())
        head = statement.lstrip()
        role = NEW_BATCH if head.startswith("INSERT INTO outbox_batches") else None
        role = MARKS_BATCHES if head.startswith("UPDATE outbox_batches") else role
        self.steps.append(Statement(statement, args, role))

    async def copy(self, conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            columns = tuple(rows[0])
            self.steps.append(Copy(table.name, columns, bulk._records(table, columns, rows)))
        await bulk.copy_rows(conn, table, rows)

    async def copy_records(
        self, conn: AsyncConnection, table: Table, columns: Sequence[str], records: Iterable[tuple[Any, ...]]
    ) -> None:
        copied = list(records)  # a generator is read once
        self.steps.append(Copy(table.name, tuple(columns), copied))
        await bulk.copy_records(conn, table, columns, copied)


@contextlib.contextmanager
def _recording(engine: AsyncEngine) -> Iterator[_Recorder]:
    recorder = _Recorder()
    event.listen(engine.sync_engine, "before_cursor_execute", recorder.on_execute)
    # The stores imported their COPY functions by name: swap them there, where they are looked up.
    swapped = (
        (terminations_module, "copy_rows", recorder.copy),
        (outbox_store_module, "copy_records", recorder.copy_records),
    )
    originals = [getattr(module, name) for module, name, _ in swapped]
    for module, name, recording in swapped:
        setattr(module, name, recording)
    try:
        yield recorder
    finally:
        for (module, name, _), original in zip(swapped, originals, strict=True):
            setattr(module, name, original)
        event.remove(engine.sync_engine, "before_cursor_execute", recorder.on_execute)


class OneConnection:
    """An engine stand-in for OutboxRelay whose transactions are the recording transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        yield self._conn


async def send_nothing(_records: Sequence[OutboundRecord]) -> None:
    return None


async def record_batches(
    engine: AsyncEngine,
    batches: Sequence[Sequence[TerminationCommand]],
    *,
    relay: bool = True,
    relay_batch_size: int = 2000,
    commit_each: bool = False,
) -> list[RecordedBatch]:
    """Each batch's statements, as the worker issues them one batch after the other (each batch
    sees the ones before). Rolled back, the database left as it was; with `commit_each`, each batch
    is committed instead, as the worker does (one transaction for many batches holds all their
    advisory locks at once, and a few thousand fill the server's lock table)."""
    recorded: list[RecordedBatch] = []
    committed: list[StoredBatch] = []
    apply = termination_applier(RefundPolicy(window_days=14), lambda _: None, publish=committed.append)
    with _recording(engine) as recorder:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            outbox_relay = OutboxRelay(
                OneConnection(conn),  # type: ignore[arg-type]  # only begin() is used
                send_nothing,
                source="/bench",
                batch_size=relay_batch_size,
            )
            try:
                for batch in batches:
                    applied: list[Step] = []
                    recorder.steps = applied
                    (await apply(conn, batch)).on_commit()
                    relayed: list[Step] = []
                    recorder.steps = relayed
                    # As the worker's relay after the commit: the batch's events from memory, the batch
                    # marked published (the table's claim is for recovery only, worker/engine/outbox.py).
                    if relay and committed:
                        await outbox_relay.publish_committed(committed)
                    committed.clear()
                    recorded.append(RecordedBatch(applied, relayed))
                    if commit_each:
                        await transaction.commit()
                        transaction = await conn.begin()
            finally:
                await transaction.rollback()
    return recorded


class Replayer:
    """Runs recorded steps on one asyncpg connection, with the outbox batch ids its database gives:
    the recorded ones were the capture's."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._latest: int | None = None
        self._batches: dict[int, int | None] = {}

    async def run(self, step: Step) -> object:
        conn = self._conn
        if isinstance(step, Copy):
            records = step.records
            if step.table == OUTBOX_EVENTS and records:
                self._batches[records[0][0]] = self._latest
                records = [(self._latest, *record[1:]) for record in records]
            return await conn.copy_records_to_table(step.table, records=records, columns=list(step.columns))
        args = step.args
        if step.role == MARKS_BATCHES:
            args = ([self._batches.get(batch) for batch in args[0]], *args[1:])
        rows = await conn.fetch(step.sql, *args)
        if step.role == NEW_BATCH:
            self._latest = rows[0][0]
        return rows
