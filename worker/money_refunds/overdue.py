"""Reporting overdue money refunds (contract section 9): one transaction publishes `money-refund-updated`
with status overdue, once, for each open instruction whose deadline (instructed_at +
MONEY_REFUND_TIMEOUT_HOURS, stored when it was instructed) the settlements read have passed. The
instruction stays open: a settlement may still come, and is applied as any other.

Due means: the deadline is at or before the low watermark of payment-refund-settled
(worker.domain.watermark.deadline_reached, over the read_progress rows the settlement batches write
and what the broker says of the group's progress), so a settlement still unread in a backlog is
never overtaken by a report that it never came. One worker reports at a time (an advisory lock),
and the rows are claimed FOR UPDATE SKIP LOCKED (a settlement batch holding one is left alone; it
is found settled next time), so an instruction is reported once however many workers run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.money_refunds import MoneyRefundStatus
from schemas.topics import Topic
from worker.engine.outbox_store import store_events
from worker.expiry.read_progress import CaughtUp, topic_watermark
from worker.money_refunds.commands import StoredInstruction
from worker.money_refunds.events import overdue_detail, updated_event
from worker.money_refunds.overdue_store import claim_overdue, earliest_overdue, mark_overdue

# pg_try_advisory_xact_lock(bigint): held by the one worker reporting overdue money refunds. Another
# key than the expiry timers' (worker/expiry/firing.py): the two loops never wait on each other.
REPORTING_LOCK_KEY = 0x5EF0_0A12

REPORT_BATCH_SIZE = 500
"""Instructions reported per transaction; the loop goes on at once while batches come back full."""


@dataclass(frozen=True, slots=True)
class OverdueReport:
    locked_out: bool = False
    """Another worker is reporting right now; this one did nothing."""
    claimed: int = 0
    reported: tuple[StoredInstruction, ...] = ()
    watermark: datetime | None = None
    """Settlements are read up to here, and deadlines up to it are reported (None: not known)."""
    next_due_at: datetime | None = None
    """The earliest deadline of an unreported open instruction after the watermark, if any."""


async def report_overdue(
    engine: AsyncEngine, now: datetime, limit: int = REPORT_BATCH_SIZE, *, reads: CaughtUp | None = None
) -> OverdueReport:
    """Report, in one transaction, up to `limit` open instructions whose deadline is at or before the
    low watermark of payment-refund-settled (and `now`). `reads`, what the broker said of the
    consumer group's progress, is recorded first."""
    async with engine.begin() as conn:
        if not await conn.scalar(select(func.pg_try_advisory_xact_lock(REPORTING_LOCK_KEY))):
            return OverdueReport(locked_out=True)
        watermark = await topic_watermark(conn, Topic.PAYMENT_REFUND_SETTLED.value, reads, now)
        due = await claim_overdue(conn, watermark, limit) if watermark is not None else []
        events = [
            updated_event(instruction, MoneyRefundStatus.OVERDUE, overdue_detail(instruction), now)
            for instruction in due
        ]
        await mark_overdue(conn, due, now)
        await store_events(conn, events)
        next_due = await earliest_overdue(conn, after=watermark)
    return OverdueReport(False, len(due), tuple(due), watermark, next_due)
