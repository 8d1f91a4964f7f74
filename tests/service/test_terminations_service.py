"""The termination use case's batch in PostgreSQL alone (no broker), at a fixed `now`: refunds and
their events written once, redeliveries and conflicts, the "never twice" rejections, and balances
that are the sum of their ledger."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.inputs import TerminationRequested
from tests.databases import migrated_engine
from tests.integration.harness import termination_data, unique
from tests.stored_events import stored_events
from worker.db.schema.balances import account_balances, balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.refunds import credit_notes, refunds, terminations
from worker.domain.never_twice import RejectionCode
from worker.domain.policy import RefundPolicy
from worker.engine.failures import IdempotencyConflict
from worker.engine.parsing import payload_digest
from worker.engine.wire_to_domain import termination_terms
from worker.terminations.commands import CommandResult, Outcome, TerminationCommand
from worker.terminations.service import apply_termination_batch, termination_applier

NOW = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)
WRITTEN = (inbox, terminations, refunds, credit_notes, account_balances, balance_ledger)


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    """One migrated database for the module; tests keep apart by their own ids."""
    async with migrated_engine(postgres_server_url, prefix="refund_svc_term") as engine:
        yield engine


def command_for(data: dict[str, Any], request_id: str | None = None) -> TerminationCommand:
    request = TerminationRequested.model_validate(data)
    return TerminationCommand(
        request_id=request_id or unique("ce"),
        payload_sha256=payload_digest(request),
        subscription_id=request.subscription_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        requested_by=request.requested_by,
        reason=request.reason,
        terms=termination_terms(request),
    )


async def apply(engine: AsyncEngine, commands: Sequence[TerminationCommand]) -> list[CommandResult]:
    async with engine.begin() as conn:
        return await apply_termination_batch(conn, commands, policy=RefundPolicy(), now=NOW)


async def stored_rows(engine: AsyncEngine) -> dict[str, int]:
    """How many rows each table the batch writes holds, and how many events of each topic."""
    async with engine.connect() as conn:
        counts = {
            table.name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
            for table in WRITTEN
        }
        stored = stored_events.c
        topics = (await conn.execute(select(stored.topic, func.count()).group_by(stored.topic))).all()
    return counts | {f"outbox:{topic}": int(n) for topic, n in topics}


async def terminated_at(engine: AsyncEngine, subscription_id: str) -> datetime | None:
    async with engine.connect() as conn:
        stored = select(terminations.c.terminated_at).where(terminations.c.subscription_id == subscription_id)
        return await conn.scalar(stored)


async def events_of(engine: AsyncEngine, request_ids: set[str]) -> Counter[tuple[str, str]]:
    """(request_id, topic) of each stored event naming one of `request_ids`."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(stored_events.c.data["request_id"].astext, stored_events.c.topic).where(
                stored_events.c.data["request_id"].astext.in_(request_ids)
            )
        )
        return Counter((request_id, topic) for request_id, topic in rows)


async def test_a_batch_refunds_and_writes_its_events_once_and_its_redelivery_changes_nothing(
    database: AsyncEngine,
) -> None:
    batch = [command_for(termination_data()) for _ in range(3)]
    before = await stored_rows(database)

    results = await apply(database, batch)

    assert [r.outcome for r in results] == [Outcome.TERMINATED] * 3
    assert all(r.decision is not None and r.decision.refundable for r in results)
    ids = {c.request_id for c in batch}
    assert await events_of(database, ids) == Counter(
        {(c.request_id, t): 1 for c in batch for t in ("subscription-terminated", "refund-issued")}
    )
    after = await stored_rows(database)
    grown = {name: after[name] - before.get(name, 0) for name in after}
    assert {name: grown[name] for name in ("inbox", "terminations", "refunds", "credit_notes")} == {
        "inbox": 3,
        "terminations": 3,
        "refunds": 3,
        "credit_notes": 3,
    }
    assert grown["balance_ledger"] == grown["outbox:credits-updated"] == 3  # one per account credit

    again = await apply(database, batch)

    assert [r.outcome for r in again] == [Outcome.DUPLICATE] * 3
    assert await stored_rows(database) == after


async def test_a_ce_id_reused_with_another_payload_is_a_conflict_that_changes_nothing(
    database: AsyncEngine,
) -> None:
    first = command_for(termination_data())
    await apply(database, [first])
    other = command_for(
        termination_data(reason="another payload", reseller_id=first.reseller_id), request_id=first.request_id
    )
    assert other.payload_sha256 != first.payload_sha256
    before = await stored_rows(database)

    [result] = await apply(database, [other])

    assert result.outcome is Outcome.CONFLICT
    assert (result.decision, result.rejection) == (None, None)
    assert await stored_rows(database) == before


async def test_the_applier_hands_a_conflict_to_the_dead_lettering_by_its_index(database: AsyncEngine) -> None:
    first = command_for(termination_data())
    await apply(database, [first])
    fresh = command_for(termination_data())
    conflicting = replace(first, payload_sha256=b"another payload")
    decided: list[CommandResult] = []
    applier = termination_applier(RefundPolicy(), decided.extend, clock=lambda: NOW)

    async with database.begin() as conn:
        applied = await applier(conn, [fresh, conflicting])
    applied.on_commit()

    assert [(index, type(error)) for index, error in applied.conflicts] == [(1, IdempotencyConflict)]
    assert [r.outcome for r in decided] == [Outcome.TERMINATED, Outcome.CONFLICT]


