"""termination-requested through the real broker and database: every rule, and never twice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from schemas.dataschema import schema_id
from schemas.events import OUTPUT_MODELS
from schemas.topics import TOPICS, Topic, dead_letter_topic
from tests.integration.harness import (
    OUTPUT_TOPIC_NAMES,
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
from worker.app import Worker
from worker.db.schema.balances import account_balances, balance_ledger
from worker.db.schema.refunds import credit_notes

pytestmark = pytest.mark.integration

REQUESTED = Topic.TERMINATION_REQUESTED


@pytest.fixture
async def worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    async with running_worker(
        worker_settings(kafka_bootstrap, database_url, kafka_group_settings)
    ) as running:
        yield running


def by_topic(received: list[Received], request_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for message in received:
        if message.data.get("request_id") == request_id:
            assert message.topic not in found, f"two {message.topic} events for {request_id}"
            found[message.topic] = message.data
    return found


def assert_is_contract_event(message: Received) -> None:
    """Every output: valid data for its topic, binary-mode CloudEvents headers, the contract's key."""
    spec = TOPICS[Topic(message.topic)]
    OUTPUT_MODELS[spec.topic].model_validate(message.data)
    assert message.headers["ce_specversion"] == b"1.0"
    assert message.headers["ce_type"].decode() == spec.ce_type
    assert message.headers["content-type"] == b"application/json"
    assert message.headers["ce_source"]
    assert message.headers["ce_time"]
    assert message.headers["ce_dataschema"].decode() == schema_id(spec.topic)
    assert message.key == message.data[spec.key_field]


def assert_balance_chain(credits: list[dict[str, Any]]) -> None:
    """Each change's balance is the previous balance plus its delta."""
    previous = Decimal(0)
    for change in credits:
        assert Decimal(change["balance"]) == previous + Decimal(change["delta"]), credits
        previous = Decimal(change["balance"])


CASES: list[tuple[str, dict[str, Any], str, str | None, str | None, int]] = [
    # (name, fields, refund_amount, rule, no_refund_reason, months_refunded)
    (
        "full_within_window",
        {"requested_at": "2021-04-12T10:00:00+08:00"},
        "120.00",
        "full_within_window",
        None,
        12,
    ),
    (
        "day_15_keeps_april",
        {"requested_at": "2021-04-16T10:00:00+08:00"},
        "110.00",
        "unused_months",
        None,
        11,
    ),
    ("refund_disabled", {"allow_refund": False}, "0.00", None, "refund_disabled", 0),
    ("trial", {"is_trial": True}, "0.00", None, "nothing_paid", 0),
    ("nothing_paid", {"amount_paid": "0.00"}, "0.00", None, "nothing_paid", 0),
    ("outside_cycle", {"requested_at": "2022-04-01T10:00:00+08:00"}, "0.00", None, "outside_cycle", 0),
    (
        "monthly_past_window",
        {"cycle_months": 1, "amount_paid": "30.00", "requested_at": "2021-04-20T10:00:00+08:00"},
        "0.00",
        None,
        "no_unused_months",
        0,
    ),
    (
        "jpy_rounds_down",
        {"currency": "JPY", "amount_paid": "1000", "requested_at": "2021-05-20T10:00:00+09:00"},
        "833",
        "unused_months",
        None,
        10,
    ),
]


async def test_decides_every_rule_and_publishes_contract_events(worker: Worker, kafka_bootstrap: str) -> None:
    requests = {name: (unique(name), termination_data(**fields)) for name, fields, *_ in CASES}
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in requests.values()])
        received = await watcher.answers({ce_id for ce_id, _ in requests.values()})

    for message in received:
        assert_is_contract_event(message)
    for name, _, amount, rule, reason, months in CASES:
        ce_id, data = requests[name]
        events = by_topic(received, ce_id)
        terminated = events[Topic.SUBSCRIPTION_TERMINATED]
        assert (terminated["refund_amount"], terminated["rule"], terminated["no_refund_reason"]) == (
            amount,
            rule,
            reason,
        ), name
        assert terminated["cause"] == "customer_request"
        assert terminated["subscription_id"] == data["subscription_id"]
        if rule is None:
            assert Topic.REFUND_ISSUED not in events, name
            continue
        refund = events[Topic.REFUND_ISSUED]
        assert (refund["amount"], refund["months_refunded"], refund["method"]) == (
            amount,
            months,
            "account_credit",
        )
        assert refund["credit_note"]["number"] >= 1
        assert refund["credit_note"]["display_number"] == (
            f"CN-{data['reseller_id']}-{refund['credit_note']['number']:06d}"
        )
        assert refund["credit_note"]["reason"] == data["reason"]
        assert refund["credit_note"]["amounts_include_tax"] is True


