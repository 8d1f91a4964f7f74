"""What both sides of the double-refund guard (contract section 10) share: the subscription lock and
the look-ups of the invoice app's credit notes, used by the credit-note batch (worker/credit_notes/)
and the termination batch (worker/terminations/). Every key is (reseller_id, id).

Why a lock. A note and a termination of the same subscription can be read in two batches at the same
time (different topics, so different partitions and perhaps different workers). Under READ COMMITTED
each look-up sees only what had committed when it ran, so without more the termination would find
no note and refund as account credit while the note found no termination and stayed unused: two
refunds and no conflict. No unique key can catch it, as the two batches write no common row (a
termination writes its subscription's row, a note its own). So both batches first take a
transaction-scoped advisory lock per subscription, in key order (no cycle between two batches),
before any look-up: the second one waits for the first to commit and then, its look-ups being new
statements, sees it, and links the note or reports the conflict. Two ids sharing a hash only share
a lock. It costs one statement per batch, and batches of other subscriptions never wait.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import Integer, Row, Select, bindparam, select, text, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.bulk import ResellerKey, key_arrays, wanted_keys
from worker.db.inbox import probed
from worker.db.schema.invoice_notes import invoice_credit_notes
from worker.domain.credit_note_guard import InvoiceNote, NoteFacts
from worker.domain.money import Currency, Money

# pg_advisory_xact_lock(int, int): (this class, a hash of the reseller and subscription ids). Another
# class than the expiry batches' (worker/expiry/store.py): those batches never wait on these.
_GUARD_LOCK_CLASS = 0x5EF0_0C10


def _lock_key(subscription: ResellerKey) -> int:
    reseller, subscription_id = subscription
    named = f"{len(reseller)}:{reseller}/{subscription_id}".encode()
    return int.from_bytes(hashlib.blake2b(named, digest_size=4).digest(), "big", signed=True)


async def lock_guarded_subscriptions(conn: AsyncConnection, subscriptions: Iterable[ResellerKey]) -> None:
    """Serialise the credit-note and termination batches of the same subscriptions until commit."""
    keys = sorted({_lock_key(s) for s in subscriptions})
    if not keys:
        return
    await conn.execute(_LOCK, {"lock_class": _GUARD_LOCK_CLASS, "keys": keys})


_LOCK = text("SELECT pg_advisory_xact_lock(:lock_class, k) FROM unnest(:keys) AS k").bindparams(
    bindparam("keys", type_=ARRAY(Integer))
)


async def unused_invoice_notes(
    conn: AsyncConnection, subscriptions: Iterable[ResellerKey]
) -> dict[ResellerKey, NoteFacts]:
    """The notes of these subscriptions that back no refund and conflict with none, by (reseller, id).

    A subscription may have several: the LATERAL subquery has no LIMIT 1 (worker.db.inbox.probed)
    but OFFSET 0, which keeps it from being pulled up into a join just the same, so it stays one
    probe of the partial index per subscription."""
    rows = await conn.execute(_unused(), key_arrays(subscriptions))
    return {(row.reseller_id, row.credit_note_id): note_facts(row) for row in rows}


@cache  # built once, as the other look-ups (worker/db/inbox.py)
def _unused() -> Select[Any]:
    keys, n = wanted_keys(), invoice_credit_notes.c
    match = (
        select(invoice_credit_notes)
        .where(
            n.reseller_id == keys.c.reseller_id,
            n.subscription_id == keys.c.id,
            n.subscription_id.is_not(None),
            n.refund_id.is_(None),
            n.conflict_refund_id.is_(None),
        )
        .offset(0)
        .lateral("match")
    )
    return select(*match.c).select_from(keys.join(match, true()))


async def known_invoice_notes(
    conn: AsyncConnection, notes: Iterable[ResellerKey]
) -> dict[ResellerKey, NoteFacts]:
    """The recorded notes among these (reseller, credit_note_id), used or not."""
    rows = await conn.execute(_known(), key_arrays(notes))
    return {(row.reseller_id, row.credit_note_id): note_facts(row) for row in rows}


@cache
def _known() -> Select[Any]:
    keys, n = wanted_keys(), invoice_credit_notes.c
    return probed(
        keys,
        select(invoice_credit_notes).where(
            n.reseller_id == keys.c.reseller_id, n.credit_note_id == keys.c.id
        ),
    )


def note_facts(row: Row[Any]) -> NoteFacts:
    note = InvoiceNote(
        credit_note_id=row.credit_note_id,
        reseller_id=row.reseller_id,
        account_id=row.account_id,
        subscription_id=row.subscription_id,
        amount=Money(row.amount_minor, Currency.of(row.currency)),
        issued_at=row.issued_at,
        number=row.number,
    )
    return NoteFacts(note, refund_id=row.refund_id, conflict=row.conflict_refund_id is not None)
