"""The look-ups of a batch of terminations, of adjustments, of money refund requests and of payment
settlements stay index probes when the tables are large.

The statements are the worker's own, captured while it applies a batch (bench/statements.py), and
each is explained with its real parameters twice: as a custom plan and as the generic plan a
prepared statement falls back to after five runs. Issue 13: a look-up that turns into a sequential
scan or a hash join over a whole table costs more with every row the worker has ever written.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench.prefill import ADJUSTMENT_TABLES, MONEY_REFUND_TABLES, prefill
from bench.statements import (
    OneConnection,
    RecordedBatch,
    Statement,
    commands,
    record_batches,
    request,
    send_nothing,
)
from schemas.adjustments import BalanceAdjustmentRequested
from schemas.topics import TOPICS, Topic
from tests.databases import fresh_database
from tests.integration.harness import adjustment_data, money_refund_data, settlement_data
from tests.service.money_refund_support import TIMEOUT, settlement
from tests.service.money_refund_support import request as money_refund
from worker.adjustments.commands import AdjustmentCommand, adjustment_request
from worker.adjustments.service import apply_adjustment_batch
from worker.db.migrate import upgrade_to_head
from worker.engine.outbox import OutboxEvent, OutboxRelay
from worker.engine.outbox_store import store_events
from worker.engine.runtime import create_engine
from worker.money_refunds.service import apply_money_refund_batch
from worker.money_refunds.settlement_service import apply_settlement_batch

# The size where a plain join is most tempted to hash: big enough that a whole-table read costs
# far more than 500 probes (the issue saw 7-19 ms per look-up from 60,000 inbox rows on), small
# enough that the planner still rates that read cheaper than the probes. From a few hundred
# thousand rows on, custom plans go back to probes by themselves; LOOKUP_PLAN_ROWS=1000000
# checks the size of issue 13 (bench/throughput.py --prefill measures the cost there).
ROWS = int(os.environ.get("LOOKUP_PLAN_ROWS", "60000"))
LOOKED_UP = (
    "inbox",
    "terminations",
    "credit_notes",
    "expiry_timers",
    "outbox_batches",
    "outbox_events",
    "invoice_credit_notes",
    *ADJUSTMENT_TABLES,
    *MONEY_REFUND_TABLES,
)
BATCH = 500

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def large_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_server_url) as url:
        engine = create_engine(url, pool_size=1)
        try:
            await upgrade_to_head(engine)
            await prefill(engine, ROWS, LOOKED_UP)
        finally:
            await engine.dispose()
        yield url


@pytest.fixture(scope="module")
async def batch_statements(large_database: str) -> list[Statement]:
    """Every statement but the COPYs of a batch of 500 requests, some citing a credit note of the
    operator's, the second of two batches (so its requests are seen by the look-ups of the first)."""
    engine: AsyncEngine = create_engine(large_database, pool_size=1)
    try:
        messages = [request(i, "plan", accounts=200) for i in range(2 * BATCH)]
        parsed = commands([_with_credit_note(m, i) for i, m in enumerate(messages)])
        recorded: list[RecordedBatch] = await record_batches(engine, [parsed[:BATCH], parsed[BATCH:]])
    finally:
        await engine.dispose()
    last = recorded[-1]
    return [step for step in [*last.apply, *last.relay] if isinstance(step, Statement)]


async def recorded_statements(
    url: str, apply: Callable[[AsyncConnection], Awaitable[object]]
) -> list[Statement]:
    """Every statement but the COPYs that `apply` runs, in a transaction rolled back."""
    engine: AsyncEngine = create_engine(url, pool_size=1)
    recorded: list[Statement] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        recorded.append(Statement(statement, tuple(parameters or ())))

    try:
        event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
        async with engine.connect() as conn:
            transaction = await conn.begin()
            try:
                await apply(conn)
            finally:
                await transaction.rollback()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
        await engine.dispose()
    return recorded


@pytest.fixture(scope="module")
async def claim_statements(large_database: str) -> list[Statement]:
    """The relay's claim from the table of a batch a crash left unpublished: the claim of the oldest
    batches, the read of their events and the mark (the outbox prefilled with published batches)."""
    spec, now = TOPICS[Topic.TERMINATION_REJECTED], datetime.now(UTC)
    events = [
        OutboxEvent.built(f"plan-ev-{i}", spec, {"request_id": f"plan-{i}", "subscription_id": f"s-{i}"}, now)
        for i in range(3 * BATCH)
    ]

    async def store_then_claim(conn: AsyncConnection) -> None:
        await store_events(conn, events)
        relay = OutboxRelay(OneConnection(conn), send_nothing, source="/plan", batch_size=2000)  # type: ignore[arg-type]
        assert await relay.relay_once() == len(events)

    return await recorded_statements(large_database, store_then_claim)


