"""Money back through the payment service (contract section 9), through the real broker and database,
with the simulated payment service answering: a charge back that succeeds, one taken from the credits
that fails and gives them back, one never answered that stays instructed, a settlement sent again
that changes nothing, and a settlement for an unknown instruction dead-lettered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from schemas.topics import Topic, dead_letter_topic
from tests.integration.dead_letter_support import RecordWatcher
from tests.integration.harness import (
    OutputWatcher,
    Received,
    adjustment_data,
    event,
    money_refund_data,
    publish,
    running_worker,
    settlement_data,
    unique,
    worker_settings,
)
from tests.integration.test_terminations import assert_is_contract_event
from worker.app import Worker
from worker.db.schema.balances import account_balances
from worker.db.schema.inbox import inbox
from worker.db.schema.money_refunds import money_refund_instructions
from worker.entrypoints.payment_service.service import PaymentSimulator
from worker.money_refunds.commands import instruction_id

pytestmark = pytest.mark.integration

UPDATED = Topic.MONEY_REFUND_UPDATED.value
CREDITS = Topic.CREDITS_UPDATED.value
SETTLED_DLT = dead_letter_topic(Topic.PAYMENT_REFUND_SETTLED)


@pytest.fixture(scope="module")
async def worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    """A worker of a group of its own, and the payment simulator answering it."""
    settings = worker_settings(
        kafka_bootstrap, database_url, kafka_group_settings, consumer_group=unique("refund-worker-money")
    )
    async with (
        running_worker(settings) as running,
        PaymentSimulator(
            kafka_bootstrap, group_id=unique("payment-simulator"), consumer_options=kafka_group_settings
        ),
    ):
        yield running


def updates_of(received: list[Received], instruction: str) -> list[str]:
    return [
        r.data["status"] for r in received if r.topic == UPDATED and r.data["instruction_id"] == instruction
    ]


async def stored_status(worker: Worker, reseller: str, instruction: str) -> Any:
    i = money_refund_instructions.c
    async with worker.engine.connect() as conn:
        return (
            await conn.execute(
                select(i.status, i.settlement_ce_id).where(
                    i.reseller_id == reseller, i.instruction_id == instruction
                )
            )
        ).one()


async def test_a_success_a_failure_that_gives_the_credits_back_and_one_never_answered(
    worker: Worker, kafka_bootstrap: str
) -> None:
    account, reseller = unique("acc"), unique("res")
    credit_id = unique("adj")
    requests = {
        "succeeds": money_refund_data(account, reseller, amount="30.00"),
        "fails": money_refund_data(account, reseller, amount="10.13", from_balance=True),
        "silent": money_refund_data(account, reseller, amount="15.99"),
    }
    ce_ids = {name: unique("mr") for name in requests}
    instructions = {name: instruction_id(reseller, ce_id) for name, ce_id in ce_ids.items()}
    async with OutputWatcher(kafka_bootstrap) as watcher:
        credit = adjustment_data(account, reseller, "credit", amount="80.00")
        await publish(kafka_bootstrap, [event(Topic.BALANCE_ADJUSTMENT_REQUESTED, credit, credit_id)])
        await watcher.wait_for(lambda got: any(r.data.get("adjustment_id") == credit_id for r in got))
        await publish(
            kafka_bootstrap,
            [event(Topic.MONEY_REFUND_REQUESTED, requests[name], ce_ids[name]) for name in requests],
        )
        await watcher.wait_for(
            lambda got: (
                updates_of(got, instructions["succeeds"]) == ["instructed", "succeeded"]
                and updates_of(got, instructions["fails"]) == ["instructed", "failed"]
                and updates_of(got, instructions["silent"]) == ["instructed"]
                and any(r.data.get("cause") == "money_refund_failed" for r in got if r.topic == CREDITS)
            ),
            within=60.0,
            settle=2.0,
        )
    received = watcher.received
    assert updates_of(received, instructions["silent"]) == ["instructed"]
    instructed = [r for r in received if r.topic == Topic.PAYMENT_REFUND_INSTRUCTED.value]
    assert {r.data["instruction_id"] for r in instructed} >= set(instructions.values())
    for message in received:
        if message.data.get("instruction_id") in instructions.values():
            assert_is_contract_event(message)
            assert message.key == account
    changes = [
        (r.data["cause"], r.data["delta"], r.data["balance"], r.data["balance_version"])
        for r in received
        if r.topic == CREDITS and r.data.get("instruction_id") == instructions["fails"]
    ]
    assert changes == [("money_refund", "-10.13", "69.87", 2), ("money_refund_failed", "10.13", "80.00", 3)]
    (failed,) = [
        r
        for r in received
        if r.topic == UPDATED
        and r.data["instruction_id"] == instructions["fails"]
        and r.data["status"] == "failed"
    ]
    assert (failed.data["detail"], failed.data["from_balance"]) == ("card expired", True)
    assert (await stored_status(worker, reseller, instructions["silent"])).status == "instructed"
    b = account_balances.c
    async with worker.engine.connect() as conn:
        balance = (
            await conn.execute(select(b.balance_minor, b.balance_version).where(b.account_id == account))
        ).one()
    assert tuple(balance) == (8000, 3)


async def test_a_settlement_again_changes_nothing_and_one_for_an_unknown_instruction_is_dead_lettered(
    worker: Worker, kafka_bootstrap: str
) -> None:
    account, reseller = unique("acc"), unique("res")
    ce_id = unique("mr")
    instruction = instruction_id(reseller, ce_id)
    again_id, unknown_id = unique("st"), unique("st")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(
            kafka_bootstrap,
            [event(Topic.MONEY_REFUND_REQUESTED, money_refund_data(account, reseller), ce_id)],
        )
        await watcher.wait_for(
            lambda got: updates_of(got, instruction) == ["instructed", "succeeded"], within=60.0
        )
        async with RecordWatcher(kafka_bootstrap, [SETTLED_DLT]) as dead_letters:
            again = settlement_data(instruction, account, reseller, "succeeded", detail="sent twice")
            unknown = settlement_data("ins-nobody", account, reseller, "failed")
            await publish(
                kafka_bootstrap,
                [
                    event(Topic.PAYMENT_REFUND_SETTLED, again, again_id),
                    event(Topic.PAYMENT_REFUND_SETTLED, unknown, unknown_id),
                ],
            )
            letters = await dead_letters.wait_for(
                lambda got: any(r.header("ce_id") == unknown_id.encode() for r in got), within=30.0
            )
        await watcher.wait_for(lambda got: True, within=1.0, settle=1.5)  # whatever else came meanwhile

    (letter,) = [r for r in letters if r.header("ce_id") == unknown_id.encode()]
    assert letter.header("kafka_dlt-failure-reason") == b"unknown_instruction"
    assert b"ins-nobody" in letter.header("kafka_dlt-exception-message")
    assert updates_of(watcher.received, instruction) == ["instructed", "succeeded"]
    status, settled_by = await stored_status(worker, reseller, instruction)
    assert status == "succeeded"
    assert settled_by != again_id  # the simulator's settlement settled it; the second changed nothing
    async with worker.engine.connect() as conn:
        outcome = await conn.scalar(
            select(inbox.c.outcome).where(
                inbox.c.reseller_id == reseller,
                inbox.c.topic == Topic.PAYMENT_REFUND_SETTLED.value,
                inbox.c.ce_id == again_id,
            )
        )
    assert outcome == "already_settled"
