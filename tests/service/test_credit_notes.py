"""The worker's own credit notes in PostgreSQL alone (no broker): numbered per reseller in the
order the requests were read, shown as invoice apps show them, and migration 0006's backfill."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Executable, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.inputs import TerminationRequested
from tests.databases import fresh_database
from tests.integration.harness import termination_data, unique
from tests.stored_events import stored_events
from worker.db.migrate import alembic_config, upgrade_to_head
from worker.db.schema.refunds import credit_notes, refunds, terminations
from worker.domain.policy import RefundPolicy
from worker.engine.parsing import payload_digest
from worker.engine.runtime import create_engine
from worker.engine.wire_to_domain import termination_terms
from worker.terminations.commands import TerminationCommand
from worker.terminations.service import apply_termination_batch

NOW = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of this test alone, with no schema yet."""
    async with fresh_database(postgres_server_url) as url:
        engine = create_engine(url, pool_size=1)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def database(empty_database: AsyncEngine) -> AsyncEngine:
    await upgrade_to_head(empty_database)
    return empty_database


def command_for(data: dict[str, Any]) -> TerminationCommand:
    request = TerminationRequested.model_validate(data)
    return TerminationCommand(
        request_id=unique("ce"),
        payload_sha256=payload_digest(request),
        subscription_id=request.subscription_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        requested_by=request.requested_by,
        reason=request.reason,
        terms=termination_terms(request),
    )


async def apply(engine: AsyncEngine, commands: list[TerminationCommand]) -> dict[str, dict[str, Any]]:
    """Apply one batch; request_id -> its refund-issued credit note (only requests with a refund)."""
    async with engine.begin() as conn:
        await apply_termination_batch(conn, commands, policy=RefundPolicy(), now=NOW)
        rows = await conn.execute(
            select(stored_events.c.data).where(stored_events.c.topic == "refund-issued")
        )
    return {data["request_id"]: data["credit_note"] for (data,) in rows}


async def test_one_resellers_batch_is_numbered_in_the_order_the_requests_were_read(
    database: AsyncEngine,
) -> None:
    reseller = unique("res")
    # Amounts and subscription ids deliberately out of order: numbers follow neither, only reading.
    asked = ["2021-06-05", "2021-04-02", "2021-05-20", "2021-04-16", "2021-07-01", "2021-04-03"]
    batch = [
        command_for(
            termination_data(
                reseller_id=reseller, subscription_id=f"sub-{9 - i}", requested_at=f"{day}T09:00:00+08:00"
            )
        )
        for i, day in enumerate(asked)
    ]
    notes = await apply(database, batch)
    assert [notes[c.request_id]["number"] for c in batch] == [1, 2, 3, 4, 5, 6]
    assert [notes[c.request_id]["display_number"] for c in batch] == [
        f"CN-{reseller}-00000{n}" for n in range(1, 7)
    ]

    later = [command_for(termination_data(reseller_id=reseller)) for _ in range(2)]
    notes = await apply(database, later)
    assert [notes[c.request_id]["number"] for c in later] == [7, 8]


async def test_interleaved_resellers_each_count_in_read_order_and_skip_no_number(
    database: AsyncEngine,
) -> None:
    first, second = unique("res"), unique("res")
    chosen = {"credit_note_id": unique("INV-CN"), "amount": "50.00"}
    batch = [
        command_for(termination_data(reseller_id=first)),
        command_for(termination_data(reseller_id=second)),
        command_for(termination_data(reseller_id=first, credit_note=chosen)),  # the invoice app's note
        command_for(termination_data(reseller_id=first, allow_refund=False)),  # no refund, no note
        command_for(termination_data(reseller_id=second)),
        command_for(termination_data(reseller_id=first)),
    ]
    notes = await apply(database, batch)
    assert [notes.get(c.request_id, {}).get("display_number") for c in batch] == [
        f"CN-{first}-000001",
        f"CN-{second}-000001",
        None,
        None,
        f"CN-{second}-000002",
        f"CN-{first}-000002",
    ]


