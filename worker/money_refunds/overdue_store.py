"""The overdue report's SQL: claiming the open instructions past their deadline, marking them
reported, and the next deadline. The partial index ix_money_refund_instructions_overdue holds exactly
the open instructions not reported yet, by deadline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.bulk import key_arrays
from worker.db.inbox import one_of_keys
from worker.db.schema.money_refunds import NOT_REPORTED, money_refund_instructions
from worker.money_refunds.commands import StoredInstruction
from worker.money_refunds.store import instruction_of

_NOT_REPORTED = text(NOT_REPORTED)  # as written: so the planner matches the partial index


async def claim_overdue(conn: AsyncConnection, watermark: datetime, limit: int) -> list[StoredInstruction]:
    """Lock the open, unreported instructions due by `watermark` (skipping those another transaction
    holds: a settlement batch settling one), earliest first."""
    i = money_refund_instructions.c
    claim = (
        select(money_refund_instructions, i.overdue_reported_at.is_not(None).label("overdue_reported"))
        .where(_NOT_REPORTED, i.due_at <= watermark)
        .order_by(i.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=money_refund_instructions)
    )
    return [instruction_of(row) for row in await conn.execute(claim)]


async def mark_overdue(conn: AsyncConnection, reported: Sequence[StoredInstruction], now: datetime) -> None:
    if not reported:
        return
    i = money_refund_instructions.c
    mark = (
        update(money_refund_instructions)
        .where(one_of_keys(i.reseller_id, i.instruction_id))
        .values(overdue_reported_at=now, updated_at=now)
    )
    await conn.execute(mark, key_arrays((r.reseller_id, r.instruction_id) for r in reported))


async def earliest_overdue(conn: AsyncConnection, *, after: datetime | None) -> datetime | None:
    """The earliest deadline of an open, unreported instruction after `after` (any, if None)."""
    i = money_refund_instructions.c
    pending = select(func.min(i.due_at)).where(_NOT_REPORTED)
    if after is not None:
        pending = pending.where(i.due_at > after)
    found: datetime | None = await conn.scalar(pending)
    return found
