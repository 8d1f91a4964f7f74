"""Contract section 7 through the real broker and database: two resellers sharing account,
subscription, credit-note and ce_ids never see, change or cause a rejection of each other's data,
and within one reseller a subscription belongs to one account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from schemas.topics import OUTPUT_TOPICS, Topic, dead_letter_topic
from tests.integration.harness import (
    OutputWatcher,
    Received,
    event,
    publish,
    running_worker,
    termination_data,
    unique,
    worker_settings,
)
from worker.app import Worker
from worker.db.schema.expiry import expiry_timers
from worker.db.schema.inbox import inbox
from worker.domain.grace_period import CancelledBy, TimerState
from worker.domain.never_twice import RejectionCode
from worker.domain.policy import NoRefundReason, RefundMethod
from worker.expiry.plan import expiry_event_id

pytestmark = pytest.mark.integration

GRACE_SECONDS = 3.0
REQUESTED, EXPIRED, RENEWED = (
    Topic.TERMINATION_REQUESTED,
    Topic.SUBSCRIPTION_EXPIRED,
    Topic.SUBSCRIPTION_RENEWED,
)
TERMINATED, REJECTED = Topic.SUBSCRIPTION_TERMINATED, Topic.TERMINATION_REJECTED
REFUND, CREDITS = Topic.REFUND_ISSUED, Topic.CREDITS_UPDATED
WATCHED = (*(t.value for t in OUTPUT_TOPICS), dead_letter_topic(EXPIRED), dead_letter_topic(RENEWED))
Who = dict[str, str]


@pytest.fixture(scope="module")
async def worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    """One worker for the module, with a grace period of a few seconds (as in test_expiry.py)."""
    settings = worker_settings(
        kafka_bootstrap,
        database_url,
        kafka_group_settings,
        expiry_grace_days=GRACE_SECONDS / 86400,
        expiry_check_seconds=0.5,
    )
    async with running_worker(settings) as running:
        yield running


def two_resellers(**shared: str) -> tuple[Who, Who]:
    """Two resellers' identities sharing the given ids."""
    a, b = (
        {"reseller_id": unique("res"), "account_id": unique("acc"), "subscription_id": unique("sub")} | shared
        for _ in range(2)
    )
    return a, b


def one_of(received: list[Received], topic: Topic, reseller_id: str, request_id: str) -> dict[str, Any]:
    """The one event on `topic` answering this reseller's request."""
    found = [
        r.data
        for r in received
        if r.topic == topic
        and r.data.get("request_id") == request_id
        and r.data["reseller_id"] == reseller_id
    ]
    assert len(found) == 1, (topic, reseller_id, request_id, [(r.topic, r.data) for r in received])
    return found[0]


def rejection_of(received: list[Received], request_id: str) -> dict[str, Any]:
    [found] = [r.data for r in received if r.topic == REJECTED and r.data["request_id"] == request_id]
    return found


def terminated_about(subscription_id: str) -> Callable[[list[Received]], list[Received]]:
    def found(received: list[Received]) -> list[Received]:
        return [r for r in received if r.topic == TERMINATED and r.data["subscription_id"] == subscription_id]

    return found


async def answered(watcher: OutputWatcher, requests: set[tuple[str, str]], within: float = 30.0) -> None:
    """Until each (reseller_id, request ce_id) is terminated or, as the rejection names no reseller,
    its ce_id rejected; then a little more, to catch extras."""

    def done(received: list[Received]) -> bool:
        terminated = {
            (r.data["reseller_id"], r.data["request_id"]) for r in received if r.topic == TERMINATED
        }
        rejected = {r.data["request_id"] for r in received if r.topic == REJECTED}
        return all(key in terminated or key[1] in rejected for key in requests)

    await watcher.wait_for(done, within, settle=0.5)


