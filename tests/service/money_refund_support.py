"""The money refund use case's batches applied in PostgreSQL alone, and what they left there: the
helpers of tests/service/test_money_refunds_service.py and test_money_refund_overdue.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.money_refunds import MoneyRefundRequested, MoneyRefundStatus, PaymentRefundSettled
from tests.integration.harness import adjustment_data, money_refund_data, settlement_data, unique
from tests.service.adjustment_support import apply as apply_adjustments
from tests.service.adjustment_support import command as adjustment
from tests.stored_events import stored_events
from worker.db.schema.balances import balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.money_refunds import money_refund_instructions, money_refund_payments
from worker.db.schema.outbox import outbox_events
from worker.domain.money_refund_facts import SettlementTimeout
from worker.engine.outbox import derived_id
from worker.engine.parsing import payload_digest
from worker.money_refunds.commands import (
    MoneyRefundCommand,
    MoneyRefundResult,
    SettlementCommand,
    SettlementResult,
    money_refund_request,
    payment_settlement,
)
from worker.money_refunds.events import (
    CREDITED_BACK_KIND,
    DEBITED_KIND,
    INSTRUCTED_KIND,
    REJECTED_KIND,
    updated_kind,
)
from worker.money_refunds.service import apply_money_refund_batch
from worker.money_refunds.settlement_service import apply_settlement_batch

NOW = datetime(2021, 5, 6, 2, 0, tzinfo=UTC)
SETTLED = datetime(2021, 5, 7, 3, 30, tzinfo=UTC)
TIMEOUT = SettlementTimeout(72)


def request(data: dict[str, Any], ce_id: str | None = None) -> MoneyRefundCommand:
    requested = MoneyRefundRequested.model_validate(data)
    return MoneyRefundCommand(
        money_refund_request(ce_id or unique("mr"), requested), payload_digest(requested)
    )


def settlement(
    data: dict[str, Any], ce_id: str | None = None, partition: int | None = None
) -> SettlementCommand:
    settled = PaymentRefundSettled.model_validate(data)
    return SettlementCommand(
        ce_id or unique("st"), payload_digest(settled), payment_settlement(settled), partition=partition
    )


def settlement_of(command: MoneyRefundCommand, status: str = "succeeded", **fields: Any) -> SettlementCommand:
    """A settlement of the instruction `command` became."""
    r = command.request
    return settlement(settlement_data(r.instruction_id, r.account_id, r.reseller_id, status, **fields))


async def instruct(
    engine: AsyncEngine, commands: Sequence[MoneyRefundCommand], now: datetime = NOW
) -> list[MoneyRefundResult]:
    async with engine.begin() as conn:
        return await apply_money_refund_batch(conn, commands, now=now, settle_within=TIMEOUT)


async def settle(
    engine: AsyncEngine, commands: Sequence[SettlementCommand], now: datetime = SETTLED
) -> list[SettlementResult]:
    async with engine.begin() as conn:
        return await apply_settlement_batch(conn, commands, now=now)


async def credit(engine: AsyncEngine, account: str, reseller: str, amount: str = "80.00") -> None:
    """Give the account credits (an operator's credit of `amount` SGD)."""
    await apply_adjustments(engine, [adjustment(adjustment_data(account, reseller, "credit", amount=amount))])


def refund(account: str, reseller: str, **fields: Any) -> MoneyRefundCommand:
    return request(money_refund_data(account, reseller, **fields))


async def events_of(engine: AsyncEngine, command: MoneyRefundCommand) -> dict[str, dict[str, Any]]:
    """The stored events of a request and of its instruction, by what they are: instructed, rejected,
    debited, credited_back, and money-refund-updated/<status>."""
    r = command.request
    by_request = {INSTRUCTED_KIND: "instructed", REJECTED_KIND: "rejected", DEBITED_KIND: "debited"}
    by_request[updated_kind_of("instructed")] = "updated/instructed"
    by_instruction = {CREDITED_BACK_KIND: "credited_back"}
    for status in ("succeeded", "failed", "overdue"):
        by_instruction[updated_kind_of(status)] = f"updated/{status}"
    ids = {derived_id(r.reseller_id, r.request_id, kind): name for kind, name in by_request.items()}
    ids |= {derived_id(r.reseller_id, r.instruction_id, kind): name for kind, name in by_instruction.items()}
    async with engine.connect() as conn:
        stored = stored_events.c
        rows = await conn.execute(select(stored.event_id, stored.data).where(stored.event_id.in_(ids)))
        return {ids[event_id]: data for event_id, data in rows}


def updated_kind_of(status: str) -> str:
    return updated_kind(MoneyRefundStatus(status))


async def instruction(engine: AsyncEngine, command: MoneyRefundCommand) -> dict[str, Any]:
    r = command.request
    i = money_refund_instructions.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(money_refund_instructions).where(
                    i.reseller_id == r.reseller_id, i.instruction_id == r.instruction_id
                )
            )
        ).one()
    return dict(row._mapping)


async def payment(
    engine: AsyncEngine, account: str, reseller: str, payment_id: str = "pay-1"
) -> tuple[int, int]:
    """(amount, taken) of a payment, in minor units."""
    p = money_refund_payments.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(p.amount_minor, p.taken_minor).where(
                    p.reseller_id == reseller, p.account_id == account, p.payment_id == payment_id
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def ledger_causes(engine: AsyncEngine, account: str) -> list[tuple[int, str, str | None]]:
    """(delta, cause, instruction_id) of each ledger entry of the account, in version order."""
    b = balance_ledger.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(b.delta_minor, b.cause, b.instruction_id)
            .where(b.account_id == account)
            .order_by(b.balance_version)
        )
        return [(int(d), str(c), i) for d, c, i in rows]


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table.name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
            for table in (
                inbox,
                money_refund_instructions,
                money_refund_payments,
                balance_ledger,
                outbox_events,
            )
        }


def answer(result: MoneyRefundResult) -> str:
    code = getattr(result.decision, "code", None)
    return code.value if code is not None else result.outcome.value
