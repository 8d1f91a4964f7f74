"""The adjustment use case's batch in PostgreSQL alone (no broker), at a fixed `now`: each rule of
contract section 8 in order, the same decisions whether a batch holds them all or one each, versions
without gaps across terminations and adjustments, balances that are the sum of their ledger, and
redeliveries and conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import migrated_engine
from tests.integration.harness import adjustment_data, unique
from tests.service.adjustment_support import (
    NOW,
    answer,
    apply,
    balance_of,
    command,
    counts,
    events_for,
    ledger_of,
    story,
    terminate,
    terminate_in,
)
from worker.adjustments.commands import AdjustmentResult, Outcome
from worker.adjustments.service import adjustment_applier
from worker.domain.adjustment_requests import Applied
from worker.engine.failures import ConcurrentWrite, FailureKind, IdempotencyConflict, classify


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_adj") as engine:
        yield engine


@pytest.mark.parametrize("batch_size", [100, 1], ids=["one batch", "one request per batch"])
async def test_every_rule_of_section_8_answers_in_order_whether_batched_or_not(
    database: AsyncEngine, batch_size: int
) -> None:
    account, reseller = unique("acc"), unique("res")
    refund_id = await terminate(database, account, reseller)
    note_id = unique("cn")
    note_refund = await terminate(
        database, account, reseller, credit_note={"credit_note_id": note_id, "amount": "120.00"}
    )
    cases = story(account, reseller, refund_id, note_refund)
    commands = [command(data, ce_id) for ce_id, data, _ in cases]
    results = []
    for start in range(0, len(commands), batch_size):
        results += await apply(database, commands[start : start + batch_size])

    assert [answer(result) for result in results] == [expected for _, _, expected in cases]
    assert await balance_of(database, account) == (4000, 9)
    assert await balance_of(database, account, "USD") == (100, 1)
    ledger = await ledger_of(database, account)
    assert [version for version, _, _ in ledger] == list(range(1, 10))
    assert [delta for _, delta, _ in ledger] == [12000, 1000, -500, 2000, 2000, -1000, -12000, -2000, 2500]
    assert all(balance == sum(d for _, d, _ in ledger[: i + 1]) for i, (_, _, balance) in enumerate(ledger))


async def test_applied_and_rejected_requests_publish_every_field_of_the_contract(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    refund_id = await terminate(database, account, reseller)
    refund_of_txn = command(
        adjustment_data(
            account,
            reseller,
            "transaction_refund",
            amount="20.00",
            transaction={"transaction_id": "txn-88412", "amount": "45.00"},
        )
    )
    reversal_of_txn = command(
        adjustment_data(account, reseller, "reversal", reverses=refund_of_txn.request.adjustment_id)
    )
    reversal_of_refund = command(adjustment_data(account, reseller, "reversal", reverses=refund_id))
    too_much = command(
        adjustment_data(
            account,
            reseller,
            "transaction_refund",
            amount="30.00",
            transaction={"transaction_id": "txn-88412", "amount": "45.00"},
        )
    )
    await apply(database, [refund_of_txn, too_much, reversal_of_txn, reversal_of_refund])

    adjusted = await events_for(database, refund_of_txn.request)
    assert set(adjusted) == {"balance-adjusted", "credits-updated"}
    assert adjusted["balance-adjusted"] == {
        "adjustment_id": refund_of_txn.request.adjustment_id,
        "kind": "transaction_refund",
        "account_id": account,
        "reseller_id": reseller,
        "currency": "SGD",
        "delta": "20.00",
        "balance": "140.00",
        "balance_version": 2,
        "transaction_id": "txn-88412",
        "reverses": None,
        "reason": "a transaction_refund for the test",
        "requested_by": "finance@reseller.example",
        "applied_at": "2021-05-03T06:20:00Z",
    }
    assert adjusted["credits-updated"] == {
        "account_id": account,
        "reseller_id": reseller,
        "currency": "SGD",
        "delta": "20.00",
        "balance": "140.00",
        "balance_version": 2,
        "cause": "transaction_refund",
        "refund_id": None,
        "updated_at": "2021-05-03T06:20:00Z",
        "adjustment_id": refund_of_txn.request.adjustment_id,
        "instruction_id": None,
    }
    (rejected,) = (await events_for(database, too_much.request)).values()
    assert rejected == {
        "request_id": too_much.request.adjustment_id,
        "account_id": account,
        "reseller_id": reseller,
        "kind": "transaction_refund",
        "reason_code": "exceeds_refundable",
        "detail": "25.00 SGD is left to refund of transaction txn-88412",
    }
    freed = (await events_for(database, reversal_of_txn.request))["balance-adjusted"]
    assert (freed["delta"], freed["transaction_id"], freed["reverses"]) == (
        "-20.00",
        "txn-88412",
        refund_of_txn.request.adjustment_id,
    )
    taken_back = await events_for(database, reversal_of_refund.request)
    assert taken_back["credits-updated"]["cause"] == "reversal"
    assert taken_back["credits-updated"]["refund_id"] == refund_id
    assert (taken_back["balance-adjusted"]["balance"], taken_back["balance-adjusted"]["balance_version"]) == (
        "0.00",
        4,
    )


async def test_versions_stay_gap_free_with_terminations_interleaved(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    for _ in range(3):
        await terminate(database, account, reseller)
        await apply(database, [command(adjustment_data(account, reseller, "correction", amount="-30.00"))])
        await apply(
            database,
            [command(adjustment_data(account, reseller, "credit", amount="1.00")) for _ in range(2)],
        )

    ledger = await ledger_of(database, account)
    assert [version for version, _, _ in ledger] == list(range(1, 13))
    balance = sum(delta for _, delta, _ in ledger)
    assert balance == 3 * (12000 - 3000 + 200)
    assert await balance_of(database, account) == (balance, 12)
    assert ledger[-1][2] == balance


async def test_a_redelivery_changes_nothing(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    batch = [
        command(adjustment_data(account, reseller, "credit", amount="5.00")),
        command(adjustment_data(account, reseller, "correction", amount="-9.00")),
    ]
    first = await apply(database, batch)
    before = await counts(database)
    again = await apply(database, [*batch, batch[0]])

    assert [answer(result) for result in first] == ["applied", "insufficient_balance"]
    assert [result.outcome for result in again] == [Outcome.DUPLICATE] * 3
    assert await counts(database) == before
    assert await balance_of(database, account) == (500, 1)


async def test_the_same_ce_id_with_another_payload_is_a_conflict_for_the_dead_letters(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    ce_id = unique("adj")
    await apply(database, [command(adjustment_data(account, reseller, "credit", amount="5.00"), ce_id)])
    seen: list[AdjustmentResult] = []
    applier = adjustment_applier(seen.extend, clock=lambda: NOW)
    reused = command(adjustment_data(account, reseller, "credit", amount="6.00"), ce_id)
    fresh = command(adjustment_data(account, reseller, "credit", amount="1.00"))
    async with database.begin() as conn:
        applied = await applier(conn, [reused, fresh])
    applied.on_commit()

    assert [(index, type(error)) for index, error in applied.conflicts] == [(0, IdempotencyConflict)]
    assert [result.outcome for result in seen] == [Outcome.CONFLICT, Outcome.APPLIED]
    assert await balance_of(database, account) == (600, 2)
    assert isinstance(seen[1].decision, Applied)


async def test_a_balance_started_by_a_concurrent_refund_makes_the_batch_retry_and_then_see_it(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    credit = command(adjustment_data(account, reseller, "credit", amount="1.00"))
    async with database.connect() as refunding:
        transaction = await refunding.begin()
        await terminate_in(refunding, account, reseller)  # its new balance row not yet committed
        adjusting = asyncio.create_task(apply(database, [credit]))
        await asyncio.sleep(0.5)  # the adjustment decided on no balance, and waits on the new row
        await transaction.commit()
        with pytest.raises(ConcurrentWrite) as raised:
            await adjusting

    assert classify(raised.value) is FailureKind.CONTENTION
    (retried,) = await apply(database, [credit])
    assert isinstance(retried.decision, Applied)
    assert await balance_of(database, account) == (12100, 2)
    assert [version for version, _, _ in await ledger_of(database, account)] == [1, 2]
