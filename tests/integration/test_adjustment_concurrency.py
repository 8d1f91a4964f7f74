"""Adjustments and terminations for the same accounts, from several partitions, under two workers.

An account's adjustments are keyed by the account, so they arrive in order on one partition; its
terminations are keyed by subscription and arrive on others, interleaved with them in any order.
The commands are chosen so that every order gives the same outcome (credits, corrections down within
the credits published before them, transaction refunds within the charge, a reversal after its
target), so the balances to expect are known exactly: whatever the partitions and the two workers
do, each account ends at that balance, its ledger sums to it and its versions run 1..n with no gap.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from schemas.topics import Topic
from tests.integration.audit import assert_nothing_dead_lettered, expected_refund
from tests.integration.harness import (
    OutputWatcher,
    Raw,
    Received,
    event,
    publish,
    running_worker,
    termination_data,
    unique,
    worker_settings,
)
from worker.db.schema.balances import account_balances, balance_ledger
from worker.engine.runtime import create_engine

pytestmark = pytest.mark.slow

ACCOUNTS = 30
TERMINATIONS_PER_ACCOUNT = 3
CURRENCY = "SGD"


@dataclass
class Account:
    account_id: str
    reseller_id: str
    balance: Decimal = Decimal("0.00")
    effects: int = 0
    messages: list[Raw] = field(default_factory=list)
    adjustment_ids: set[str] = field(default_factory=set)
    termination_ids: set[str] = field(default_factory=set)


def _adjustment(account: Account, kind: str, amount: str | None, **fields: Any) -> Raw:
    data = {
        "account_id": account.account_id,
        "reseller_id": account.reseller_id,
        "currency": CURRENCY,
        "kind": kind,
        "amount": amount,
        "reason": f"{kind} from the concurrency test",
        "requested_at": "2021-04-12T10:00:00+08:00",
        "actor": {"id": "finance@reseller.example", "reseller_id": account.reseller_id, "permissions": ["*"]},
        **fields,
    }
    message = event(Topic.BALANCE_ADJUSTMENT_REQUESTED, data, ce_id=unique("adj"))
    account.adjustment_ids.add(_ce_id(message))
    account.effects += 1
    account.balance += Decimal(amount) if amount is not None else Decimal(0)
    return message


def _ce_id(message: Raw) -> str:
    return next(value for name, value in message.headers if name == "ce_id" and value).decode()


def _commands(account: Account) -> list[Raw]:
    """Seven adjustments in the account's order and three terminations to interleave with them."""
    charge = {"transaction_id": unique("txn"), "amount": "50.00", "description": "March invoice"}
    credit = _adjustment(account, "credit", "40.00")
    adjustments = [
        credit,
        _adjustment(account, "correction", "15.50"),
        _adjustment(account, "correction", "-25.25"),  # covered by the 55.50 published before it
        _adjustment(account, "transaction_refund", "30.00", transaction=charge),
        _adjustment(account, "transaction_refund", "20.00", transaction=charge),  # exactly what is left
        _adjustment(account, "credit", "9.99"),
    ]
    adjustments.append(_adjustment(account, "reversal", None, reverses=_ce_id(credit)))
    account.balance -= Decimal("40.00")  # the reversal takes the credit back
    terminations = []
    for _ in range(TERMINATIONS_PER_ACCOUNT):
        data = termination_data(account_id=account.account_id, reseller_id=account.reseller_id)
        message = event(Topic.TERMINATION_REQUESTED, data)
        terminations.append(message)
        account.termination_ids.add(_ce_id(message))
        account.effects += 1
        account.balance += expected_refund(data)
    # One publish order that mixes the kinds; an account's adjustments keep their order.
    return [m for pair in zip(adjustments, [*terminations, *[None] * 4], strict=True) for m in pair if m]


def _answered(received: list[Received]) -> set[str]:
    return {answered for message in received if (answered := _answer_id(message)) is not None}


def _rejected(received: list[Received], ids: set[str]) -> list[dict[str, Any]]:
    refusals = (Topic.ADJUSTMENT_REJECTED, Topic.TERMINATION_REJECTED)
    return [m.data for m in received if m.topic in refusals and m.data.get("request_id") in ids]


async def _ledgers(database_url: str, accounts: list[Account]) -> dict[str, tuple[Any, list[Any]]]:
    engine = create_engine(database_url)
    found: dict[str, tuple[Any, list[Any]]] = {}
    try:
        async with engine.connect() as conn:
            for account in accounts:
                key = (account_balances.c.account_id == account.account_id) & (
                    account_balances.c.reseller_id == account.reseller_id
                )
                balance = (await conn.execute(select(account_balances).where(key))).one()
                entries = (
                    await conn.execute(
                        select(balance_ledger.c.balance_version, balance_ledger.c.delta_minor)
                        .where(balance_ledger.c.account_id == account.account_id)
                        .order_by(balance_ledger.c.balance_version)
                    )
                ).all()
                found[account.account_id] = (balance, list(entries))
    finally:
        await engine.dispose()
    return found


async def test_two_workers_keep_balances_and_versions_exact_across_partitions(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> None:
    reseller = unique("res")
    accounts = [Account(unique("acc"), reseller) for _ in range(ACCOUNTS)]
    messages = [message for account in accounts for message in _commands(account)]
    ids = {ce_id for a in accounts for ce_id in a.adjustment_ids | a.termination_ids}
    assert len(messages) == len(ids) >= 300
    # A group of its own: the two members leaving must not hold up the next test's rejoin of the shared one.
    group = unique("refund-worker-concurrency")
    settings = worker_settings(
        kafka_bootstrap, database_url, kafka_group_settings, batch_max_records=50, consumer_group=group
    )

    async with OutputWatcher(kafka_bootstrap) as watcher, running_worker(settings), running_worker(settings):
        await publish(kafka_bootstrap, messages)
        received = await watcher.wait_for(
            lambda got: ids <= _answered(got) or _rejected(got, ids), within=180
        )

    assert _rejected(received, ids) == [], "an order-independent command was refused"
    answer_ce_ids: dict[str, set[str]] = defaultdict(set)  # at least once on the wire, one ce_id each
    for message in received:
        if (answered_id := _answer_id(message)) in ids:
            answer_ce_ids[answered_id].add(message.ce_id)
    assert {len(found) for found in answer_ce_ids.values()} == {1}, "an effect published under two ce_ids"
    assert set(answer_ce_ids) == ids
    assert_nothing_dead_lettered(received, ids)
    account_ids = {account.account_id for account in accounts}
    versions_published: dict[str, set[int]] = defaultdict(set)
    for message in received:
        if message.topic == Topic.CREDITS_UPDATED and message.data["account_id"] in account_ids:
            versions_published[message.data["account_id"]].add(message.data["balance_version"])
    ledgers = await _ledgers(database_url, accounts)
    for account in accounts:
        balance, entries = ledgers[account.account_id]
        expected_minor = int(account.balance * 100)
        assert balance.balance_minor == expected_minor, f"{account.account_id} ended at a wrong balance"
        assert sum(delta for _, delta in entries) == balance.balance_minor, "balance and ledger disagree"
        assert [version for version, _ in entries] == list(range(1, account.effects + 1)), "a version gap"
        assert balance.balance_version == account.effects
        assert versions_published[account.account_id] == set(range(1, account.effects + 1))


def _answer_id(message: Received) -> str | None:
    if message.topic == Topic.BALANCE_ADJUSTED:
        return str(message.data["adjustment_id"])
    if message.topic == Topic.SUBSCRIPTION_TERMINATED:
        return str(message.data["request_id"])
    return None
