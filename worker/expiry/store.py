"""All of the expiry use case's SQL: subscription locks, timer rows, renewals and the firing's statements."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.outputs import TerminationCause
from schemas.topics import Topic
from worker.db.bulk import copy_rows, wanted
from worker.db.schema.expiry import expiry_timer_failures, expiry_timers, subscription_renewals
from worker.db.schema.outbox import outbox
from worker.db.schema.refunds import terminations
from worker.domain.grace_period import (
    BY_REQUEST,
    EARLIEST_INSTANT,
    FIRES_FROM,
    CancelledBy,
    Timer,
    TimerState,
)
from worker.domain.policy import NoRefundReason
from worker.domain.watermark import low_watermark
from worker.expiry.plan import Due, Parked, StoredTimer, stored_instant, terminated_event
from worker.expiry.read_progress import (
    CaughtUp,
    as_progress,
    progress_of,
    record_caught_up,
)

# pg_advisory_xact_lock(int, int): (this class, a hash of the subscription id).
_SUBSCRIPTION_LOCK_CLASS = 0x5EF0_0E02


def _subscription_key(subscription_id: str) -> int:
    """A stable signed 32-bit hash of the id: the second key of its advisory lock."""
    return int.from_bytes(
        hashlib.blake2b(subscription_id.encode(), digest_size=4).digest(), "big", signed=True
    )


async def lock_subscriptions(conn: AsyncConnection, subscription_ids: Iterable[str]) -> None:
    """Serialise the expiry and renewal batches that touch the same subscriptions until commit.

    Keys are taken in ascending order (unnest keeps the array's order), so two batches never
    wait on each other in a cycle; two ids sharing a hash only share a lock.
    """
    keys = sorted({_subscription_key(s) for s in subscription_ids})
    if not keys:
        return
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:lock_class, k) FROM unnest(:keys) AS k").bindparams(
            bindparam("keys", type_=ARRAY(Integer))
        ),
        {"lock_class": _SUBSCRIPTION_LOCK_CLASS, "keys": keys},
    )


async def timers_for_update(conn: AsyncConnection, subscription_ids: set[str]) -> dict[str, StoredTimer]:
    ids = wanted("ids")
    query = (
        select(expiry_timers)
        .join_from(ids, expiry_timers, expiry_timers.c.subscription_id == ids.c.id)
        .with_for_update(of=expiry_timers)
    )
    rows = await conn.execute(query, {"ids": list(subscription_ids)})
    return {
        row.subscription_id: StoredTimer(
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
    conn: AsyncConnection, subscription_ids: set[str], *, after: datetime
) -> dict[str, dict[datetime, str]]:
    """The renewals later than `after` of each subscription: renewed_at -> its ce_id."""
    r, ids = subscription_renewals.c, wanted("ids")
    query = select(r.subscription_id, r.renewed_at, r.ce_id).join_from(
        ids, subscription_renewals, (r.subscription_id == ids.c.id) & (r.renewed_at > after)
    )
    rows = await conn.execute(query, {"ids": list(subscription_ids)})
    found: dict[str, dict[datetime, str]] = {}
    for subscription_id, renewed_at, ce_id in rows:
        found.setdefault(subscription_id, {})[renewed_at] = ce_id
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
            index_elements=[expiry_timers.c.subscription_id],
            set_={name: add.excluded[name] for name in _TIMER_UPDATABLE},
            where=expiry_timers.c.state != TimerState.FIRED.value,
        )
    )


async def renewals_watermark(conn: AsyncConnection, reads: CaughtUp | None, now: datetime) -> datetime | None:
    topic = Topic.SUBSCRIPTION_RENEWED.value
    progress = await progress_of(conn, topic)
    if reads is None:
        return low_watermark(progress, now=now)
    await record_caught_up(conn, topic, reads, stored=progress)
    return low_watermark([*progress, *as_progress(reads)], now=now, partitions=reads.partitions)


async def claim_due(conn: AsyncConnection, watermark: datetime, limit: int) -> Sequence[Any]:
    """Lock the due timers (skipping those another transaction holds), earliest first. Instants come
    as epoch numbers, which decode whatever is stored; `readable` then judges each row alone."""
    t = expiry_timers.c
    claim = (
        select(
            t.subscription_id,
            t.account_id,
            t.reseller_id,
            t.expiry_ce_id,
            func.extract("epoch", t.expired_at).label("expired_epoch"),
            func.extract("epoch", t.due_at).label("due_epoch"),
        )
        .where(due_clause(watermark), not_parked())
        .order_by(t.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=expiry_timers)
    )
    return (await conn.execute(claim)).all()


def not_parked() -> ColumnElement[bool]:
    t, failed = expiry_timers.c, expiry_timer_failures.c
    parked = select(failed.subscription_id).where(
        failed.subscription_id == t.subscription_id, failed.expiry_ce_id == t.expiry_ce_id
    )
    return ~parked.exists()


async def park(conn: AsyncConnection, parked: Sequence[Parked], now: datetime) -> None:
    if not parked:
        return
    rows = [
        {
            "subscription_id": p.subscription_id,
            "expiry_ce_id": p.expiry_ce_id,
            "error": p.error,
            "failed_at": now,
        }
        for p in parked
    ]
    await conn.execute(insert(expiry_timer_failures).values(rows).on_conflict_do_nothing())


async def earliest_due(conn: AsyncConnection, *, after: datetime | None) -> datetime | None:
    """The earliest pending deadline after `after` (any, if None), of the timers not set aside."""
    t = expiry_timers.c
    pending = select(func.min(func.extract("epoch", t.due_at))).where(t.state == FIRES_FROM, not_parked())
    if after is not None:
        pending = pending.where(t.due_at > after)
    epoch = await conn.scalar(pending)
    if epoch is None:
        return None
    try:
        return stored_instant(Decimal(epoch))
    except (ArithmeticError, ValueError):
        # Before year 1 (-infinity, BC): due by any clock, to be claimed and set aside; after
        # 9999 (+infinity): never due, nothing to wait for.
        return EARLIEST_INSTANT if Decimal(epoch) < 0 else None


async def terminate_expired(conn: AsyncConnection, due: Sequence[Due], now: datetime) -> set[str]:
    """Insert the terminations and their events; returns the subscriptions terminated here (those a
    request terminated first keep that termination, and nothing is published for them)."""
    rows = [
        {
            "subscription_id": d.subscription_id,
            "account_id": d.account_id,
            "reseller_id": d.reseller_id,
            "cause": TerminationCause.EXPIRED,
            "request_id": None,
            "terminated_at": now,
            "currency": None,
            "refund_minor": 0,
            "rule": None,
            "no_refund_reason": NoRefundReason.EXPIRED,
        }
        for d in due
    ]
    add = (
        insert(terminations)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[terminations.c.subscription_id])
        .returning(terminations.c.subscription_id)
    )
    ours = set((await conn.execute(add)).scalars())
    events = [terminated_event(d, now) for d in due if d.subscription_id in ours]
    await copy_rows(conn, outbox, [e.row() for e in events])
    return ours


async def mark_fired(
    conn: AsyncConnection, fired: Sequence[str], others: Sequence[str], now: datetime
) -> None:
    ids = wanted("ids")
    mark = update(expiry_timers).where(expiry_timers.c.subscription_id == ids.c.id)
    if fired:
        fire = mark.values(state=TimerState.FIRED, fired_at=now, updated_at=now)
        await conn.execute(fire, {"ids": list(fired)})
    if others:
        cancel = mark.values(state=BY_REQUEST.state, cancelled_by=BY_REQUEST.cancelled_by, updated_at=now)
        await conn.execute(cancel, {"ids": list(others)})


def due_clause(deadline_by: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """`Timer.is_due` in SQL (worker.domain.grace_period): the timer fires from its state and its deadline
    is reached by `deadline_by` (the renewals' low watermark; the clock for the overdue gauge)."""
    t = expiry_timers.c
    return (t.state == FIRES_FROM) & (t.due_at <= deadline_by)
