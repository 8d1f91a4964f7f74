"""All of the termination use case's SQL: look-ups, the counter upserts and the inserts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, Select, Text, Update, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.bulk import ResellerKey, copy_rows, key_arrays, wanted_keys
from worker.db.inbox import one_of_keys, probed
from worker.db.schema.balances import balance_ledger
from worker.db.schema.expiry import expiry_timers
from worker.db.schema.inbox import inbox
from worker.db.schema.invoice_notes import invoice_credit_notes
from worker.db.schema.refunds import credit_notes, refunds, terminations
from worker.domain.grace_period import BY_REQUEST
from worker.engine.outbox_store import StoredBatch, store_events
from worker.terminations.plan import BatchRows


async def used_credit_notes(conn: AsyncConnection, notes: set[ResellerKey]) -> set[ResellerKey]:
    """Which of these (reseller, credit_note_id) already back a refund."""
    if not notes:
        return set()
    return {(reseller, note) for reseller, note in await conn.execute(_used_notes(), key_arrays(notes))}


# Each statement is built once (@cache), not a batch: building one and its cache key took 150-250 us.
@cache
def _used_notes() -> Select[Any]:
    keys, n = wanted_keys(), credit_notes.c
    return probed(
        keys,
        select(n.reseller_id, n.credit_note_id).where(
            n.reseller_id == keys.c.reseller_id, n.credit_note_id == keys.c.id
        ),
    )


async def next_credit_note_numbers(conn: AsyncConnection, counts: Mapping[str, int]) -> dict[str, int]:
    """Reserve counts[r] numbers per reseller; returns the first of each reservation.

    The counter row stays locked until commit, and a rollback returns the numbers: no gaps.
    Rows are taken in key order so two batches never wait on each other in a cycle.
    """
    if not counts:
        return {}
    resellers = sorted(counts)
    rows = await conn.execute(
        _RESERVE_NUMBERS, {"resellers": resellers, "counts": [counts[r] for r in resellers]}
    )
    return {reseller: last - counts[reseller] + 1 for reseller, last in rows}


# Both counter upserts take arrays (one statement text whatever the batch size) and lock their rows
# in the arrays' order, which the callers sort, so two batches never wait on each other in a cycle.
_RESERVE_NUMBERS = text("""
    INSERT INTO credit_note_sequences AS s (reseller_id, last_number)
    SELECT reseller, wanted
    FROM unnest(CAST(:resellers AS text[]), CAST(:counts AS bigint[])) AS r(reseller, wanted)
    ON CONFLICT (reseller_id) DO UPDATE SET last_number = s.last_number + EXCLUDED.last_number
    RETURNING reseller_id, last_number
""")


async def insert_all(conn: AsyncConnection, batch: BatchRows) -> StoredBatch | None:
    """One COPY per table; returns the batch's events as stored in the outbox."""
    for table, rows in (
        (inbox, batch.inbox),
        (terminations, batch.terminations),
        (credit_notes, batch.credit_notes),
        (refunds, batch.refunds),
        (balance_ledger, batch.ledger),
    ):
        await copy_rows(conn, table, rows)
    return await store_events(conn, batch.events)


async def cancel_pending_timers(
    conn: AsyncConnection, subscriptions: list[ResellerKey], now: datetime
) -> None:
    """A request cancels the subscriptions' pending expiry timers; by index probes at any table size
    (worker.db.inbox.one_of_keys): a join with unnest became a hash join over all the timers."""
    if not subscriptions:
        return
    await conn.execute(_cancel_pending(), key_arrays(subscriptions) | {"now": now})


@cache
def _cancel_pending() -> Update:
    t = expiry_timers.c
    return (
        update(expiry_timers)
        .where(one_of_keys(t.reseller_id, t.subscription_id), t.state == BY_REQUEST.applies_to)
        .values(state=BY_REQUEST.state, cancelled_by=BY_REQUEST.cancelled_by, updated_at=bindparam("now"))
    )


async def mark_invoice_notes_used(conn: AsyncConnection, used: list[dict[str, str]], now: datetime) -> None:
    """The invoice app's notes that now back a refund (linked or named) get its refund_id; by index
    probes at any table size (one_of_keys), each row's refund read from the arrays. A note the worker
    does not know (an operator's, never sent on credit-note-issued) matches no row."""
    if not used:
        return
    ordered = sorted((row["reseller_id"], row["credit_note_id"], row["refund_id"]) for row in used)
    arrays = {name: [row[i] for row in ordered] for i, name in enumerate(_NOTE_ARRAYS)}
    await conn.execute(_mark_notes_used(), arrays | {"now": now})


_NOTE_ARRAYS = ("resellers", "ids", "refunds")


@cache
def _mark_notes_used() -> Update:
    n = invoice_credit_notes.c
    array: Any = ARRAY(Text())
    arrays: list[BindParameter[list[Any]]] = [bindparam(name, type_=array) for name in _NOTE_ARRAYS]
    given = func.unnest(*arrays).table_valued("reseller_id", "id", "refund_id", name="given").render_derived()
    refund = select(given.c.refund_id).where(
        given.c.reseller_id == n.reseller_id, given.c.id == n.credit_note_id
    )
    return (
        update(invoice_credit_notes)
        .where(one_of_keys(n.reseller_id, n.credit_note_id))
        .values(refund_id=refund.scalar_subquery(), used_at=bindparam("now"))
    )
