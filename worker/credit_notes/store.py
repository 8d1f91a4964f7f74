"""The credit-note batch's own SQL: how its subscriptions were refunded, which notes already back a
refund, and the inserts. The lock and the look-ups of notes it shares with the termination batch are
worker/db/invoice_notes.py. Every key is (reseller_id, id)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.credit_notes.plan import NoteRows
from worker.db.bulk import ResellerKey, copy_rows, key_arrays, wanted_keys
from worker.db.inbox import probed
from worker.db.schema.inbox import inbox
from worker.db.schema.invoice_notes import invoice_credit_notes
from worker.db.schema.refunds import credit_notes, terminations
from worker.domain.credit_note_guard import SubscriptionRefund
from worker.domain.policy import RefundMethod, Rule
from worker.engine.outbox import derived_id
from worker.engine.outbox_store import store_events

REFUND_KIND = "refund"
"""derived_id's kind of a termination's refund (worker/terminations/plan.py)."""


async def subscription_refunds(
    conn: AsyncConnection, subscriptions: Iterable[ResellerKey]
) -> dict[ResellerKey, SubscriptionRefund]:
    """How each terminated one of these subscriptions was refunded, by one probe of its termination.

    A termination by request has its refund's id derived from the request (the refunds table has no
    index by subscription), and the refund's method follows from its rule: rule credit_note is
    method credit_note, any other rule account credit (worker.domain.policy; the schema of
    refund-issued checks the pair). An expiry, or no amount, is no refund."""
    keys, t = wanted_keys(), terminations.c
    query = probed(
        keys,
        select(t.reseller_id, t.subscription_id, t.request_id, t.refund_minor, t.rule).where(
            t.reseller_id == keys.c.reseller_id, t.subscription_id == keys.c.id
        ),
    )
    refunded: dict[ResellerKey, SubscriptionRefund] = {}
    for reseller, subscription, request_id, refund_minor, rule in await conn.execute(
        query, key_arrays(subscriptions)
    ):
        if request_id is None or not refund_minor or rule is None:
            refunded[(reseller, subscription)] = SubscriptionRefund(None, None)
            continue
        method = RefundMethod.CREDIT_NOTE if rule == Rule.CREDIT_NOTE else RefundMethod.ACCOUNT_CREDIT
        refunded[(reseller, subscription)] = SubscriptionRefund(
            derived_id(reseller, request_id, REFUND_KIND), method
        )
    return refunded


async def backing_refunds(conn: AsyncConnection, notes: Iterable[ResellerKey]) -> dict[ResellerKey, str]:
    """The refund each of these (reseller, credit_note_id) already backs: named by a termination
    before the note itself arrived."""
    keys, n = wanted_keys(), credit_notes.c
    query = probed(
        keys,
        select(n.reseller_id, n.credit_note_id, n.refund_id).where(
            n.reseller_id == keys.c.reseller_id, n.credit_note_id == keys.c.id
        ),
    )
    rows = await conn.execute(query, key_arrays(notes))
    return {(reseller, note): refund for reseller, note, refund in rows}


async def insert_all(conn: AsyncConnection, rows: NoteRows) -> None:
    """One COPY per table."""
    for table, values in (
        (inbox, rows.inbox),
        (invoice_credit_notes, rows.notes),
    ):
        await copy_rows(conn, table, values)
    await store_events(conn, rows.events)