@pytest.fixture(scope="module")
async def adjustment_statements(large_database: str) -> list[Statement]:
    """A batch of 500 adjustments of prefilled accounts: credits, transaction refunds, and reversals
    of prefilled adjustments and termination refunds."""
    batch = [_adjustment(i) for i in range(BATCH)]
    return await recorded_statements(
        large_database, lambda conn: apply_adjustment_batch(conn, batch, now=datetime.now(UTC))
    )


@pytest.fixture(scope="module")
async def money_refund_statements(large_database: str) -> list[Statement]:
    """A batch of 500 money refund requests of prefilled accounts and payments, half of them taken
    from the credits."""
    batch = []
    for index in range(BATCH):
        prefilled = 2 * index + 1
        account, reseller = f"prefill-acc-{prefilled}", f"prefill-res-{prefilled % 7}"
        paid = {"payment_id": f"prefill-pay-{prefilled}", "amount": "100.00", "currency": "SGD"}
        data = money_refund_data(account, reseller, payment=paid, amount="1.00", from_balance=index % 2 == 0)
        batch.append(money_refund(data, f"plan-mr-{index}"))
    return await recorded_statements(
        large_database,
        lambda conn: apply_money_refund_batch(conn, batch, now=datetime.now(UTC), settle_within=TIMEOUT),
    )


@pytest.fixture(scope="module")
async def settlement_statements(large_database: str) -> list[Statement]:
    """A batch of 500 settlements of prefilled open instructions, half of them failed (their
    payments freed, debited credits given back)."""
    batch = []
    for index in range(BATCH):
        prefilled = 2 * index + 1  # an odd prefilled instruction is open
        account, reseller = f"prefill-acc-{prefilled}", f"prefill-res-{prefilled % 7}"
        status = "failed" if index % 2 else "succeeded"
        data = settlement_data(f"prefill-ins-{prefilled}", account, reseller, status)
        batch.append(settlement(data, f"plan-st-{index}", partition=index % 4))
    return await recorded_statements(
        large_database, lambda conn: apply_settlement_batch(conn, batch, now=datetime.now(UTC))
    )


def _adjustment(index: int) -> AdjustmentCommand:
    prefilled = 2 * index + 1  # an odd prefilled adjustment is a transaction refund
    account, reseller = f"prefill-acc-{prefilled}", f"prefill-res-{prefilled % 7}"
    kinds: list[dict[str, Any]] = [
        adjustment_data(account, reseller, "credit"),
        adjustment_data(account, reseller, "reversal", reverses=f"prefill-adj-{prefilled}"),
        adjustment_data(account, reseller, "reversal", reverses=f"prefill-rf-{prefilled}"),
        adjustment_data(
            account,
            reseller,
            "transaction_refund",
            amount="1.00",
            transaction={"transaction_id": f"prefill-txn-{prefilled}", "amount": "10.00"},
        ),
    ]
    requested = BalanceAdjustmentRequested.model_validate(kinds[index % len(kinds)])
    return AdjustmentCommand(adjustment_request(f"plan-adj-{index}", requested), b"digest")


def _with_credit_note(message: tuple[str, bytes, bytes], index: int) -> tuple[str, bytes, bytes]:
    ce_id, key, value = message
    if index % 5:
        return message
    data = json.loads(value)
    data["credit_note"] = {"credit_note_id": f"cn-{ce_id}", "amount": "100.00"}
    return ce_id, key, json.dumps(data).encode()


def test_batch_issues_each_look_up(batch_statements: list[Statement]) -> None:
    texts = " ".join(statement.sql for statement in batch_statements)
    looked_up = (
        "inbox",
        "terminations",
        "credit_notes",
        "expiry_timers",
        "outbox_batches",
        "invoice_credit_notes",
    )
    for table in looked_up:
        assert f"JOIN {table} ON" in texts or f"UPDATE {table}" in texts or f"FROM {table}" in texts, table


def test_relay_claim_issues_each_look_up(claim_statements: list[Statement]) -> None:
    texts = " ".join(statement.sql for statement in claim_statements)
    for part in ("FROM outbox_batches", "SKIP LOCKED", "FROM outbox_events", "UPDATE outbox_batches"):
        assert part in texts, part