async def timer_state(worker: Worker, who: Who) -> tuple[str, str | None] | None:
    async with worker.engine.connect() as conn:
        row = (
            await conn.execute(
                select(expiry_timers.c.state, expiry_timers.c.cancelled_by).where(
                    expiry_timers.c.reseller_id == who["reseller_id"],
                    expiry_timers.c.subscription_id == who["subscription_id"],
                )
            )
        ).one_or_none()
    return None if row is None else (row.state, row.cancelled_by)


async def wait_for_timer(
    worker: Worker, who: Who, state: tuple[str, str | None], within: float = 20.0
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (found := await timer_state(worker, who)) != state:
        assert asyncio.get_running_loop().time() < deadline, f"timer of {who}: {found}"
        await asyncio.sleep(0.05)


async def test_a_subscription_another_reseller_terminated_is_terminated_and_refunded_normally(
    worker: Worker, kafka_bootstrap: str
) -> None:
    a, b = two_resellers(subscription_id=unique("sub"))
    first, again, theirs = unique("ce"), unique("ce"), unique("ce")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(**a), first)])
        await answered(watcher, {(a["reseller_id"], first)})
        await publish(
            kafka_bootstrap,
            [event(REQUESTED, termination_data(**a), again), event(REQUESTED, termination_data(**b), theirs)],
        )
        await answered(watcher, {(a["reseller_id"], again), (b["reseller_id"], theirs)})

    assert rejection_of(watcher.received, again)["reason_code"] == RejectionCode.ALREADY_TERMINATED
    assert [r for r in watcher.received if r.topic == REJECTED and r.data["request_id"] == theirs] == []
    terminated = one_of(watcher.received, TERMINATED, b["reseller_id"], theirs)
    assert (terminated["subscription_id"], terminated["refund_amount"]) == (b["subscription_id"], "120.00")
    refund = one_of(watcher.received, REFUND, b["reseller_id"], theirs)
    assert (refund["amount"], refund["method"]) == ("120.00", RefundMethod.ACCOUNT_CREDIT)


async def test_a_refund_credits_its_own_resellers_balance_of_a_shared_account_id(
    worker: Worker, kafka_bootstrap: str
) -> None:
    a, b = two_resellers(account_id=unique("acc"))
    a_requests = [
        (unique("ce"), termination_data(**(a | {"subscription_id": unique("sub")}))) for _ in range(2)
    ]
    b_request = unique("ce")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in a_requests])
        await answered(watcher, {(a["reseller_id"], ce_id) for ce_id, _ in a_requests})
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(**b), b_request)])
        await answered(watcher, {(b["reseller_id"], b_request)})

    credits = [r.data for r in watcher.received if r.topic == CREDITS and r.key == a["account_id"]]
    a_last = max(
        (c for c in credits if c["reseller_id"] == a["reseller_id"]), key=lambda c: c["balance_version"]
    )
    assert (a_last["balance"], a_last["balance_version"]) == ("240.00", 2)
    [b_credit] = [c for c in credits if c["reseller_id"] == b["reseller_id"]]
    refund = one_of(watcher.received, REFUND, b["reseller_id"], b_request)
    assert (b_credit["delta"], b_credit["balance"], b_credit["balance_version"]) == ("120.00", "120.00", 1)
    assert b_credit["refund_id"] == refund["refund_id"]


async def test_a_credit_note_id_used_by_one_reseller_is_free_for_another(
    worker: Worker, kafka_bootstrap: str
) -> None:
    note = {"credit_note_id": unique("INV-CN"), "amount": "50.00"}
    a, b = two_resellers()
    ours, theirs = unique("ce"), unique("ce")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(credit_note=note, **a), ours)])
        await answered(watcher, {(a["reseller_id"], ours)})
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(credit_note=note, **b), theirs)])
        await answered(watcher, {(b["reseller_id"], theirs)})

    assert [
        r for r in watcher.received if r.topic == REJECTED and r.data["request_id"] in {ours, theirs}
    ] == []
    for who, ce_id in ((a, ours), (b, theirs)):
        refund = one_of(watcher.received, REFUND, who["reseller_id"], ce_id)
        assert (refund["method"], refund["amount"]) == (RefundMethod.CREDIT_NOTE, "50.00")
        assert refund["credit_note"]["credit_note_id"] == note["credit_note_id"]


