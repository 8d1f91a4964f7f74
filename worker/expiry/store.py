"""The expiry and renewal batches' SQL: subscription locks, timer rows and renewals; the firing's
statements are worker/expiry/firing_store.py. Every key is (reseller_id, subscription_id)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.bulk import ResellerKey, key_arrays, wanted_keys
from worker.db.schema.expiry import expiry_timers, subscription_renewals
from worker.domain.grace_period import CancelledBy, Timer, TimerState
from worker.expiry.plan import StoredTimer

# pg_advisory_xact_lock(int, int): (this class, a hash of the reseller and subscription ids).
_SUBSCRIPTION_LOCK_CLASS = 0x5EF0_0E02


def _subscription_key(subscription: ResellerKey) -> int:
    """A stable signed 32-bit hash of the key: the second key of its advisory lock."""
    reseller, subscription_id = subscription
    named = f"{len(reseller)}:{reseller}/{subscription_id}".encode()
    return int.from_bytes(hashlib.blake2b(named, digest_size=4).digest(), "big", signed=True)


async def lock_subscriptions(conn: AsyncConnection, subscriptions: Iterable[ResellerKey]) -> None:
    """Serialise the expiry and renewal batches that touch the same subscriptions until commit.

    Keys are taken in ascending order (unnest keeps the array's order), so two batches never
    wait on each other in a cycle; two ids sharing a hash only share a lock.
    """
    keys = sorted({_subscription_key(s) for s in subscriptions})
    if not keys:
        return
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:lock_class, k) FROM unnest(:keys) AS k").bindparams(
            bindparam("keys", type_=ARRAY(Integer))
        ),
        {"lock_class": _SUBSCRIPTION_LOCK_CLASS, "keys": keys},
    )


async def timers_for_update(
    conn: AsyncConnection, subscriptions: set[ResellerKey]
) -> dict[ResellerKey, StoredTimer]:
    keys, t = wanted_keys(), expiry_timers.c
    query = (
        select(expiry_timers)
        .join_from(
            keys, expiry_timers, (t.reseller_id == keys.c.reseller_id) & (t.subscription_id == keys.c.id)
        )
        .with_for_update(of=expiry_timers)
    )
    rows = await conn.execute(query, key_arrays(subscriptions))
    return {
        (row.reseller_id, row.subscription_id): StoredTimer(
            account_id=row.account_id,
            reseller_id=row.reseller_id,
            expiry_ce_id=row.expiry_ce_id,
            renewal_ce_id=row.renewal_ce_id,
            timer=Timer(
                expired_at=row.expired_at,
                due_at=row.due_at,
                state=TimerState(row.state),
                renewed_at=row.renewed_at,
                cancelled_by=CancelledBy(row.cancelled_by) if row.cancelled_by else None,
            ),
        )
        for row in rows
    }


async def renewals_after(
    conn: AsyncConnection, subscriptions: set[ResellerKey], *, after: datetime
) -> dict[ResellerKey, dict[datetime, str]]:
    """The renewals later than `after` of each subscription: renewed_at -> its ce_id."""
    r, keys = subscription_renewals.c, wanted_keys()
    query = select(r.reseller_id, r.subscription_id, r.renewed_at, r.ce_id).join_from(
        keys,
        subscription_renewals,
        (r.reseller_id == keys.c.reseller_id) & (r.subscription_id == keys.c.id) & (r.renewed_at > after),
    )
    rows = await conn.execute(query, key_arrays(subscriptions))
    found: dict[ResellerKey, dict[datetime, str]] = {}
    for reseller, subscription_id, renewed_at, ce_id in rows:
        found.setdefault((reseller, subscription_id), {})[renewed_at] = ce_id
    return found


_TIMER_UPDATABLE = (
    "account_id",
    "reseller_id",
    "expired_at",
    "due_at",
    "state",
    "cancelled_by",
    "renewed_at",
    "expiry_ce_id",
    "renewal_ce_id",
    "updated_at",
)


async def upsert_timers(conn: AsyncConnection, rows: Iterable[dict[str, Any]]) -> None:
    """Write the timers' new states; a fired timer is never overwritten (it has terminated)."""
    values = list(rows)
    if not values:
        return
    add = insert(expiry_timers).values(values)
    await conn.execute(
        add.on_conflict_do_update(
            index_elements=[expiry_timers.c.reseller_id, expiry_timers.c.subscription_id],
            set_={name: add.excluded[name] for name in _TIMER_UPDATABLE},
            where=expiry_timers.c.state != TimerState.FIRED.value,
        )
    )
