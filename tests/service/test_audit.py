"""`refund-worker audit` against PostgreSQL: balances the worker wrote agree with their ledger (exit
0), each way a balance can disagree is named with the account (exit 1), the audit's transaction
cannot write, and a database it cannot read is one line with exit 2."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tests.databases import fresh_database
from tests.integration.harness import termination_data, unique
from tests.service.test_terminations_service import command_for
from worker.db.audit import ProblemKind, audit_ledger
from worker.db.migrate import upgrade_to_head
from worker.db.schema.balances import account_balances
from worker.domain.policy import RefundPolicy
from worker.engine.runtime import create_engine
from worker.entrypoints.cli import app
from worker.terminations.service import apply_termination_batch

NOW = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)
REFUNDED = 12000  # the default request (SGD 120.00 yearly) asked within the refund window: all of it


@dataclass(frozen=True)
class Database:
    url: str
    engine: AsyncEngine
    twice: str
    """An account credited by two terminations: ledger versions 1 and 2, balance SGD 240.00."""
    once: str
    """Another account, credited once, which no test spoils: it must never be reported."""


@pytest.fixture
async def database(postgres_server_url: str) -> AsyncIterator[Database]:
    """A migrated database of this test alone, with balances written by the worker's own batch."""
    async with fresh_database(postgres_server_url, prefix="refund_svc_audit") as url:
        engine = create_engine(url, pool_size=1)
        try:
            await upgrade_to_head(engine)
            twice, once, reseller = unique("acc"), unique("acc"), unique("res")
            requests = [
                termination_data(account_id=twice, reseller_id=reseller),
                termination_data(account_id=twice, reseller_id=reseller),
                termination_data(account_id=once, reseller_id=reseller),
            ]
            async with engine.begin() as conn:
                await apply_termination_batch(
                    conn, [command_for(data) for data in requests], policy=RefundPolicy(), now=NOW
                )
            yield Database(url, engine, twice, once)
        finally:
            await engine.dispose()


async def audit(url: str, *args: str) -> Any:
    """The command as a person runs it (in a thread: it runs its own event loop)."""
    env = {"DATABASE_URL": url, "COLUMNS": "200"}
    return await asyncio.to_thread(CliRunner().invoke, app, ["audit", *args], env=env)


async def spoil(database: Database, statement: str, account: str | None = None) -> None:
    """Run `statement` with :account bound to `account`, by default the account credited twice, as
    a superuser can: around the ledger's append-only triggers (what the audit is there to catch)."""
    async with database.engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(statement), {"account": account or database.twice})


def reported(stdout: str) -> list[tuple[str, str, int | None]]:
    return [(p["account_id"], p["problem"], p["at_version"]) for p in map(json.loads, stdout.splitlines())]


async def test_balances_the_worker_wrote_agree_with_their_ledger_and_exit_0(database: Database) -> None:
    table, lines = await audit(database.url), await audit(database.url, "--json")
    assert (table.exit_code, lines.exit_code) == (0, 0)
    summary = "audit: 2 accounts checked, every balance agrees with its ledger\n"
    assert table.stdout == summary
    assert (lines.stdout, lines.stderr) == ("", summary)


@pytest.mark.parametrize(
    ("statement", "found"),
    [
        (
            "UPDATE account_balances SET balance_minor = balance_minor + 1 WHERE account_id = :account",
            [(ProblemKind.BALANCE_MISMATCH, None)],
        ),
        (
            "UPDATE account_balances SET balance_version = 3 WHERE account_id = :account",
            [(ProblemKind.VERSION_MISMATCH, None)],
        ),
        (
            "UPDATE balance_ledger SET balance_version = 3"
            " WHERE account_id = :account AND balance_version = 2",
            [(ProblemKind.VERSION_MISMATCH, None), (ProblemKind.VERSION_GAP, 2)],
        ),
        (
            "DELETE FROM balance_ledger WHERE account_id = :account AND balance_version = 2",
            [(ProblemKind.BALANCE_MISMATCH, None), (ProblemKind.VERSION_MISMATCH, None)],
        ),
        (
            "UPDATE balance_ledger SET balance_minor = 1 WHERE account_id = :account AND balance_version = 1",
            [(ProblemKind.RUNNING_BALANCE_MISMATCH, 1)],
        ),
        (
            "DELETE FROM account_balances WHERE account_id = :account",
            [(ProblemKind.BALANCE_MISSING, None)],
        ),
    ],
    ids=["balance", "stored-version", "version-gap", "ledger-row-gone", "running-balance", "no-balance-row"],
)
async def test_each_disagreement_is_reported_with_its_account_and_exit_1(
    database: Database, statement: str, found: list[tuple[ProblemKind, int | None]]
) -> None:
    await spoil(database, statement)
    result = await audit(database.url, "--json")
    assert result.exit_code == 1
    assert reported(result.stdout) == [(database.twice, kind.value, at) for kind, at in found]
    assert result.stderr == f"audit: 2 accounts checked, {len(found)} problems in 1 accounts\n"