async def test_credit_note_numbers_count_per_reseller(worker: Worker, kafka_bootstrap: str) -> None:
    a, b = two_resellers()
    a_requests = [
        (unique("ce"), termination_data(**(a | {"subscription_id": unique("sub")}))) for _ in range(2)
    ]
    b_request = unique("ce")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, data, ce_id) for ce_id, data in a_requests])
        await answered(watcher, {(a["reseller_id"], ce_id) for ce_id, _ in a_requests})
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(**b), b_request)])
        await answered(watcher, {(b["reseller_id"], b_request)})

    a_numbers = sorted(
        one_of(watcher.received, REFUND, a["reseller_id"], ce_id)["credit_note"]["number"]
        for ce_id, _ in a_requests
    )
    assert a_numbers == [1, 2]
    b_note = one_of(watcher.received, REFUND, b["reseller_id"], b_request)["credit_note"]
    assert (b_note["number"], b_note["display_number"]) == (1, f"CN-{b['reseller_id']}-000001")


async def test_a_renewal_cancels_only_its_own_resellers_expiry_of_a_shared_subscription_id(
    worker: Worker, kafka_bootstrap: str
) -> None:
    a, b = two_resellers(subscription_id=unique("sub"), account_id=unique("acc"))
    expired_at = datetime.now(UTC)
    find = terminated_about(a["subscription_id"])
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(
            kafka_bootstrap,
            [event(EXPIRED, {**who, "expired_at": expired_at.isoformat()}) for who in (a, b)],
        )
        for who in (a, b):
            await wait_for_timer(worker, who, (TimerState.PENDING, None))
        renewed_at = expired_at + timedelta(seconds=1)
        await publish(kafka_bootstrap, [event(RENEWED, {**a, "renewed_at": renewed_at.isoformat()})])
        await wait_for_timer(worker, a, (TimerState.CANCELLED, CancelledBy.RENEWAL))
        await watcher.wait_for(lambda received: bool(find(received)), within=GRACE_SECONDS + 10.0)
        await asyncio.sleep(max((expired_at - datetime.now(UTC)).total_seconds() + GRACE_SECONDS + 1.5, 0.0))
        await watcher.wait_for(lambda _: True, settle=0.5)

    [message] = find(watcher.received)
    assert message.data["reseller_id"] == b["reseller_id"]
    assert (message.data["cause"], message.data["no_refund_reason"]) == ("expired", NoRefundReason.EXPIRED)
    assert message.ce_id == expiry_event_id(b["reseller_id"], b["subscription_id"], expired_at)
    assert datetime.fromisoformat(message.data["terminated_at"]) >= expired_at + timedelta(
        seconds=GRACE_SECONDS
    )
    assert await timer_state(worker, a) == (TimerState.CANCELLED, CancelledBy.RENEWAL)
    assert await timer_state(worker, b) == (TimerState.FIRED, None)