async def test_credits_the_account_and_numbers_credit_notes_without_gaps(
    worker: Worker, kafka_bootstrap: str
) -> None:
    account, reseller = unique("acc"), unique("res")
    requests = [
        (unique("ce"), termination_data(account_id=account, reseller_id=reseller, requested_at=asked))
        for asked in ("2021-04-02T09:00:00+08:00", "2021-04-20T09:00:00+08:00", "2021-06-05T09:00:00+08:00")
    ]
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in requests])
        await watcher.answers({ce_id for ce_id, _ in requests})
        refunds = {r.data["refund_id"] for r in watcher.received if r.topic == Topic.REFUND_ISSUED}
        credits = [r.data for r in watcher.received if r.topic == Topic.CREDITS_UPDATED]

    credits = sorted((c for c in credits if c["refund_id"] in refunds), key=lambda c: c["balance_version"])
    # The three requests are on different partitions, so their order is not fixed; the chain is.
    assert [c["balance_version"] for c in credits] == [1, 2, 3]
    assert sorted(c["delta"] for c in credits) == ["110.00", "120.00", "90.00"]
    assert_balance_chain(credits)
    assert credits[-1]["balance"] == "320.00"
    async with worker.engine.connect() as conn:
        numbers = await conn.scalars(
            select(credit_notes.c.number).where(credit_notes.c.reseller_id == reseller).order_by("number")
        )
        assert list(numbers) == [1, 2, 3]
        balance = (
            await conn.execute(select(account_balances).where(account_balances.c.account_id == account))
        ).one()
        assert (balance.balance_minor, balance.balance_version) == (32000, 3)
        ledger = (
            await conn.execute(
                select(
                    balance_ledger.c.balance_version,
                    balance_ledger.c.delta_minor,
                    balance_ledger.c.balance_minor,
                )
                .where(balance_ledger.c.account_id == account)
                .order_by(balance_ledger.c.balance_version)
            )
        ).all()
        assert [version for version, _, _ in ledger] == [1, 2, 3]
        running = 0
        for _, delta, balance_after in ledger:
            running += delta
            assert balance_after == running
        assert running == 32000


async def test_redelivered_request_changes_nothing(worker: Worker, kafka_bootstrap: str) -> None:
    ce_id, data = unique("ce"), termination_data()
    watched = (*OUTPUT_TOPIC_NAMES, dead_letter_topic(REQUESTED))
    async with OutputWatcher(kafka_bootstrap, watched) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id)])
        await watcher.answers({ce_id})
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id)])  # same ce_id, same payload
        follow_up = unique("ce")
        await publish(
            kafka_bootstrap,
            [event(REQUESTED, termination_data(subscription_id=data["subscription_id"]), follow_up)],
        )
        await watcher.answers({follow_up})  # same key, so same partition: after the redelivery

    topics = sorted(r.topic for r in watcher.about({ce_id}))
    assert topics == ["refund-issued", "subscription-terminated"]
    # Only ours: the shared test group may still be working off other tests' poison messages.
    ours = [
        r for r in watcher.received if r.topic.endswith("-dlt") and r.headers.get("ce_id") == ce_id.encode()
    ]
    assert ours == []


async def test_second_request_for_terminated_subscription_is_rejected(
    worker: Worker, kafka_bootstrap: str
) -> None:
    first, again = unique("ce"), unique("ce")
    data = termination_data()
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, first), event(REQUESTED, data, again)])
        received = await watcher.answers({first, again})

    rejected = by_topic(received, again)
    assert list(rejected) == [Topic.TERMINATION_REJECTED]
    assert rejected[Topic.TERMINATION_REJECTED]["reason_code"] == "already_terminated"
    assert len([r for r in received if r.topic == Topic.REFUND_ISSUED]) == 1


