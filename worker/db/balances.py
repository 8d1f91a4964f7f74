"""A batch's balance changes, added in one upsert: every use case that moves credits (terminations'
refunds, adjustments) writes them here, so balances and versions count the same way for all."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.balance import BalanceCursor

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
