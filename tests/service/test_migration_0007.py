"""Migration 0007 (tenancy) carries the rows a release before it wrote over to keys by reseller first,
and its downgrade refuses to merge two resellers' rows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import empty_engine, migrate

# What a release at 0006 wrote: reseller res-a terminated sub-1 (request req-1) with a refund to
# acc-1's balance; reseller res-b has a timer for sub-2 (expiry exp-1, set aside) and its renewal ren-1.
BEFORE_0007 = """
INSERT INTO terminations (subscription_id, account_id, reseller_id, cause, request_id, terminated_at)
    VALUES ('sub-1', 'acc-1', 'res-a', 'customer_request', 'req-1', now());
INSERT INTO credit_notes (credit_note_id, reseller_id, number, issued_by_worker, refund_id, currency,
    amount_minor, issued_at) VALUES ('cn-1', 'res-a', 1, true, 'ref-1', 'SGD', 100, now());
INSERT INTO refunds (refund_id, request_id, subscription_id, account_id, reseller_id, currency,
    amount_minor, policy_amount_minor, method, rule, months_refunded, cycle_months, credit_note_id,
    issued_at) VALUES ('ref-1', 'req-1', 'sub-1', 'acc-1', 'res-a', 'SGD', 100, 100, 'account_credit',
    'unused_months', 1, 12, 'cn-1', now());
INSERT INTO account_balances (account_id, currency, reseller_id, balance_minor, balance_version, updated_at)
    VALUES ('acc-1', 'SGD', 'res-a', 100, 1, now());
INSERT INTO balance_ledger (account_id, currency, balance_version, delta_minor, balance_minor, cause,
    refund_id, event_id, changed_at) VALUES ('acc-1', 'SGD', 1, 100, 100, 'refund', 'ref-1', 'ev-1', now());
INSERT INTO expiry_timers (subscription_id, account_id, reseller_id, expired_at, due_at, state, expiry_ce_id)
    VALUES ('sub-2', 'acc-2', 'res-b', now(), now(), 'pending', 'exp-1');
INSERT INTO subscription_renewals (subscription_id, renewed_at, account_id, reseller_id, ce_id)
    VALUES ('sub-2', now(), 'acc-2', 'res-b', 'ren-1');
INSERT INTO expiry_timer_failures (subscription_id, expiry_ce_id, error, failed_at)
    VALUES ('sub-2', 'exp-1', 'ValueError: x', now());
INSERT INTO inbox (topic, ce_id, payload_sha256, outcome) VALUES
    ('termination-requested', 'req-1', '\\x00', 'terminated'),
    ('subscription-expired', 'exp-1', '\\x00', 'armed'),
    ('subscription-renewed', 'ren-1', '\\x00', 'cancelled');
"""


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with empty_engine(postgres_server_url, "refund_svc_m07") as engine:
        yield engine


def _primary_keys(connection: Connection) -> dict[str, list[str]]:
    inspector = inspect(connection)
    tables = [
        *("inbox", "terminations", "refunds", "credit_notes", "account_balances", "expiry_timers"),
        *("subscription_renewals", "expiry_timer_failures"),
    ]
    return {table: inspector.get_pk_constraint(table)["constrained_columns"] for table in tables}


async def test_0007_keeps_every_row_and_keys_it_by_its_reseller(empty_database: AsyncEngine) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(migrate, "0006")
        for statement in BEFORE_0007.split(";\n"):
            if statement.strip():
                await conn.execute(text(statement))
        await conn.run_sync(migrate, "0007")
    async with empty_database.connect() as conn:
        inbox: dict[str, str] = dict(
            (await conn.execute(text("SELECT ce_id, reseller_id FROM inbox"))).tuples().all()
        )
        ledger = await conn.scalar(text("SELECT reseller_id FROM balance_ledger"))
        failed = await conn.scalar(text("SELECT reseller_id FROM expiry_timer_failures"))
        counts = [
            await conn.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("terminations", "refunds", "credit_notes", "account_balances", "expiry_timers")
        ]
        keys = await conn.run_sync(_primary_keys)
    assert inbox == {"req-1": "res-a", "exp-1": "res-b", "ren-1": "res-b"}
    assert (ledger, failed) == ("res-a", "res-b")
    assert counts == [1, 1, 1, 1, 1]
    assert all(columns[0] == "reseller_id" for columns in keys.values()), keys


async def test_after_0007_two_resellers_share_ids_and_the_downgrade_refuses_to_merge_them(
    empty_database: AsyncEngine,
) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(migrate, "0007")
        for reseller in ("res-a", "res-b"):
            await conn.execute(
                text(
                    "INSERT INTO terminations (subscription_id, account_id, reseller_id, cause, request_id,"
                    " terminated_at) VALUES ('sub-1', 'acc-1', :reseller, 'customer_request', 'req-1', now())"
                ),
                {"reseller": reseller},
            )
    with pytest.raises(Exception, match="more than one reseller"):
        async with empty_database.begin() as conn:
            await conn.run_sync(migrate, "0006", down=True)