async def test_chosen_credit_note_is_the_refund_and_leaves_credits_alone(
    worker: Worker, kafka_bootstrap: str
) -> None:
    ce_id, note_id = unique("ce"), unique("INV-CN")
    data = termination_data(
        requested_at="2021-06-10T10:00:00+08:00", credit_note={"credit_note_id": note_id, "amount": "95.00"}
    )
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id)])
        received = await watcher.answers({ce_id})
        await watcher.wait_for(lambda _: True, settle=0.5)

    refund = by_topic(received, ce_id)[Topic.REFUND_ISSUED]
    assert (refund["amount"], refund["method"], refund["rule"], refund["policy_amount"]) == (
        "95.00",
        "credit_note",
        "credit_note",
        "90.00",
    )
    assert refund["credit_note"] == {
        "credit_note_id": note_id,
        "number": None,
        "amount": "95.00",
        "issued_at": None,
        "display_number": None,
        "reason": None,
        "amounts_include_tax": None,
    }
    credited = [
        r for r in watcher.received if r.topic == Topic.CREDITS_UPDATED and r.key == data["account_id"]
    ]
    assert credited == []


async def test_credit_note_backs_one_refund_only(worker: Worker, kafka_bootstrap: str) -> None:
    note = {"credit_note_id": unique("INV-CN"), "amount": "50.00"}
    first, second = unique("ce"), unique("ce")
    reseller = unique("res")  # a note id is the reseller's own: another reseller may use the same one
    twice = [termination_data(credit_note=note, reseller_id=reseller) for _ in range(2)]
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, twice[0], first)])
        await watcher.answers({first})
        await publish(kafka_bootstrap, [event(REQUESTED, twice[1], second)])
        received = await watcher.answers({second})

    rejected = by_topic(received, second)
    assert list(rejected) == [Topic.TERMINATION_REJECTED]
    assert rejected[Topic.TERMINATION_REJECTED]["reason_code"] == "credit_note_already_used"


@pytest.mark.parametrize("amount", ["0.00", "120.01"])
async def test_credit_note_not_above_zero_or_above_paid_is_rejected(
    worker: Worker, kafka_bootstrap: str, amount: str
) -> None:
    ce_id = unique("ce")
    data = termination_data(credit_note={"credit_note_id": unique("INV-CN"), "amount": amount})
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id)])
        received = await watcher.answers({ce_id})

    events = by_topic(received, ce_id)
    assert list(events) == [Topic.TERMINATION_REJECTED]
    assert events[Topic.TERMINATION_REJECTED]["reason_code"] == "credit_note_invalid"


async def test_accepts_structured_mode_cloudevents(worker: Worker, kafka_bootstrap: str) -> None:
    ce_id, data = unique("ce"), termination_data()
    envelope = {
        "specversion": "1.0",
        "id": ce_id,
        "source": "/tests/portal",
        "type": TOPICS[REQUESTED].ce_type,
        "time": "2021-04-12T02:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    structured = Raw(
        REQUESTED.value,
        data["subscription_id"].encode(),
        json.dumps(envelope).encode(),
        [("content-type", b"application/cloudevents+json; charset=utf-8")],
    )
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [structured])
        received = await watcher.answers({ce_id})

    assert by_topic(received, ce_id)[Topic.SUBSCRIPTION_TERMINATED]["refund_amount"] == "120.00"


async def test_two_workers_crediting_one_account_from_many_partitions_lose_nothing(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> None:
    account, reseller = unique("acc"), unique("res")
    requests = [
        (unique("ce"), termination_data(account_id=account, reseller_id=reseller)) for _ in range(400)
    ]
    settings = worker_settings(
        kafka_bootstrap,
        database_url,
        kafka_group_settings,
        consumer_group=unique("two-workers"),
        batch_max_records=20,
    )
    async with (
        running_worker(settings) as first,
        running_worker(settings),
    ):
        async with OutputWatcher(kafka_bootstrap) as watcher:
            await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in requests])
            await watcher.answers({ce_id for ce_id, _ in requests}, within=120)
        async with first.engine.connect() as conn:
            balance = (
                await conn.execute(select(account_balances).where(account_balances.c.account_id == account))
            ).one()
            versions = list(
                await conn.scalars(
                    select(balance_ledger.c.balance_version)
                    .where(balance_ledger.c.account_id == account)
                    .order_by(balance_ledger.c.balance_version)
                )
            )
            numbers = list(
                await conn.scalars(
                    select(credit_notes.c.number)
                    .where(credit_notes.c.reseller_id == reseller)
                    .order_by("number")
                )
            )

    assert (balance.balance_minor, balance.balance_version) == (400 * 12000, 400)
    assert versions == list(range(1, 401))
    assert numbers == list(range(1, 401))
