"""Migration 0011 (money refunds) adds its tables beside what a release at 0010 wrote, leaves the
append-only ledger's rows as they were, and goes back down cleanly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import empty_engine, migrate

# What a release at 0010 wrote: a refund of 1.00 SGD to acc-1's credits.
BEFORE_0011 = """
INSERT INTO account_balances (account_id, currency, reseller_id, balance_minor, balance_version, updated_at)
    VALUES ('acc-1', 'SGD', 'res-a', 100, 1, now());
INSERT INTO balance_ledger (account_id, currency, balance_version, delta_minor, balance_minor, cause,
    refund_id, event_id, changed_at, reseller_id)
    VALUES ('acc-1', 'SGD', 1, 100, 100, 'refund', 'ref-1', 'ev-1', now(), 'res-a');
"""

INSTRUCTION = """
INSERT INTO money_refund_instructions (reseller_id, instruction_id, request_id, account_id, payment_id,
    method, currency, amount_minor, debited_minor, status, reason, requested_by, requested_at,
    instructed_at, due_at)
    VALUES ('res-a', :instruction, :request, 'acc-1', 'pay-1', 'charge_back', 'SGD', 5000, :debited,
    'instructed', 'money back', 'finance@res-a', now(), now(), now() + interval '72 hours')
"""


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with empty_engine(postgres_server_url, "refund_svc_m11") as engine:
        yield engine


def _shape(connection: Connection) -> tuple[set[str], set[str]]:
    inspector = inspect(connection)
    return set(inspector.get_table_names()), {c["name"] for c in inspector.get_columns("balance_ledger")}


async def test_0011_adds_the_money_refund_tables_and_keeps_the_ledger_as_it_was(
    empty_database: AsyncEngine,
) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(migrate, "0010")
        for statement in BEFORE_0011.split(";\n"):
            if statement.strip():
                await conn.execute(text(statement))
        await conn.run_sync(migrate, "0011")
    async with empty_database.connect() as conn:
        tables, ledger_columns = await conn.run_sync(_shape)
        entry = (
            await conn.execute(text("SELECT cause, refund_id, instruction_id FROM balance_ledger"))
        ).one()
        keys = await conn.run_sync(
            lambda sync: {
                table: inspect(sync).get_pk_constraint(table)["constrained_columns"]
                for table in ("money_refund_instructions", "money_refund_payments")
            }
        )
    assert {"money_refund_instructions", "money_refund_payments"} <= tables
    assert "instruction_id" in ledger_columns
    assert tuple(entry) == ("refund", "ref-1", None)
    assert keys == {
        "money_refund_instructions": ["reseller_id", "instruction_id"],
        "money_refund_payments": ["reseller_id", "account_id", "payment_id"],
    }


async def test_an_instruction_debits_all_of_its_amount_or_nothing(empty_database: AsyncEngine) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(migrate, "0011")
        for debited, instruction in ((0, "ins-1"), (5000, "ins-2")):
            await conn.execute(
                text(INSTRUCTION),
                {"instruction": instruction, "request": f"req-{instruction}", "debited": debited},
            )
    with pytest.raises(IntegrityError, match="debits_all_or_nothing"):
        async with empty_database.begin() as conn:
            await conn.execute(text(INSTRUCTION), {"instruction": "ins-3", "request": "req-3", "debited": 10})


async def test_0011_goes_down_to_0010_and_up_again(empty_database: AsyncEngine) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(migrate, "0011")
        await conn.run_sync(migrate, "0010", down=True)
        tables, ledger_columns = await conn.run_sync(_shape)
        await conn.run_sync(migrate, "0011")
    assert not {"money_refund_instructions", "money_refund_payments"} & tables
    assert "instruction_id" not in ledger_columns
