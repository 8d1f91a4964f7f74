"""balance-adjustment-requested through the real broker and database: adjustments and a termination
on one account end with the right outputs and balance; poison and conflicts are dead-lettered, a
redelivery changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from schemas.topics import Topic, dead_letter_topic
from tests.integration.harness import (
    OUTPUT_TOPIC_NAMES,
    OutputWatcher,
    Received,
    adjustment_data,
    event,
    publish,
    running_worker,
    termination_data,
    unique,
    worker_settings,
)
from tests.integration.test_terminations import assert_balance_chain, assert_is_contract_event
from worker.app import Worker
from worker.db.schema.balances import account_balances, balance_ledger
from worker.engine.outbox import derived_id

pytestmark = pytest.mark.integration

REQUESTED = Topic.BALANCE_ADJUSTMENT_REQUESTED
ANSWERS = {Topic.BALANCE_ADJUSTED.value, Topic.ADJUSTMENT_REJECTED.value}


@pytest.fixture
async def worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    async with running_worker(
        worker_settings(kafka_bootstrap, database_url, kafka_group_settings)
    ) as running:
        yield running


def answer_id(message: Received) -> str | None:
    if message.topic == Topic.BALANCE_ADJUSTED:
        return str(message.data["adjustment_id"])
    if message.topic == Topic.ADJUSTMENT_REJECTED:
        return str(message.data["request_id"])
    return None


async def answers(watcher: OutputWatcher, ce_ids: set[str]) -> dict[str, Received]:
    """Each request's one answer, balance-adjusted or adjustment-rejected."""

    def answered(received: list[Received]) -> bool:
        return ce_ids <= {answer_id(r) for r in received}

    await watcher.wait_for(answered, within=60.0, settle=0.5)
    found: dict[str, Received] = {}
    for message in watcher.received:
        if (ce_id := answer_id(message)) in ce_ids:
            assert ce_id not in found, f"two answers for {ce_id}"
            found[ce_id] = message
    return found


async def test_adjustments_and_a_termination_on_one_account_end_with_the_right_outputs_and_balance(
    worker: Worker, kafka_bootstrap: str
) -> None:
    account, reseller = unique("acc"), unique("res")
    termination_id = unique("ce")
    termination = termination_data(account_id=account, reseller_id=reseller)
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(Topic.TERMINATION_REQUESTED, termination, termination_id)])
        await watcher.answers({termination_id})
        refund_id = derived_id(reseller, termination_id, "refund")
        transaction = {"transaction_id": "txn-88412", "amount": "45.00"}
        requests = [
            (unique("adj"), adjustment_data(account, reseller, "credit", amount="10.00")),
            (
                unique("adj"),
                adjustment_data(
                    account, reseller, "transaction_refund", amount="20.00", transaction=transaction
                ),
            ),
            (
                unique("adj"),
                adjustment_data(
                    account, reseller, "transaction_refund", amount="30.00", transaction=transaction
                ),
            ),
            (unique("adj"), adjustment_data(account, reseller, "reversal", reverses=refund_id)),
            (unique("adj"), adjustment_data(account, reseller, "correction", amount="-40.00")),
        ]
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in requests])
        answered = await answers(watcher, {ce_id for ce_id, _ in requests})

    ordered = [answered[ce_id] for ce_id, _ in requests]
    for message in ordered:
        assert_is_contract_event(message)
    assert [(m.topic, m.data.get("balance"), m.data.get("reason_code")) for m in ordered] == [
        ("balance-adjusted", "130.00", None),
        ("balance-adjusted", "150.00", None),
        ("adjustment-rejected", None, "exceeds_refundable"),
        ("balance-adjusted", "30.00", None),
        ("adjustment-rejected", None, "insufficient_balance"),
    ]
    assert ordered[2].data["detail"] == "25.00 SGD is left to refund of transaction txn-88412"
    assert ordered[3].data["reverses"] == refund_id
    credits = sorted(
        (
            r.data
            for r in watcher.received
            if r.topic == Topic.CREDITS_UPDATED and r.data["account_id"] == account
        ),
        key=lambda c: c["balance_version"],
    )
    assert [(c["balance_version"], c["cause"], c["refund_id"]) for c in credits] == [
        (1, "refund", refund_id),
        (2, "credit", None),
        (3, "transaction_refund", None),
        (4, "reversal", refund_id),
    ]
    assert_balance_chain(credits)
    async with worker.engine.connect() as conn:
        balance = (
            await conn.execute(select(account_balances).where(account_balances.c.account_id == account))
        ).one()
        deltas = await conn.scalars(
            select(balance_ledger.c.delta_minor).where(balance_ledger.c.account_id == account)
        )
        assert (balance.balance_minor, balance.balance_version) == (3000, 4)
        assert sum(deltas) == 3000


async def test_poison_and_conflicts_are_dead_lettered_and_a_redelivery_changes_nothing(
    worker: Worker, kafka_bootstrap: str
) -> None:
    account, reseller = unique("acc"), unique("res")
    good, poison, after = unique("adj"), unique("adj"), unique("adj")
    credit = adjustment_data(account, reseller, "credit", amount="5.00")
    watched = (*OUTPUT_TOPIC_NAMES, dead_letter_topic(REQUESTED))
    async with OutputWatcher(kafka_bootstrap, watched) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, credit, good)])
        await answers(watcher, {good})
        await publish(
            kafka_bootstrap,
            [
                event(REQUESTED, credit, good),  # a redelivery
                event(REQUESTED, {**credit, "amount": "6.00"}, good),  # the same ce_id, another payload
                event(REQUESTED, {**credit, "amount": "1.005"}, poison),  # more digits than SGD has
                event(REQUESTED, adjustment_data(account, reseller, "credit", amount="1.00"), after),
            ],
        )
        await answers(watcher, {after})

        def dead_letters(received: list[Received]) -> list[Received]:
            return [r for r in received if r.topic.endswith("-dlt") and r.data.get("account_id") == account]

        await watcher.wait_for(lambda received: len(dead_letters(received)) >= 2, within=30.0, settle=0.5)

    letters = dead_letters(watcher.received)
    reasons = sorted(
        (letter.headers["ce_id"].decode(), letter.headers["kafka_dlt-failure-reason"].decode())
        for letter in letters
    )
    assert reasons == sorted([(good, "idempotency_conflict"), (poison, "domain_refused")])
    adjusted = [
        r for r in watcher.received if r.topic == Topic.BALANCE_ADJUSTED and r.data["account_id"] == account
    ]
    assert [(r.data["adjustment_id"], r.data["balance"], r.data["balance_version"]) for r in adjusted] == [
        (good, "5.00", 1),
        (after, "6.00", 2),
    ]
