"""All of the adjustment use case's SQL but the balances' (worker/db/balances.py): the facts a batch
reads, the transaction upsert and the inserts. A fixed number of statements per batch, whatever its size:
every look-up probes an index once per key (`unnest ... JOIN LATERAL (... LIMIT 1)`, as
worker.db.inbox.probed; tests/service/test_lookup_plans.py checks the plans)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import exists, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.adjustments.plan import AdjustmentRows, EntryKey, TransactionKey
from worker.db.balances import add_checked
from worker.db.bulk import copy_rows, key_arrays, wanted_keys
from worker.db.inbox import probed
from worker.db.schema.adjustments import adjustments
from worker.db.schema.balances import balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.refunds import refunds
from worker.domain.account_facts import EntryFacts, EntryKind, TransactionFacts
from worker.domain.money import Currency, Money
from worker.domain.policy import RefundMethod
from worker.engine.outbox_store import store_events

_ADJUSTMENT_TARGETS = text("""
    SELECT m.reseller_id, m.adjustment_id, m.account_id, m.currency, m.kind, m.delta_minor,
        m.transaction_id, m.reversed
    FROM unnest(CAST(:resellers AS text[]), CAST(:ids AS text[])) AS k(reseller_id, id)
    JOIN LATERAL (
        SELECT a.reseller_id, a.adjustment_id, a.account_id, a.currency, a.kind, a.delta_minor,
            a.transaction_id,
            EXISTS (
                SELECT 1 FROM adjustments AS r
                WHERE r.reseller_id = a.reseller_id AND r.reverses = a.adjustment_id
            ) AS reversed
        FROM adjustments AS a
        WHERE a.reseller_id = k.reseller_id AND a.adjustment_id = k.id
        LIMIT 1
    ) AS m ON true
""")


async def reversal_targets(
    conn: AsyncConnection, keys: Sequence[EntryKey]
) -> dict[EntryKey, tuple[str, EntryFacts]]:
    """The earlier adjustments and termination refunds these reversals name, with their account and
    whether a reversal already took them back. An id that is both is taken as the adjustment."""
    if not keys:
        return {}
    found: dict[EntryKey, tuple[str, EntryFacts]] = {}
    pairs = wanted_keys()
    reversed_before = exists().where(
        adjustments.c.reseller_id == refunds.c.reseller_id, adjustments.c.reverses == refunds.c.refund_id
    )
    refund_query = probed(
        pairs,
        select(
            refunds.c.refund_id,
            refunds.c.reseller_id,
            refunds.c.account_id,
            refunds.c.currency,
            refunds.c.amount_minor,
            refunds.c.method,
            reversed_before.label("reversed"),
        ).where(refunds.c.reseller_id == pairs.c.reseller_id, refunds.c.refund_id == pairs.c.id),
    )
    for refund_id, reseller, account, currency, amount, method, reversed_ in await conn.execute(
        refund_query, key_arrays(keys)
    ):
        paid = RefundMethod(method)
        delta = amount if paid is RefundMethod.ACCOUNT_CREDIT else 0
        entry = EntryFacts(
            EntryKind.TERMINATION_REFUND, Currency.of(currency), delta, reversed=reversed_, method=paid
        )
        found[(reseller, refund_id)] = (account, entry)
    parameters = {"resellers": [r for r, _ in keys], "ids": [i for _, i in keys]}
    for reseller, adjustment_id, account, currency, kind, delta, transaction, reversed_ in await conn.execute(
        _ADJUSTMENT_TARGETS, parameters
    ):
        entry = EntryFacts(
            EntryKind(kind), Currency.of(currency), delta, reversed=reversed_, transaction_id=transaction
        )
        found[(reseller, adjustment_id)] = (account, entry)
    return found


_TRANSACTIONS = text("""
    SELECT m.reseller_id, m.account_id, m.transaction_id, m.currency, m.amount_minor, m.refunded_minor
    FROM unnest(CAST(:resellers AS text[]), CAST(:accounts AS text[]), CAST(:ids AS text[]))
        AS k(reseller_id, account_id, id)
    JOIN LATERAL (
        SELECT t.reseller_id, t.account_id, t.transaction_id, t.currency, t.amount_minor, t.refunded_minor
        FROM transactions AS t
        WHERE t.reseller_id = k.reseller_id AND t.account_id = k.account_id AND t.transaction_id = k.id
        LIMIT 1
    ) AS m ON true
""")


async def known_transactions(
    conn: AsyncConnection, keys: Sequence[TransactionKey]
) -> dict[TransactionKey, TransactionFacts]:
    if not keys:
        return {}
    parameters = {
        "resellers": [r for r, _, _ in keys],
        "accounts": [a for _, a, _ in keys],
        "ids": [t for _, _, t in keys],
    }
    return {
        (reseller, account, transaction): TransactionFacts(Money(amount, Currency.of(currency)), refunded)
        for reseller, account, transaction, currency, amount, refunded in await conn.execute(
            _TRANSACTIONS, parameters
        )
    }


_SET_TRANSACTIONS = text("""
    INSERT INTO transactions AS t
        (reseller_id, account_id, transaction_id, currency, amount_minor, refunded_minor, updated_at)
    SELECT reseller, account, id, currency, amount, refunded, :now
    FROM unnest(
        CAST(:resellers AS text[]), CAST(:accounts AS text[]), CAST(:ids AS text[]),
        CAST(:currencies AS text[]), CAST(:amounts AS bigint[]), CAST(:refunded AS bigint[])
    ) AS c(reseller, account, id, currency, amount, refunded)
    ON CONFLICT (reseller_id, account_id, transaction_id) DO UPDATE SET
        refunded_minor = EXCLUDED.refunded_minor, updated_at = EXCLUDED.updated_at
""")


async def set_transactions(
    conn: AsyncConnection, rows: Sequence[Mapping[str, object]], now: datetime
) -> None:
    """What each transaction's unreversed refunds took, after the batch (its account's balance is
    locked, or checked by worker.db.balances.add_checked, so nothing else changed it meanwhile)."""
    if not rows:
        return
    columns = {
        "resellers": "reseller_id",
        "accounts": "account_id",
        "ids": "transaction_id",
        "currencies": "currency",
        "amounts": "amount_minor",
        "refunded": "refunded_minor",
    }
    parameters: dict[str, object] = {name: [row[c] for row in rows] for name, c in columns.items()}
    await conn.execute(_SET_TRANSACTIONS, parameters | {"now": now})


async def write_all(conn: AsyncConnection, rows: AdjustmentRows) -> None:
    """The balances first (their check may retry the batch), then the transactions, then one COPY
    per table."""
    await add_checked(conn, rows.balance_changes, rows.balances_before, rows.now)
    await set_transactions(conn, rows.transactions, rows.now)
    for table, copied in (
        (inbox, rows.inbox),
        (adjustments, rows.adjustments),
        (balance_ledger, rows.ledger),
    ):
        await copy_rows(conn, table, copied)
    await store_events(conn, rows.events)
