"""The ledger is the truth (contract section 8): PostgreSQL itself refuses to edit or remove an entry,
whoever asks, so a balance is only ever corrected by a new entry (a reversal, a correction)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import migrated_engine
from tests.integration.harness import unique
from tests.service.adjustment_support import ledger_of, terminate


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_ledger") as engine:
        yield engine


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE balance_ledger SET delta_minor = 1 WHERE account_id = :account",
        "DELETE FROM balance_ledger WHERE account_id = :account",
        "TRUNCATE balance_ledger",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_the_database_refuses_to_edit_or_remove_a_ledger_entry(
    database: AsyncEngine, statement: str
) -> None:
    account = unique("acc")
    await terminate(database, account, unique("res"))
    before = await ledger_of(database, account)

    with pytest.raises(DBAPIError, match="balance_ledger is append-only"):
        async with database.begin() as conn:
            await conn.execute(text(statement), {"account": account})

    assert await ledger_of(database, account) == before == [(1, 12000, 12000)]


async def test_new_entries_still_go_in(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    await terminate(database, account, reseller)
    await terminate(database, account, reseller)
    assert await ledger_of(database, account) == [(1, 12000, 12000), (2, 12000, 24000)]
