"""A batch's balance changes, added in one upsert: every use case that moves credits (terminations'
refunds, adjustments, money refunds) writes them here, so balances and versions count the same way
for all. The use cases that decide on a balance first (adjustments, money refunds) lock it here too,
and check that no balance they found missing was started meanwhile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.balance import BalanceCursor
from worker.engine.failures import ConcurrentWrite

AccountKey = tuple[str, str, str]
"""(reseller_id, account_id, currency): how account_balances and the ledger are keyed."""


_ADD_TO_BALANCES = text("""
    INSERT INTO account_balances AS b
        (account_id, currency, reseller_id, balance_minor, balance_version, updated_at)
    SELECT account, currency, reseller, delta, changes, :now
    FROM unnest(
        CAST(:accounts AS text[]), CAST(:currencies AS text[]), CAST(:resellers AS text[]),
        CAST(:deltas AS bigint[]), CAST(:counts AS bigint[])
    ) AS c(account, currency, reseller, delta, changes)
    ON CONFLICT (reseller_id, account_id, currency) DO UPDATE SET
        balance_minor = b.balance_minor + EXCLUDED.balance_minor,
        balance_version = b.balance_version + EXCLUDED.balance_version,
        updated_at = EXCLUDED.updated_at
    RETURNING reseller_id, account_id, currency, balance_minor, balance_version
""")


async def add_to_balances(
    conn: AsyncConnection, changes: Mapping[AccountKey, list[int]], now: datetime
) -> dict[AccountKey, BalanceCursor]:
    """Add each account's deltas in one upsert; returns a cursor at the balance before them."""
    if not changes:
        return {}
    keys = sorted(changes)
    parameters = {
        "resellers": [reseller for reseller, _, _ in keys],
        "accounts": [account for _, account, _ in keys],
        "currencies": [currency for _, _, currency in keys],
        "deltas": [sum(changes[key]) for key in keys],
        "counts": [len(changes[key]) for key in keys],
        "now": now,
    }
    cursors = {}
    for reseller, account, currency, balance, version in await conn.execute(_ADD_TO_BALANCES, parameters):
        deltas = changes[(reseller, account, currency)]
        cursors[(reseller, account, currency)] = BalanceCursor(balance - sum(deltas), version - len(deltas))
    return cursors


# Each balance row is locked in the arrays' order, which the caller sorts as add_to_balances sorts its
# own: two batches never wait on each other in a cycle.
_LOCK_BALANCES = text("""
    SELECT m.reseller_id, m.account_id, m.currency, m.balance_minor, m.balance_version
    FROM unnest(CAST(:resellers AS text[]), CAST(:accounts AS text[]), CAST(:currencies AS text[]))
        AS k(reseller_id, account_id, currency)
    JOIN LATERAL (
        SELECT b.reseller_id, b.account_id, b.currency, b.balance_minor, b.balance_version
        FROM account_balances AS b
        WHERE b.reseller_id = k.reseller_id AND b.account_id = k.account_id AND b.currency = k.currency
        LIMIT 1 FOR UPDATE
    ) AS m ON true
""")


async def locked_balances(
    conn: AsyncConnection, keys: Sequence[AccountKey]
) -> dict[AccountKey, tuple[int, int]]:
    """(balance, version) of each of these balances that exists, its row locked until commit. `keys`
    sorted (worker.adjustments.plan.balance_keys)."""
    if not keys:
        return {}
    parameters = {
        "resellers": [r for r, _, _ in keys],
        "accounts": [a for _, a, _ in keys],
        "currencies": [c for _, _, c in keys],
    }
    rows = await conn.execute(_LOCK_BALANCES, parameters)
    return {
        (reseller, account, currency): (balance, version)
        for reseller, account, currency, balance, version in rows
    }


async def add_checked(
    conn: AsyncConnection,
    changes: Mapping[AccountKey, list[int]],
    before: Mapping[AccountKey, tuple[int, int]],
    now: datetime,
) -> None:
    """Add each balance's deltas in one upsert (add_to_balances), where `before` holds the (balance,
    version) the batch decided on, (0, 0) for one it starts. A balance that did not exist when the batch
    locked the others may have been started since by a concurrent writer (a termination's refund):
    then the versions the batch gave are taken, and the batch is retried (ConcurrentWrite)."""
    cursors = await add_to_balances(conn, changes, now)
    for key, cursor in cursors.items():
        if (cursor.balance, cursor.version) != before[key]:
            _, account, currency = key
            raise ConcurrentWrite(
                f"the {currency} balance of account {account} changed while its changes were decided"
            )
