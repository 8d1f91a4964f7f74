"""The settlements of money refunds in PostgreSQL alone (no broker): succeeded and failed, the credits
and the payment's amount given back exactly once, the same status again, the other status and an
unknown instruction dead-lettered, redeliveries, and a settlement read while its instruction's batch
still commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import migrated_engine
from tests.integration.harness import settlement_data, unique
from tests.service.adjustment_support import balance_of
from tests.service.money_refund_support import (
    NOW,
    SETTLED,
    TIMEOUT,
    answer,
    counts,
    credit,
    events_of,
    instruct,
    instruction,
    ledger_causes,
    payment,
    refund,
    settle,
    settlement,
    settlement_of,
)
from worker.db.schema.expiry import read_progress
from worker.engine.failures import IdempotencyConflict, SettlementConflict, UnknownMoneyRefundInstruction
from worker.money_refunds.commands import SettlementAnswer
from worker.money_refunds.service import apply_money_refund_batch
from worker.money_refunds.settlement_service import settlement_applier


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_settle") as engine:
        yield engine


async def test_a_success_says_so_and_changes_nothing_else(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller)
    charged_back = refund(account, reseller, from_balance=True)
    await instruct(database, [charged_back])
    answered = settlement_of(charged_back, detail="gateway reference CB-1182")
    (result,) = await settle(database, [answered])

    assert result.answer is SettlementAnswer.SUCCEEDED
    events = await events_of(database, charged_back)
    assert events["updated/succeeded"] == {
        **events["updated/instructed"],
        "status": "succeeded",
        "detail": "gateway reference CB-1182",
        "updated_at": "2021-05-07T03:30:00Z",
    }
    assert "credited_back" not in events
    assert await balance_of(database, account) == (3000, 2)
    assert await payment(database, account, reseller) == (12000, 5000)
    stored = await instruction(database, charged_back)
    assert stored["status"] == "succeeded"
    assert stored["settled_at"] == SETTLED - timedelta(seconds=19)
    assert (stored["settlement_ce_id"], stored["settlement_detail"]) == (
        answered.ce_id,
        "gateway reference CB-1182",
    )


async def test_a_failure_frees_the_payment_and_gives_the_credits_back_exactly_once(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller)
    charged_back = refund(account, reseller, amount="50.13", from_balance=True)
    await instruct(database, [charged_back])
    failed = settlement_of(charged_back, "failed", detail="card expired")
    (result,) = await settle(database, [failed])
    before = await counts(database)
    (again,) = await settle(database, [settlement_of(charged_back, "failed")])

    assert (result.answer, again.answer) == (SettlementAnswer.FAILED, SettlementAnswer.ALREADY_SETTLED)
    after = await counts(database)
    assert {table: after[table] - before[table] for table in after if after[table] != before[table]} == {
        "inbox": 1
    }
    instruction_id = charged_back.request.instruction_id
    assert await ledger_causes(database, account) == [
        (8000, "credit", None),
        (-5013, "money_refund", instruction_id),
        (5013, "money_refund_failed", instruction_id),
    ]
    assert await balance_of(database, account) == (8000, 3)
    assert await payment(database, account, reseller) == (12000, 0)
    events = await events_of(database, charged_back)
    assert (events["updated/failed"]["status"], events["updated/failed"]["detail"]) == (
        "failed",
        "card expired",
    )
    assert events["credited_back"] == {
        "account_id": account,
        "reseller_id": reseller,
        "currency": "SGD",
        "delta": "50.13",
        "balance": "80.00",
        "balance_version": 3,
        "cause": "money_refund_failed",
        "refund_id": None,
        "adjustment_id": None,
        "instruction_id": instruction_id,
        "updated_at": "2021-05-07T03:30:00Z",
    }


async def test_exceeds_payment_counts_only_the_instructions_that_did_not_fail(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    failing, succeeding = (
        refund(account, reseller, amount="100.00"),
        refund(account, reseller, amount="50.00"),
    )
    refused_before = refund(account, reseller, amount="20.01")
    await instruct(database, [failing, refused_before])
    await settle(database, [settlement_of(failing, "failed")])
    await instruct(database, [succeeding])
    await settle(database, [settlement_of(succeeding)])
    open_one, too_much, the_rest = (
        refund(account, reseller, amount="30.00"),
        refund(account, reseller, amount="40.01"),
        refund(account, reseller, amount="40.00"),
    )
    results = await instruct(database, [open_one, too_much, the_rest])

    assert answer((await instruct(database, [refused_before]))[0]) == "duplicate"
    assert [answer(result) for result in results] == ["instructed", "exceeds_payment", "instructed"]
    assert await payment(database, account, reseller) == (12000, 12000)


async def test_without_a_detail_the_update_says_what_happened(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller)
    charged_back = refund(account, reseller, amount="20.00", from_balance=True)
    await instruct(database, [charged_back])
    await settle(database, [settlement_of(charged_back, "failed", detail=None)])

    detail = (await events_of(database, charged_back))["updated/failed"]["detail"]
    assert detail == "20.00 SGD not returned through payment pay-1; 20.00 SGD back to the credits"


async def test_the_other_status_and_an_unknown_instruction_are_dead_letters_that_change_nothing(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    charged_back = refund(account, reseller)
    await instruct(database, [charged_back])
    r = charged_back.request
    commands = [
        settlement_of(charged_back),
        settlement_of(charged_back, "failed"),  # settled succeeded just before, in the same batch
        settlement(settlement_data("ins-nobody", account, reseller)),
        settlement(settlement_data(r.instruction_id, unique("acc"), reseller)),  # another account's
        settlement(settlement_data(r.instruction_id, account, unique("res"))),  # another reseller's
    ]
    answers: list[SettlementAnswer] = []
    apply = settlement_applier(lambda results: answers.extend(result.answer for result in results))
    async with database.begin() as conn:
        applied = await apply(conn, commands)
    applied.on_commit()

    assert answers == [
        SettlementAnswer.SUCCEEDED,
        SettlementAnswer.CONFLICTING_STATUS,
        *[SettlementAnswer.UNKNOWN_INSTRUCTION] * 3,
    ]
    poison = dict(applied.conflicts)
    assert sorted(poison) == [1, 2, 3, 4]
    assert isinstance(poison[1], SettlementConflict)
    assert str(poison[1]) == f"instruction {r.instruction_id} already succeeded, now said to have failed"
    assert all(isinstance(poison[index], UnknownMoneyRefundInstruction) for index in (2, 3, 4))
    assert str(poison[2]) == f"account {account} has no money refund instruction ins-nobody"
    assert (await instruction(database, charged_back))["status"] == "succeeded"
    assert await payment(database, account, reseller) == (12000, 5000)


async def test_a_redelivered_settlement_changes_nothing_and_a_reused_ce_id_is_a_conflict(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    charged_back = refund(account, reseller)
    await instruct(database, [charged_back])
    answered = settlement_of(charged_back)
    await settle(database, [answered])
    before = await counts(database)
    reused = settlement(
        settlement_data(charged_back.request.instruction_id, account, reseller, detail="other"),
        answered.ce_id,
    )
    apply = settlement_applier(lambda _: None)
    async with database.begin() as conn:
        applied = await apply(conn, [answered, reused])

    ((index, poison),) = applied.conflicts
    assert index == 1
    assert isinstance(poison, IdempotencyConflict)
    assert await counts(database) == before


async def test_a_settlement_read_while_its_instruction_commits_waits_and_settles_it(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    charged_back = refund(account, reseller)
    async with database.connect() as instructing:
        transaction = await instructing.begin()
        await apply_money_refund_batch(instructing, [charged_back], now=NOW, settle_within=TIMEOUT)
        settling = asyncio.create_task(settle(database, [settlement_of(charged_back)]))
        await asyncio.sleep(0.5)  # the settlement waits on the account's lock
        assert not settling.done()
        await transaction.commit()
        (result,) = await settling

    assert result.answer is SettlementAnswer.SUCCEEDED


async def test_a_settlement_batch_records_how_far_it_read_each_partition_in_event_time(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    partition = 7  # no other test of this module's database reads partitions
    charged_back = refund(account, reseller)
    await instruct(database, [charged_back])
    r = charged_back.request
    early = settlement(settlement_data(r.instruction_id, account, reseller), partition=partition)
    future = settlement(
        settlement_data("ins-nobody", account, reseller, settled_at="2031-01-01T00:00:00Z"),
        partition=partition + 1,
    )
    await settle(database, [early, future])

    p = read_progress.c
    async with database.connect() as conn:
        rows = dict(
            (
                await conn.execute(
                    select(p.kafka_partition, p.read_through).where(
                        p.topic == "payment-refund-settled", p.kafka_partition.in_([partition, partition + 1])
                    )
                )
            ).all()
        )
    assert rows == {partition: SETTLED - timedelta(seconds=19), partition + 1: SETTLED}
