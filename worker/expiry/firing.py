"""Firing due timers: one transaction terminates the subscriptions whose deadline the renewals read have
passed, with their subscription-terminated events; a timer that cannot fire is set aside."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.db.bulk import ResellerKey
from worker.engine.failures import FailureKind, brief, classify
from worker.expiry.firing_store import (
    claim_due,
    earliest_due,
    mark_fired,
    park,
    renewals_watermark,
    terminate_expired,
)
from worker.expiry.plan import Due, Fired, Parked, readable
from worker.expiry.read_progress import (
    CaughtUp,
)

log = logging.getLogger("worker.expiry")


# pg_try_advisory_xact_lock(bigint): held by the one worker firing timers. Any constant shared by
# every worker; the one-key form never collides with the two-key form used per subscription.
FIRING_LOCK_KEY = 0x5EF0_0E01


FIRE_BATCH_SIZE = 500
"""Timers terminated per transaction; the loop goes on at once while batches come back full."""


@dataclass(frozen=True, slots=True)
class FireReport:
    locked_out: bool = False
    """Another worker is firing timers right now; this one did nothing."""
    claimed: int = 0
    terminated: tuple[Fired, ...] = ()
    already_terminated: tuple[ResellerKey, ...] = ()
    """Subscriptions a termination request had terminated meanwhile: nothing was published."""
    parked: tuple[Parked, ...] = ()
    """Due timers that could not fire, now set aside; the others fired."""
    watermark: datetime | None = None
    """Renewals are read up to here, and timers due by then fire (None: not known, none fired)."""
    next_due_at: datetime | None = None
    """The earliest pending deadline after the watermark, if any (not known when locked out)."""


async def fire_due_timers(
    engine: AsyncEngine, now: datetime, limit: int = FIRE_BATCH_SIZE, *, reads: CaughtUp | None = None
) -> FireReport:
    """Terminate, in one transaction, up to `limit` subscriptions whose timers are due: their deadline
    is at or before the low watermark of subscription-renewed (and `now`). `reads`, what the broker
    said of the consumer group's progress, is recorded first. A timer that cannot fire is parked."""
    async with engine.begin() as conn:
        if not await conn.scalar(select(func.pg_try_advisory_xact_lock(FIRING_LOCK_KEY))):
            return FireReport(locked_out=True)
        watermark = await renewals_watermark(conn, reads, now)
        claimed = await claim_due(conn, watermark, limit) if watermark is not None else []
        due, parked = readable(claimed)
        fired, others, failed = await _fire(conn, due, now)
        parked += failed
        await park(conn, parked, now)
        next_due = await earliest_due(conn, after=watermark)
    return FireReport(False, len(claimed), fired, others, tuple(parked), watermark, next_due)


async def _fire(
    conn: AsyncConnection, due: Sequence[Due], now: datetime
) -> tuple[tuple[Fired, ...], tuple[ResellerKey, ...], list[Parked]]:
    """Fire them all at once; if that fails for a reason other than the database being away or
    busy, fire them one by one, each in its savepoint, and park those that fail alone."""
    if not due:
        return (), (), []
    try:
        async with conn.begin_nested():
            return (*await _terminate(conn, due, now), [])
    except Exception as error:
        if classify(error) in (FailureKind.INFRASTRUCTURE, FailureKind.CONTENTION):
            raise
        log.warning(
            "firing %d expiry timers together failed (%s); firing them one by one", len(due), brief(error)
        )
    fired: list[Fired] = []
    others: list[ResellerKey] = []
    parked: list[Parked] = []
    for one in due:
        try:
            async with conn.begin_nested():
                ours, theirs = await _terminate(conn, [one], now)
        except Exception as error:
            if classify(error) in (FailureKind.INFRASTRUCTURE, FailureKind.CONTENTION):
                raise
            parked.append(Parked(one.reseller_id, one.subscription_id, one.expiry_ce_id, brief(error)))
            continue
        fired += ours
        others += theirs
    return tuple(fired), tuple(others), parked


async def _terminate(
    conn: AsyncConnection, due: Sequence[Due], now: datetime
) -> tuple[tuple[Fired, ...], tuple[ResellerKey, ...]]:
    ours = await terminate_expired(conn, due, now)
    fired = tuple(
        Fired(d.reseller_id, d.subscription_id, d.account_id, d.expired_at, d.due_at)
        for d in due
        if (d.reseller_id, d.subscription_id) in ours
    )
    others = tuple(
        (d.reseller_id, d.subscription_id) for d in due if (d.reseller_id, d.subscription_id) not in ours
    )
    await mark_fired(conn, [(f.reseller_id, f.subscription_id) for f in fired], others, now)
    return fired, others
