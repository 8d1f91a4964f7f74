"""The expiry timers' firing, in SQL: the renewals' watermark, claiming due timers, terminating their
subscriptions, marking them fired and setting aside those that cannot fire. Every key is
(reseller_id, subscription_id)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.outputs import TerminationCause
from schemas.topics import Topic
from worker.db.bulk import ResellerKey, key_arrays
from worker.db.inbox import one_of_keys
from worker.db.schema.expiry import expiry_timer_failures, expiry_timers
from worker.db.schema.refunds import terminations
from worker.domain.grace_period import BY_REQUEST, EARLIEST_INSTANT, FIRES_FROM, TimerState
from worker.domain.policy import NoRefundReason
from worker.engine.outbox_store import store_events
from worker.expiry.plan import Due, Parked, stored_instant, terminated_event
from worker.expiry.read_progress import CaughtUp, topic_watermark


async def renewals_watermark(conn: AsyncConnection, reads: CaughtUp | None, now: datetime) -> datetime | None:
    return await topic_watermark(conn, Topic.SUBSCRIPTION_RENEWED.value, reads, now)


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
        failed.reseller_id == t.reseller_id,
        failed.subscription_id == t.subscription_id,
        failed.expiry_ce_id == t.expiry_ce_id,
    )
    return ~parked.exists()


async def park(conn: AsyncConnection, parked: Sequence[Parked], now: datetime) -> None:
    if not parked:
        return
    rows = [
        {
            "reseller_id": p.reseller_id,
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


async def terminate_expired(conn: AsyncConnection, due: Sequence[Due], now: datetime) -> set[ResellerKey]:
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
        .on_conflict_do_nothing(index_elements=[terminations.c.reseller_id, terminations.c.subscription_id])
        .returning(terminations.c.reseller_id, terminations.c.subscription_id)
    )
    ours = {(reseller, subscription) for reseller, subscription in await conn.execute(add)}
    events = [terminated_event(d, now) for d in due if (d.reseller_id, d.subscription_id) in ours]
    await store_events(conn, events)
    return ours


async def mark_fired(
    conn: AsyncConnection, fired: Sequence[ResellerKey], others: Sequence[ResellerKey], now: datetime
) -> None:
    t = expiry_timers.c
    mark = update(expiry_timers).where(one_of_keys(t.reseller_id, t.subscription_id))
    if fired:
        fire = mark.values(state=TimerState.FIRED, fired_at=now, updated_at=now)
        await conn.execute(fire, key_arrays(fired))
    if others:
        cancel = mark.values(state=BY_REQUEST.state, cancelled_by=BY_REQUEST.cancelled_by, updated_at=now)
        await conn.execute(cancel, key_arrays(others))


def due_clause(deadline_by: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """`Timer.is_due` in SQL (worker.domain.grace_period): the timer fires from its state and its deadline
    is reached by `deadline_by` (the renewals' low watermark; the clock for the overdue gauge)."""
    t = expiry_timers.c
    return (t.state == FIRES_FROM) & (t.due_at <= deadline_by)