async def test_own_note_carries_reason_and_tax_and_the_operators_note_neither(database: AsyncEngine) -> None:
    own = command_for(termination_data(reason="moving to another provider"))
    chosen = command_for(
        termination_data(credit_note={"credit_note_id": unique("INV-CN"), "amount": "95.00"})
    )
    notes = await apply(database, [own, chosen])

    assert notes[own.request_id]["reason"] == "moving to another provider"
    assert notes[own.request_id]["amounts_include_tax"] is True
    assert {key: notes[chosen.request_id][key] for key in ("number", "display_number", "reason")} == {
        "number": None,
        "display_number": None,
        "reason": None,
    }
    assert notes[chosen.request_id]["amounts_include_tax"] is None
    async with database.connect() as conn:
        stored = {
            row.credit_note_id: row
            for row in await conn.execute(
                select(credit_notes).where(
                    credit_notes.c.credit_note_id.in_([n["credit_note_id"] for n in notes.values()])
                )
            )
        }
    mine = stored[notes[own.request_id]["credit_note_id"]]
    assert (mine.display_number, mine.reason, mine.amounts_include_tax) == (
        notes[own.request_id]["display_number"],
        "moving to another provider",
        True,
    )
    theirs = stored[notes[chosen.request_id]["credit_note_id"]]
    assert (theirs.display_number, theirs.reason, theirs.amounts_include_tax) == (None, None, None)


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_migration_0006_describes_the_notes_issued_before_it(empty_database: AsyncEngine) -> None:
    async with empty_database.begin() as conn:
        await conn.run_sync(_upgrade_to, "0003")
    own, chosen = (
        command_for(termination_data(reason="too expensive")),
        command_for(termination_data(credit_note={"credit_note_id": unique("INV-CN"), "amount": "95.00"})),
    )
    async with empty_database.begin() as conn:
        # What a release before 0006 wrote: the rows without the three new columns.
        for statement in _rows_before_0006(own, chosen):
            await conn.execute(statement)
        await conn.run_sync(_upgrade_to, "0006")
    async with empty_database.connect() as conn:
        rows = {
            row.credit_note_id: (row.display_number, row.reason, row.amounts_include_tax)
            for row in await conn.execute(select(credit_notes))
        }
    assert rows == {"cn-own": ("CN-res-1-000042", "too expensive", True), "INV-1": (None, None, None)}


def _rows_before_0006(own: TerminationCommand, chosen: TerminationCommand) -> list[Executable]:
    """Rows as a release before 0006 wrote them: none of the three new columns is named."""
    statements: list[Executable] = []
    for refund_id, cmd, note, number in (("ref-own", own, "cn-own", 42), ("ref-op", chosen, "INV-1", None)):
        who = {"account_id": "acc", "reseller_id": "res-1"}
        statements += [
            insert(terminations).values(
                subscription_id=cmd.subscription_id,
                cause="customer_request",
                request_id=cmd.request_id,
                terminated_at=NOW,
                reason=cmd.reason,
                **who,
            ),
            insert(credit_notes).values(
                credit_note_id=note,
                reseller_id="res-1",
                number=number,
                issued_by_worker=number is not None,
                refund_id=refund_id,
                currency="SGD",
                amount_minor=9000,
                issued_at=NOW,
            ),
            insert(refunds).values(
                refund_id=refund_id,
                request_id=cmd.request_id,
                subscription_id=cmd.subscription_id,
                currency="SGD",
                amount_minor=9000,
                policy_amount_minor=9000,
                method="account_credit" if number else "credit_note",
                rule="unused_months" if number else "credit_note",
                months_refunded=9,
                cycle_months=12,
                credit_note_id=note,
                issued_at=NOW,
                **who,
            ),
        ]
    return statements
