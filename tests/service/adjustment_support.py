"""The adjustment use case's batch applied in PostgreSQL alone, and what it left there: the helpers of
tests/service/test_adjustments_service.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.adjustments import BalanceAdjustmentRequested
from schemas.inputs import TerminationRequested
from tests.integration.harness import adjustment_data, termination_data, unique
from tests.stored_events import stored_events
from worker.adjustments.commands import AdjustmentCommand, AdjustmentResult, adjustment_request
from worker.adjustments.service import apply_adjustment_batch
from worker.db.schema.adjustments import adjustments, transactions
from worker.db.schema.balances import account_balances, balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.outbox import outbox_events
from worker.domain.adjustment_requests import AdjustmentRequest, Refused
from worker.domain.policy import RefundPolicy
from worker.engine.outbox import derived_id
from worker.engine.parsing import payload_digest
from worker.engine.wire_to_domain import termination_terms
from worker.terminations.commands import TerminationCommand
from worker.terminations.service import apply_termination_batch

NOW = datetime(2021, 5, 3, 6, 20, tzinfo=UTC)
TERMINATED = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)


def command(data: dict[str, Any], ce_id: str | None = None) -> AdjustmentCommand:
    requested = BalanceAdjustmentRequested.model_validate(data)
    return AdjustmentCommand(adjustment_request(ce_id or unique("adj"), requested), payload_digest(requested))


async def apply(engine: AsyncEngine, commands: Sequence[AdjustmentCommand]) -> list[AdjustmentResult]:
    async with engine.begin() as conn:
        return await apply_adjustment_batch(conn, commands, now=NOW)


async def terminate(engine: AsyncEngine, account: str, reseller: str, **fields: Any) -> str:
    """A termination of the account refunded in full (120.00 SGD); returns its refund_id."""
    async with engine.begin() as conn:
        return await terminate_in(conn, account, reseller, **fields)


async def terminate_in(conn: AsyncConnection, account: str, reseller: str, **fields: Any) -> str:
    """As `terminate`, in the connection's transaction."""
    request = TerminationRequested.model_validate(
        termination_data(account_id=account, reseller_id=reseller, **fields)
    )
    request_id = unique("term")
    termination = TerminationCommand(
        request_id=request_id,
        payload_sha256=payload_digest(request),
        subscription_id=request.subscription_id,
        account_id=account,
        reseller_id=reseller,
        requested_by=request.requested_by,
        reason=request.reason,
        terms=termination_terms(request),
    )
    (result,) = await apply_termination_batch(conn, [termination], policy=RefundPolicy(), now=TERMINATED)
    assert result.decision is not None
    assert result.decision.amount.minor == 12000
    return derived_id(reseller, request_id, "refund")


async def ledger_of(engine: AsyncEngine, account: str, currency: str = "SGD") -> list[tuple[int, int, int]]:
    """(balance_version, delta, balance) of each ledger entry of the account, in version order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                balance_ledger.c.balance_version, balance_ledger.c.delta_minor, balance_ledger.c.balance_minor
            )
            .where(balance_ledger.c.account_id == account, balance_ledger.c.currency == currency)
            .order_by(balance_ledger.c.balance_version)
        )
        return [(int(v), int(d), int(b)) for v, d, b in rows]


async def balance_of(engine: AsyncEngine, account: str, currency: str = "SGD") -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(account_balances.c.balance_minor, account_balances.c.balance_version).where(
                    account_balances.c.account_id == account, account_balances.c.currency == currency
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def events_for(engine: AsyncEngine, request: AdjustmentRequest) -> dict[str, dict[str, Any]]:
    """The stored events a request caused, by topic."""
    ids = {
        derived_id(request.reseller_id, request.adjustment_id, topic): topic
        for topic in ("balance-adjusted", "credits-updated", "adjustment-rejected")
    }
    async with engine.connect() as conn:
        stored = stored_events.c
        rows = await conn.execute(select(stored.event_id, stored.data).where(stored.event_id.in_(ids)))
        return {ids[event_id]: data for event_id, data in rows}


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table.name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
            for table in (inbox, adjustments, transactions, balance_ledger, account_balances, outbox_events)
        }


def story(
    account: str, reseller: str, refund_id: str, note_refund_id: str
) -> list[tuple[str, dict[str, Any], str]]:
    """(ce_id, data, expected answer) of every rule of section 8, in an order where each request sees
    what the ones before it applied. The account starts at 240.00 SGD: two terminations' refunds,
    the second paid as a credit note (no credits moved)."""
    ids = {name: unique(name) for name in ("credit", "txn1", "txn2", "usd", "corr")}

    def adjust(kind: str, **fields: Any) -> dict[str, Any]:
        return adjustment_data(account, reseller, kind, **fields)

    def txn(amount: str, full: str = "45.00") -> dict[str, Any]:
        return adjust(
            "transaction_refund", amount=amount, transaction={"transaction_id": "txn-1", "amount": full}
        )

    other_actor = {"id": "intruder@other.example", "reseller_id": "res-other", "permissions": ["*"]}
    return [
        (unique("adj"), adjust("credit", amount="0.00", actor=other_actor), "forbidden"),
        (
            unique("adj"),
            adjust("credit", actor={**other_actor, "reseller_id": reseller, "permissions": []}),
            "forbidden",
        ),
        (unique("adj"), adjust("credit", amount="0.00"), "invalid_amount"),
        (ids["credit"], adjust("credit", amount="10.00"), "applied"),  # 130.00
        (ids["corr"], adjust("correction", amount="-5.00"), "applied"),  # 125.00
        (unique("adj"), adjust("correction", amount="-125.01"), "insufficient_balance"),
        (ids["txn1"], txn("20.00"), "applied"),  # 145.00, 25.00 left
        (ids["txn2"], txn("20.00"), "applied"),  # 165.00, 5.00 left
        (unique("adj"), txn("10.00"), "exceeds_refundable"),
        (unique("adj"), txn("1.00", full="50.00"), "invalid_amount"),
        (unique("adj"), adjust("reversal", reverses=ids["credit"]), "applied"),  # 155.00
        (unique("adj"), adjust("reversal", reverses=ids["credit"]), "already_reversed"),
        (unique("adj"), adjust("reversal", reverses="adj-nobody"), "unknown_target"),
        (ids["usd"], adjust("credit", currency="USD", amount="1.00"), "applied"),  # USD 1.00
        (unique("adj"), adjust("reversal", reverses=ids["usd"]), "currency_mismatch"),
        (unique("adj"), adjust("reversal", reverses=note_refund_id), "not_reversible"),
        (unique("adj"), adjust("reversal", reverses=refund_id), "applied"),  # 35.00
        (unique("adj"), adjust("reversal", reverses=refund_id), "already_reversed"),
        (unique("adj"), adjust("reversal", reverses=ids["txn1"]), "applied"),  # 15.00, 25.00 left again
        (unique("adj"), txn("25.00"), "applied"),  # 40.00, nothing left
        (unique("adj"), adjust("correction", amount="-40.01"), "insufficient_balance"),
    ]


def answer(result: AdjustmentResult) -> str:
    decision = result.decision
    return decision.code.value if isinstance(decision, Refused) else result.outcome.value
