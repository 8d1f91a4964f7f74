"""The money refund use case's request batch in PostgreSQL alone (no broker), at a fixed `now`: each
rule of contract section 9 in order, the same decisions whether a batch holds them all or one each,
the debit of the credits, what a payment's instructions took, redeliveries and conflicts, and two
batches of one account at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import migrated_engine
from tests.integration.harness import money_refund_data, unique
from tests.service.adjustment_support import balance_of, ledger_of
from tests.service.money_refund_support import (
    NOW,
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
    request,
)
from worker.engine.failures import IdempotencyConflict
from worker.money_refunds.commands import RequestOutcome, instruction_id
from worker.money_refunds.service import money_refund_applier


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_money") as engine:
        yield engine


def story(account: str, reseller: str) -> list[tuple[dict[str, Any], str]]:
    """(data, expected answer) of every rule of section 9, in an order where each request sees what
    the ones before it instructed, and where each refusal would also break a later rule (so the
    order of the rules decides). The account has 80.00 SGD of credits; pay-1 is 120.00 SGD."""

    def ask(amount: str, **fields: Any) -> dict[str, Any]:
        return money_refund_data(account, reseller, amount=amount, **fields)

    outsider = {"id": "intruder@other.example", "reseller_id": "res-other", "permissions": ["*"]}
    powerless = {"id": "clerk@reseller.example", "reseller_id": reseller, "permissions": ["billing:read"]}
    usd = {"payment_id": "pay-1", "amount": "120.00", "currency": "USD"}
    restated = {"payment_id": "pay-1", "amount": "130.00", "currency": "SGD"}
    corporate = {"account_type": "corporate", "method": "cancel_payment"}
    other_payment = {"payment_id": "pay-2", "amount": "20.00", "currency": "SGD"}
    return [
        (ask("0.00", actor=outsider), "forbidden"),
        (ask("0.00", actor=powerless), "forbidden"),
        (ask("0.00", method="cancel_payment"), "invalid_amount"),  # not above zero, before the method
        (ask("500.00", method="cancel_payment"), "method_not_allowed"),  # before exceeds_payment
        (ask("500.00", account_type="corporate"), "method_not_allowed"),
        (ask("120.01", from_balance=True), "exceeds_payment"),  # before insufficient_balance
        (ask("80.01", from_balance=True), "insufficient_balance"),
        (ask("50.00", from_balance=True), "instructed"),  # credits 30.00, 70.00 left of pay-1
        (ask("40.00"), "instructed"),  # 30.00 left
        (ask("30.01"), "exceeds_payment"),
        (ask("1.00", payment=restated), "invalid_amount"),  # the amount first stated stays
        (ask("1.00", payment=usd), "currency_mismatch"),
        (ask("20.00", payment=other_payment, from_balance=True, **corporate), "instructed"),  # credits 10.00
        (ask("30.00", from_balance=True), "insufficient_balance"),
        (ask("10.00", from_balance=True), "instructed"),  # credits 0.00, 20.00 left of pay-1
    ]


@pytest.mark.parametrize("batch_size", [100, 1], ids=["one batch", "one request per batch"])
async def test_every_rule_of_section_9_answers_in_order_whether_batched_or_not(
    database: AsyncEngine, batch_size: int
) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller, "80.00")
    cases = story(account, reseller)
    commands = [request(data) for data, _ in cases]
    results = []
    for start in range(0, len(commands), batch_size):
        results += await instruct(database, commands[start : start + batch_size])

    assert [answer(result) for result in results] == [expected for _, expected in cases]
    assert await balance_of(database, account) == (0, 4)
    assert [delta for _, delta, _ in await ledger_of(database, account)] == [8000, -5000, -2000, -1000]
    assert await payment(database, account, reseller) == (12000, 10000)
    assert await payment(database, account, reseller, "pay-2") == (2000, 2000)


async def test_an_instruction_publishes_every_field_and_takes_the_credits_at_once(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller, "80.00")
    taken = refund(account, reseller, from_balance=True)
    (result,) = await instruct(database, [taken])
    assert result.outcome is RequestOutcome.INSTRUCTED
    request_id, instruction_of = taken.request.request_id, taken.request.instruction_id
    assert instruction_of == instruction_id(reseller, request_id)

    events = await events_of(database, taken)
    assert set(events) == {"instructed", "updated/instructed", "debited"}
    assert events["instructed"] == {
        "instruction_id": instruction_of,
        "request_id": request_id,
        "payment_id": "pay-1",
        "method": "charge_back",
        "amount": "50.00",
        "currency": "SGD",
        "account_id": account,
        "reseller_id": reseller,
    }
    assert events["updated/instructed"] == {
        "instruction_id": instruction_of,
        "request_id": request_id,
        "payment_id": "pay-1",
        "method": "charge_back",
        "account_id": account,
        "reseller_id": reseller,
        "amount": "50.00",
        "currency": "SGD",
        "from_balance": True,
        "status": "instructed",
        "detail": "charge_back of 50.00 SGD from payment pay-1, taken from the credits: balance is 30.00 SGD",
        "updated_at": "2021-05-06T02:00:00Z",
    }
    assert events["debited"] == {
        "account_id": account,
        "reseller_id": reseller,
        "currency": "SGD",
        "delta": "-50.00",
        "balance": "30.00",
        "balance_version": 2,
        "cause": "money_refund",
        "refund_id": None,
        "adjustment_id": None,
        "instruction_id": instruction_of,
        "updated_at": "2021-05-06T02:00:00Z",
    }
    stored = await instruction(database, taken)
    assert (stored["status"], stored["amount_minor"], stored["debited_minor"]) == ("instructed", 5000, 5000)
    assert (stored["instructed_at"], stored["due_at"]) == (NOW, NOW + timedelta(hours=72))
    assert stored["overdue_reported_at"] is None
    assert stored["settled_at"] is None
    assert await ledger_causes(database, account) == [
        (8000, "credit", None),
        (-5000, "money_refund", instruction_of),
    ]


async def test_a_refund_not_taken_from_the_credits_leaves_them_alone(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller, "10.00")
    returned = refund(account, reseller, amount="50.00")
    (result,) = await instruct(database, [returned])

    assert result.outcome is RequestOutcome.INSTRUCTED
    assert set(await events_of(database, returned)) == {"instructed", "updated/instructed"}
    assert await balance_of(database, account) == (1000, 1)
    assert (await events_of(database, returned))["updated/instructed"]["from_balance"] is False


async def test_a_refusal_publishes_adjustment_rejected_of_kind_money_refund_and_changes_nothing(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller, "80.00")
    before = await counts(database)
    short = refund(account, reseller, amount="80.01", from_balance=True)
    (result,) = await instruct(database, [short])

    assert answer(result) == "insufficient_balance"
    assert await events_of(database, short) == {
        "rejected": {
            "request_id": short.request.request_id,
            "account_id": account,
            "reseller_id": reseller,
            "kind": "money_refund",
            "reason_code": "insufficient_balance",
            "detail": "balance is 80.00 SGD; 80.01 SGD is not covered",
        }
    }
    after = await counts(database)
    assert {table: after[table] - before[table] for table in after} == {
        "inbox": 1,
        "money_refund_instructions": 0,
        "money_refund_payments": 0,
        "balance_ledger": 0,
        "outbox_events": 1,
    }


async def test_a_redelivery_changes_nothing_and_a_reused_ce_id_is_a_conflict(database: AsyncEngine) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller, "80.00")
    first = refund(account, reseller, from_balance=True)
    ce_id = first.request.request_id
    other = request(money_refund_data(account, reseller, amount="10.00"), ce_id)
    (instructed, copy_in_batch) = await instruct(database, [first, first])
    before = await counts(database)
    (redelivered, reused) = await instruct(database, [first, other])

    assert (instructed.outcome, copy_in_batch.outcome) == (
        RequestOutcome.INSTRUCTED,
        RequestOutcome.DUPLICATE,
    )
    assert (redelivered.outcome, reused.outcome) == (RequestOutcome.DUPLICATE, RequestOutcome.CONFLICT)
    assert await counts(database) == before
    assert await balance_of(database, account) == (3000, 2)
    assert await payment(database, account, reseller) == (12000, 5000)


async def test_the_applier_dead_letters_a_reused_ce_id_and_counts_every_decision(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    first = refund(account, reseller)
    other = request(money_refund_data(account, reseller, amount="10.00"), first.request.request_id)
    seen: list[str] = []
    apply = money_refund_applier(TIMEOUT, lambda results: seen.extend(r.outcome.value for r in results))
    async with database.begin() as conn:
        applied = await apply(conn, [first, other])
    applied.on_commit()

    ((index, poison),) = applied.conflicts
    assert index == 1
    assert isinstance(poison, IdempotencyConflict)
    assert seen == ["instructed", "conflict"]


async def test_two_resellers_refund_the_same_account_and_payment_ids_apart(database: AsyncEngine) -> None:
    account, ce_id = unique("acc"), unique("mr")
    resellers = [unique("res"), unique("res")]
    commands = [
        request(money_refund_data(account, reseller, amount="120.00"), ce_id) for reseller in resellers
    ]
    results = await instruct(database, commands)

    assert [result.outcome for result in results] == [RequestOutcome.INSTRUCTED] * 2
    assert commands[0].request.instruction_id != commands[1].request.instruction_id
    for reseller in resellers:
        assert await payment(database, account, reseller) == (12000, 12000)


async def test_two_batches_of_one_account_at_once_never_return_more_than_the_payment(
    database: AsyncEngine,
) -> None:
    account, reseller = unique("acc"), unique("res")
    await credit(database, account, reseller, "100.00")
    batches = [
        [refund(account, reseller, amount="70.00", from_balance=True, reason=f"batch {n}")] for n in range(2)
    ]
    first, second = await asyncio.gather(*(instruct(database, batch) for batch in batches))

    assert sorted(answer(result) for result in [*first, *second]) == ["exceeds_payment", "instructed"]
    assert await payment(database, account, reseller) == (12000, 7000)
    assert await balance_of(database, account) == (3000, 2)
    assert [version for version, _, _ in await ledger_of(database, account)] == [1, 2]