async def test_the_same_ce_id_from_two_resellers_is_two_requests_with_different_output_ids(
    worker: Worker, kafka_bootstrap: str
) -> None:
    ce_id = unique("ce")
    a, b = two_resellers()
    async with OutputWatcher(kafka_bootstrap, (*WATCHED, dead_letter_topic(REQUESTED))) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(**who), ce_id) for who in (a, b)])
        await answered(watcher, {(a["reseller_id"], ce_id), (b["reseller_id"], ce_id)})

    assert [
        r for r in watcher.received if r.topic.endswith("-dlt") and r.headers.get("ce_id") == ce_id.encode()
    ] == []
    assert [r for r in watcher.received if r.topic == REJECTED and r.data["request_id"] == ce_id] == []
    answers = {
        who["reseller_id"]: [
            r for r in watcher.about({ce_id}) if r.data.get("reseller_id") == who["reseller_id"]
        ]
        for who in (a, b)
    }
    for who in (a, b):
        assert sorted(r.topic for r in answers[who["reseller_id"]]) == [REFUND, TERMINATED], who
        terminated = one_of(watcher.received, TERMINATED, who["reseller_id"], ce_id)
        assert terminated["subscription_id"] == who["subscription_id"]
    a_ids = {r.ce_id for r in answers[a["reseller_id"]]}
    b_ids = {r.ce_id for r in answers[b["reseller_id"]]}
    assert len(a_ids) == len(b_ids) == 2
    assert a_ids.isdisjoint(b_ids)
    refunds = [one_of(watcher.received, REFUND, who["reseller_id"], ce_id)["refund_id"] for who in (a, b)]
    assert refunds[0] != refunds[1]


async def test_a_termination_of_a_known_subscription_under_another_account_is_rejected_first(
    worker: Worker, kafka_bootstrap: str
) -> None:
    who = {"reseller_id": unique("res"), "account_id": unique("acc"), "subscription_id": unique("sub")}
    first, wrong = unique("ce"), unique("ce")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(**who), first)])
        await answered(watcher, {(who["reseller_id"], first)})
        other = who | {"account_id": unique("acc")}
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(**other), wrong)])
        await answered(watcher, {(who["reseller_id"], wrong)})

    # Already terminated too, yet the mismatch is the rule that answers.
    rejected = rejection_of(watcher.received, wrong)
    assert (rejected["reason_code"], rejected["account_id"]) == (
        RejectionCode.ACCOUNT_MISMATCH,
        other["account_id"],
    )
    assert [r.topic for r in watcher.about({wrong})] == [REJECTED]


async def test_an_expiry_or_renewal_of_a_known_subscription_under_another_account_is_dead_lettered(
    worker: Worker, kafka_bootstrap: str
) -> None:
    who = {"reseller_id": unique("res"), "account_id": unique("acc"), "subscription_id": unique("sub")}
    request, expiry, renewal = unique("ce"), unique("ce"), unique("ce")
    other = who | {"account_id": unique("acc")}
    at = datetime.now(UTC)
    letters = {dead_letter_topic(EXPIRED): expiry, dead_letter_topic(RENEWED): renewal}

    def both_dead_lettered(received: list[Received]) -> bool:
        return all(any(r.topic == t and r.ce_id == ce for r in received) for t, ce in letters.items())

    async with OutputWatcher(kafka_bootstrap, WATCHED) as watcher:
        await publish(kafka_bootstrap, [event(REQUESTED, termination_data(**who), request)])
        await answered(watcher, {(who["reseller_id"], request)})
        await publish(
            kafka_bootstrap,
            [
                event(EXPIRED, {**other, "expired_at": (at - timedelta(days=40)).isoformat()}, expiry),
                event(RENEWED, {**other, "renewed_at": at.isoformat()}, renewal),
            ],
        )
        await watcher.wait_for(both_dead_lettered, within=30.0, settle=0.5)

    for topic, ce_id in letters.items():
        [letter] = [r for r in watcher.received if r.topic == topic and r.ce_id == ce_id]
        assert letter.headers["kafka_dlt-failure-reason"] == b"account_mismatch"
        assert letter.data["account_id"] == other["account_id"]
    assert len(terminated_about(who["subscription_id"])(watcher.received)) == 1
    async with worker.engine.connect() as conn:
        stored = await conn.scalars(
            select(inbox.c.ce_id).where(
                inbox.c.reseller_id == who["reseller_id"], inbox.c.ce_id.in_([expiry, renewal])
            )
        )
        assert list(stored) == []
    assert await timer_state(worker, other) is None