def test_adjustment_batch_issues_each_look_up(adjustment_statements: list[Statement]) -> None:
    texts = " ".join(statement.sql for statement in adjustment_statements)
    for table in ("inbox", "account_balances", "adjustments", "refunds", "transactions"):
        assert f"JOIN {table} ON" in texts or f"FROM {table}" in texts, table
    assert "FOR UPDATE" in texts


def test_money_refund_batches_issue_each_look_up(
    money_refund_statements: list[Statement], settlement_statements: list[Statement]
) -> None:
    requests = " ".join(statement.sql for statement in money_refund_statements)
    settlements = " ".join(statement.sql for statement in settlement_statements)
    for table in ("inbox", "account_balances", "money_refund_payments"):
        assert f"JOIN {table} ON" in requests or f"FROM {table}" in requests, table
    for table in ("inbox", "money_refund_instructions", "account_balances", "money_refund_payments"):
        assert f"JOIN {table} ON" in settlements or f"FROM {table}" in settlements, table
    assert "INSERT INTO money_refund_instructions" in settlements
    assert "pg_advisory_xact_lock" in requests
    assert "pg_advisory_xact_lock" in settlements


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize(
    "use_case", ["terminations", "relay claims", "adjustments", "money refunds", "settlements"]
)
async def test_look_ups_probe_indexes_of_large_tables(
    large_database: str,
    batch_statements: list[Statement],
    claim_statements: list[Statement],
    adjustment_statements: list[Statement],
    money_refund_statements: list[Statement],
    settlement_statements: list[Statement],
    plan_cache_mode: str,
    use_case: str,
) -> None:
    statements = {
        "terminations": batch_statements,
        "relay claims": claim_statements,
        "adjustments": adjustment_statements,
        "money refunds": money_refund_statements,
        "settlements": settlement_statements,
    }[use_case]
    conn = await asyncpg.connect(large_database)
    try:
        await conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        for statement in statements:
            plan = await explain(conn, statement)
            problems = list(whole_table_reads(plan, LOOKED_UP))
            assert not problems, (
                f"{' '.join(statement.sql.split())}\n{problems}\n{json.dumps(plan, indent=1)}"
            )
    finally:
        await conn.close()


async def explain(conn: asyncpg.Connection, statement: Statement) -> dict[str, Any]:
    """The plan the server would run the statement with, prepared as the worker's driver prepares it
    (so plan_cache_mode decides custom or generic), its parameters as literals (EXECUTE takes no
    protocol parameters). Inside a transaction rolled back: EXPLAIN does not run it, but be sure."""
    literals = [await _literal(conn, value) for value in statement.args]
    arguments = f"({', '.join(literals)})" if literals else ""
    async with conn.transaction():
        await conn.execute(f"PREPARE look_up AS {statement.sql}")
        try:
            rows = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE look_up{arguments}")
        finally:
            await conn.execute("DEALLOCATE look_up")
    plan: dict[str, Any] = json.loads(rows)[0]["Plan"]
    return plan


async def _literal(conn: asyncpg.Connection, value: Any) -> str:
    """`value` as a quoted literal of unknown type, which EXECUTE casts to the parameter's type."""
    if isinstance(value, list):
        first = next((item for item in value if item is not None), None)
        element = (
            "bigint" if isinstance(first, int) else "timestamptz" if isinstance(first, datetime) else "text"
        )
        rendered = await conn.fetchval(f"SELECT $1::{element}[]::text", value)
    elif isinstance(value, datetime):
        rendered = await conn.fetchval("SELECT $1::timestamptz::text", value)
    else:
        rendered = str(value)
    quoted: str = await conn.fetchval("SELECT quote_literal($1::text)", rendered)
    return quoted


def whole_table_reads(plan: dict[str, Any], large: tuple[str, ...]) -> Iterator[str]:
    """Nodes that read a large table whole: a sequential scan of it, or a hash or merge join with
    it under one side (a hash join builds from, or probes with, every row of its inputs)."""
    for node in _nodes(plan):
        kind = node["Node Type"]
        if kind == "Seq Scan" and node.get("Relation Name") in large:
            yield f"Seq Scan on {node['Relation Name']}"
        if kind in ("Hash Join", "Merge Join"):
            tables = {str(inner.get("Relation Name")) for inner in _nodes(node)} & set(large)
            if tables:
                yield f"{kind} over {sorted(tables)}"


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)
