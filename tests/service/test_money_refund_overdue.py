"""The overdue report of money refunds in PostgreSQL alone, with an injected clock: an instruction the
payment service has not answered MONEY_REFUND_TIMEOUT_HOURS after it was instructed is reported once
the settlements are read up to its deadline, once, and stays open; a backlog of settlements holds it
back; a settled one is never reported; one worker reports at a time, and skips a row a settlement
batch holds; a restarted worker's loop reports what fell due while none ran."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import migrated_engine
from tests.integration.harness import unique
from tests.service.adjustment_support import balance_of
from tests.service.money_refund_support import (
    NOW,
    credit,
    events_of,
    instruct,
    instruction,
    refund,
    settle,
    settlement_of,
)
from worker.db.schema.expiry import read_progress
from worker.expiry.read_progress import CaughtUp
from worker.money_refunds.commands import SettlementAnswer
from worker.money_refunds.overdue import REPORTING_LOCK_KEY, report_overdue
from worker.money_refunds.overdue_timer import OverdueReports

DUE = NOW + timedelta(hours=72)


@pytest.fixture
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of its own per test: how far the settlements are read is the whole database's."""
    async with migrated_engine(postgres_server_url, prefix="refund_svc_overdue") as engine:
        yield engine


def caught_up(at: datetime, *partitions: int) -> CaughtUp:
    """The broker's answer: the topic has partitions 0..3, the group has read these to their end."""
    return CaughtUp(at, frozenset(range(4)), frozenset(partitions))


async def test_an_unanswered_instruction_is_reported_once_at_its_deadline_and_stays_open(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller)
    silent = refund(account, reseller, amount="20.99", from_balance=True)
    await instruct(database, [silent])
    before = await report_overdue(database, DUE - timedelta(seconds=1), reads=caught_up(DUE, 0, 1, 2, 3))
    at_deadline = await report_overdue(database, DUE, reads=caught_up(DUE, 0, 1, 2, 3))
    again = await report_overdue(database, DUE + timedelta(hours=1), reads=caught_up(DUE, 0, 1, 2, 3))

    assert (before.claimed, before.next_due_at) == (0, DUE)
    assert [r.instruction_id for r in at_deadline.reported] == [silent.request.instruction_id]
    assert (again.claimed, again.next_due_at) == (0, None)
    events = await events_of(database, silent)
    assert events["updated/overdue"] == {
        **events["updated/instructed"],
        "status": "overdue",
        "detail": (
            "no settlement from the payment service 72 hours after it was instructed at "
            "2021-05-06T02:00:00+00:00; still open: a settlement may still come"
        ),
        "updated_at": "2021-05-09T02:00:00Z",
    }
    stored = await instruction(database, silent)
    assert (stored["status"], stored["overdue_reported_at"]) == ("instructed", DUE)

    (late,) = await settle(database, [settlement_of(silent, "failed")], now=DUE + timedelta(hours=2))
    assert late.answer is SettlementAnswer.FAILED
    assert "credited_back" in await events_of(database, silent)
    assert await balance_of(database, account) == (8000, 3)


async def test_a_backlog_of_settlements_holds_the_report_back_until_it_is_read(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    answered_late = refund(account, reseller)
    await instruct(database, [answered_late])
    # Partition 2 was read up to an hour after the instruction, and the broker says the group is behind
    async with database.begin() as conn:
        await conn.execute(
            read_progress.insert().values(
                topic="payment-refund-settled", kafka_partition=2, read_through=NOW + timedelta(hours=1)
            )
        )
    later = DUE + timedelta(days=3)
    stored_only = await report_overdue(database, later)
    behind = await report_overdue(database, later, reads=caught_up(later, 0, 1, 3))
    (settled,) = await settle(database, [settlement_of(answered_late)], now=later)
    read_up = await report_overdue(database, later, reads=caught_up(later, 0, 1, 2, 3))

    assert (stored_only.watermark, stored_only.claimed) == (NOW + timedelta(hours=1), 0)
    assert (behind.watermark, behind.claimed) == (NOW + timedelta(hours=1), 0)
    assert settled.answer is SettlementAnswer.SUCCEEDED
    assert (read_up.watermark, read_up.claimed) == (later, 0)
    assert "updated/overdue" not in await events_of(database, answered_late)


async def test_one_worker_reports_at_a_time_and_a_row_being_settled_is_left_for_later(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    silent = refund(account, reseller)
    await instruct(database, [silent])
    reads = caught_up(DUE, 0, 1, 2, 3)
    async with database.connect() as other:
        transaction = await other.begin()
        await other.execute(select(func.pg_advisory_xact_lock(REPORTING_LOCK_KEY)))
        locked_out = await report_overdue(database, DUE, reads=reads)
        await transaction.rollback()
        transaction = await other.begin()
        await other.execute(
            text("SELECT 1 FROM money_refund_instructions WHERE instruction_id = :id FOR UPDATE"),
            {"id": silent.request.instruction_id},
        )
        skipped = await report_overdue(database, DUE, reads=reads)
        await transaction.rollback()
    reported = await report_overdue(database, DUE, reads=reads)

    assert locked_out.locked_out
    assert (skipped.locked_out, skipped.claimed) == (False, 0)
    assert [r.instruction_id for r in reported.reported] == [silent.request.instruction_id]


async def test_a_restarted_workers_loop_reports_what_fell_due_while_none_ran(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    silent, settled = refund(account, reseller, amount="10.99"), refund(account, reseller, amount="10.00")
    soon = refund(account, reseller, amount="1.99")
    await instruct(database, [silent, settled])
    await instruct(database, [soon], now=NOW + timedelta(days=4))
    await settle(database, [settlement_of(settled)])
    reported: list[str] = []
    restarted = OverdueReports(
        database,
        check_seconds=30,
        on_reported=lambda instructions: reported.extend(i.instruction_id for i in instructions),
        clock=lambda: NOW + timedelta(days=7) - timedelta(seconds=10),
        probe=_Answering(caught_up(NOW + timedelta(days=7), 0, 1, 2, 3)),  # type: ignore[arg-type]
    )

    delay = await restarted.report_all()

    assert reported == [silent.request.instruction_id]
    assert delay == pytest.approx(10.005, abs=0.01)  # until `soon` is due, within the check interval
    assert "updated/overdue" not in await events_of(database, settled)


class _Answering:
    """A ReadProbe that answers with what it was given."""

    def __init__(self, answer: CaughtUp) -> None:
        self.answer = answer

    async def probe(self) -> CaughtUp:
        return self.answer

    async def close(self) -> None:
        return None