async def test_a_problem_carries_the_key_the_reseller_and_what_each_table_says(database: Database) -> None:
    await spoil(database, "UPDATE account_balances SET balance_minor = 5 WHERE account_id = :account")
    (problem,) = map(json.loads, (await audit(database.url, "--json")).stdout.splitlines())
    async with database.engine.connect() as conn:
        reseller = await conn.scalar(
            text("SELECT reseller_id FROM account_balances WHERE account_id = :a"), {"a": database.twice}
        )
    assert problem == {
        "account_id": database.twice,
        "currency": "SGD",
        "reseller_id": reseller,
        "problem": "balance_mismatch",
        "stored_balance_minor": 5,
        "stored_version": 2,
        "ledger_sum_minor": 2 * REFUNDED,
        "ledger_last_version": 2,
        "ledger_entries": 2,
        "at_version": None,
    }


async def test_the_table_shows_each_problem_then_the_summary(database: Database) -> None:
    await spoil(database, "UPDATE account_balances SET balance_version = 7 WHERE account_id = :account")
    result = await audit(database.url)
    assert result.exit_code == 1
    header, _rule, row, summary = result.stdout.splitlines()
    assert header.split()[:4] == ["reseller_id", "account_id", "currency", "problem"]
    assert row.split()[1:3] == [database.twice, "SGD"]
    assert row.split()[3:6] == ["version_mismatch", str(2 * REFUNDED), "7"]
    assert summary == "audit: 2 accounts checked, 1 problems in 1 accounts"


async def test_an_account_only_the_ledger_knows_is_counted_and_reported(database: Database) -> None:
    stray = unique("acc")
    await spoil(
        database,
        "INSERT INTO balance_ledger (reseller_id, account_id, currency, balance_version, delta_minor,"
        " balance_minor, cause, event_id, changed_at)"
        " VALUES ('res-stray', :account, 'JPY', 1, 5, 5, 'refund', 'e', now())",
        stray,
    )
    result = await audit(database.url, "--json")
    assert result.exit_code == 1
    assert reported(result.stdout) == [(stray, ProblemKind.BALANCE_MISSING.value, None)]
    assert json.loads(result.stdout)["reseller_id"] == "res-stray"  # from the ledger: part of the key
    assert result.stderr == "audit: 3 accounts checked, 1 problems in 1 accounts\n"


async def test_the_audit_reads_in_a_transaction_that_cannot_write(database: Database) -> None:
    async with database.engine.connect() as conn:
        assert [problem async for problem in audit_ledger(conn)] == []
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await conn.execute(
                insert(account_balances).values(
                    account_id="x",
                    currency="SGD",
                    reseller_id="r",
                    balance_minor=0,
                    balance_version=0,
                    updated_at=NOW,
                )
            )


async def test_a_database_without_the_schema_is_one_line_and_exit_2(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url, prefix="refund_svc_audit") as url:
        result = await audit(url)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert (
        'relation "account_balances" does not exist (not the worker\'s database, or not migrated)'
        in result.stderr
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/refund",
            "cannot audit: the database at postgresql://postgres@127.0.0.1:1/refund is unreachable",
        ),
        (
            "postgresql://app:hunter2@127.0.0.1:port/refund",
            "cannot audit: DATABASE_URL='postgresql://app:***@127.0.0.1:port/refund'",
        ),
    ],
    ids=["refused", "bad-port"],
)
async def test_a_database_it_cannot_reach_is_one_line_without_the_password_and_exit_2(
    url: str, says: str
) -> None:
    result = await audit(url)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # typer.Exit, no traceback
    assert result.stdout == ""
    assert result.stderr.startswith(f"refund-worker: {says}")
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr


async def test_a_database_that_does_not_exist_is_one_line_and_exit_2(postgres_server_url: str) -> None:
    missing = urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{unique('nosuch')}"))
    result = await audit(missing)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "does not exist" in result.stderr