async def test_the_applier_decides_at_the_time_its_clock_gives(database: AsyncEngine) -> None:
    command = command_for(termination_data())
    decided_at = datetime(2021, 4, 21, 9, 30, tzinfo=UTC)
    applier = termination_applier(RefundPolicy(), lambda results: None, clock=lambda: decided_at)

    async with database.begin() as conn:
        await applier(conn, [command])

    assert await terminated_at(database, command.subscription_id) == decided_at


async def test_a_second_request_for_a_terminated_subscription_is_rejected_as_already_terminated(
    database: AsyncEngine,
) -> None:
    subscription = unique("sub")
    who = {"subscription_id": subscription, "account_id": unique("acc"), "reseller_id": unique("res")}
    first, same_batch, later = (command_for(termination_data(**who)) for _ in range(3))

    results = await apply(database, [first, same_batch])
    [late] = await apply(database, [later])

    assert [r.outcome for r in (*results, late)] == [Outcome.TERMINATED, Outcome.REJECTED, Outcome.REJECTED]
    assert [r.rejection.code for r in (results[1], late) if r.rejection] == [
        RejectionCode.ALREADY_TERMINATED
    ] * 2
    assert await events_of(database, {first.request_id, same_batch.request_id, later.request_id}) == Counter(
        {
            (first.request_id, "subscription-terminated"): 1,
            (first.request_id, "refund-issued"): 1,
            (same_batch.request_id, "termination-rejected"): 1,
            (later.request_id, "termination-rejected"): 1,
        }
    )
    async with database.connect() as conn:
        refunded = await conn.scalar(
            select(func.count()).select_from(refunds).where(refunds.c.subscription_id == subscription)
        )
    assert refunded == 1


async def test_a_credit_note_id_used_before_is_rejected_as_credit_note_already_used(
    database: AsyncEngine,
) -> None:
    note = {"credit_note_id": unique("INV-CN"), "amount": "50.00"}
    reseller = unique("res")
    first, same_batch, later = (
        command_for(termination_data(credit_note=note, reseller_id=reseller)) for _ in range(3)
    )

    results = await apply(database, [first, same_batch])
    [late] = await apply(database, [later])

    assert [r.outcome for r in (*results, late)] == [Outcome.TERMINATED, Outcome.REJECTED, Outcome.REJECTED]
    assert [r.rejection.code for r in (results[1], late) if r.rejection] == [
        RejectionCode.CREDIT_NOTE_ALREADY_USED
    ] * 2
    async with database.connect() as conn:
        backed = await conn.scalar(
            select(func.count())
            .select_from(refunds)
            .where(refunds.c.credit_note_id == note["credit_note_id"])
        )
        rejected_terminated = await conn.scalar(
            select(func.count())
            .select_from(terminations)
            .where(terminations.c.subscription_id.in_([same_batch.subscription_id, later.subscription_id]))
        )
    assert (backed, rejected_terminated) == (1, 0)


async def test_balances_are_the_sum_of_their_ledger_with_versions_one_to_n_after_several_batches(
    database: AsyncEngine,
) -> None:
    accounts = [unique("acc"), unique("acc")]
    reseller = unique("res")
    # Different days of the cycle give different refunds; two currencies make two balances per account.
    days = ["2021-04-02", "2021-05-20", "2021-06-05", "2021-09-30"]
    batches = [
        [
            command_for(
                termination_data(
                    account_id=accounts[(b + i) % 2],
                    reseller_id=reseller,
                    currency=currency,
                    amount_paid=amount,
                    requested_at=f"{days[(b + i) % 4]}T09:00:00+08:00",
                )
            )
            for i, (currency, amount) in enumerate([("SGD", "120.00"), ("JPY", "12000"), ("SGD", "99.99")])
        ]
        for b in range(4)
    ]
    for batch in batches:
        await apply(database, batch)
    await apply(database, batches[1])  # a redelivery in between adds nothing

    async with database.connect() as conn:
        balances = {
            (row.account_id, row.currency): (row.balance_minor, row.balance_version)
            for row in await conn.execute(
                select(account_balances).where(account_balances.c.account_id.in_(accounts))
            )
        }
        ledger = (
            await conn.execute(
                select(balance_ledger)
                .where(balance_ledger.c.account_id.in_(accounts))
                .order_by(balance_ledger.c.entry_id)
            )
        ).all()

    assert set(balances) == {(a, c) for a in accounts for c in ("SGD", "JPY")}
    for key, (balance, version) in balances.items():
        entries = [e for e in ledger if (e.account_id, e.currency) == key]
        assert [e.balance_version for e in entries] == list(range(1, version + 1))
        assert balance == sum(e.delta_minor for e in entries) > 0
        running = [sum(e.delta_minor for e in entries[: n + 1]) for n in range(len(entries))]
        assert [e.balance_minor for e in entries] == running  # each row shows the balance after it
    assert sum(version for _, version in balances.values()) == 12  # one credit per request, none twice
