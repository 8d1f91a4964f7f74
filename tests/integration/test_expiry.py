"""Expiry through the real broker and database, with a grace period of a few seconds (contract §3)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from schemas.topics import Topic, dead_letter_topic
from tests.integration.harness import (
    OUTPUT_TOPIC_NAMES,
    OutputWatcher,
    Received,
    event,
    publish,
    running_worker,
    termination_data,
    unique,
    worker_settings,
)
from tests.stored_events import stored_events
from worker.app import Worker
from worker.config.settings import Settings
from worker.db.migrate import upgrade_to_head
from worker.db.schema.expiry import expiry_timers
from worker.db.schema.inbox import inbox
from worker.db.schema.refunds import terminations
from worker.domain.grace_period import GracePeriod
from worker.engine.runtime import create_engine
from worker.expiry.commands import ExpiryCommand
from worker.expiry.firing import FIRING_LOCK_KEY, fire_due_timers
from worker.expiry.plan import expiry_event_id
from worker.expiry.read_progress import CaughtUp
from worker.expiry.service import apply_expiry_batch

pytestmark = pytest.mark.integration

GRACE_SECONDS = 3.0
LATE_TOLERANCE_SECONDS = 2.5
"""How long after its deadline an expiry's subscription-terminated may reach a consumer."""

EXPIRED = Topic.SUBSCRIPTION_EXPIRED
RENEWED = Topic.SUBSCRIPTION_RENEWED
TERMINATED = Topic.SUBSCRIPTION_TERMINATED.value


def expiry_settings(kafka_bootstrap: str, database_url: str, group: dict[str, int], **more: Any) -> Settings:
    return worker_settings(
        kafka_bootstrap,
        database_url,
        group,
        expiry_grace_days=GRACE_SECONDS / 86400,
        expiry_check_seconds=0.5,
        **more,
    )


@pytest.fixture
def settings(kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]) -> Settings:
    return expiry_settings(kafka_bootstrap, database_url, kafka_group_settings)


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    async with running_worker(settings) as running:
        yield running


def now() -> datetime:
    return datetime.now(UTC)


def all_read(at: datetime) -> CaughtUp:
    """What the broker would say of a group that has read every partition of subscription-renewed."""
    partitions = frozenset(range(Settings().topic_partitions))
    return CaughtUp(at, partitions, partitions)


def party() -> dict[str, str]:
    return {"subscription_id": unique("sub"), "account_id": unique("acc"), "reseller_id": unique("res")}


def expired(who: dict[str, str], at: datetime) -> dict[str, Any]:
    return {**who, "expired_at": at.isoformat()}


def renewed(who: dict[str, str], at: datetime) -> dict[str, Any]:
    return {**who, "renewed_at": at.isoformat()}


def terminated_about(subscription_id: str) -> Callable[[list[Received]], list[Received]]:
    def found(received: list[Received]) -> list[Received]:
        return [r for r in received if r.topic == TERMINATED and r.data["subscription_id"] == subscription_id]

    return found


async def wait_until(moment: datetime) -> None:
    await asyncio.sleep(max((moment - now()).total_seconds(), 0.0))


async def timer_of(worker: Worker, subscription_id: str) -> Any:
    async with worker.engine.connect() as conn:
        return (
            await conn.execute(
                select(expiry_timers).where(expiry_timers.c.subscription_id == subscription_id)
            )
        ).one_or_none()


async def wait_for_timer(
    worker: Worker, subscription_id: str, state: str = "pending", within: float = 20.0
) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        timer = await timer_of(worker, subscription_id)
        if timer is not None and timer.state == state:
            return timer
        assert asyncio.get_running_loop().time() < deadline, f"timer of {subscription_id}: {timer}"
        await asyncio.sleep(0.05)


async def wait_for_inbox(worker: Worker, topic: Topic, ce_id: str, within: float = 20.0) -> str:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with worker.engine.connect() as conn:
            outcome = await conn.scalar(
                select(inbox.c.outcome).where(inbox.c.topic == topic.value, inbox.c.ce_id == ce_id)
            )
        if outcome is not None:
            return str(outcome)
        assert asyncio.get_running_loop().time() < deadline, f"{topic} {ce_id} never handled"
        await asyncio.sleep(0.05)


def assert_expiry_termination(message: Received, who: dict[str, str], expired_at: datetime) -> None:
    assert message.key == who["subscription_id"]
    assert message.ce_id == expiry_event_id(who["reseller_id"], who["subscription_id"], expired_at)
    assert {k: v for k, v in message.data.items() if k != "terminated_at"} == {
        **who,
        "request_id": None,
        "cause": "expired",
        "refund_amount": "0",
        "currency": None,
        "rule": None,
        "no_refund_reason": "expired",
    }


async def test_terminates_at_the_deadline_not_before_and_not_much_after(
    worker: Worker, kafka_bootstrap: str
) -> None:
    who, expired_at = party(), now()
    deadline = expired_at + timedelta(seconds=GRACE_SECONDS)
    find = terminated_about(who["subscription_id"])
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(EXPIRED, expired(who, expired_at))])
        timer = await wait_for_timer(worker, who["subscription_id"])
        assert timer.due_at == deadline

        while now() < deadline - timedelta(seconds=0.3):  # not early
            await watcher.poll()
            assert find(watcher.received) == [], "terminated before the deadline"
        await watcher.wait_for(lambda received: bool(find(received)), within=10.0)
        arrived = now()
        await watcher.wait_for(lambda _: True, settle=1.0)

    [message] = find(watcher.received)
    assert_expiry_termination(message, who, expired_at)
    terminated_at = datetime.fromisoformat(message.data["terminated_at"])
    assert deadline <= terminated_at <= arrived
    assert arrived - deadline < timedelta(seconds=LATE_TOLERANCE_SECONDS), arrived - deadline
    fired = await timer_of(worker, who["subscription_id"])
    assert (fired.state, fired.cancelled_by) == ("fired", None)


async def test_a_renewal_in_the_grace_period_cancels_in_either_order(
    worker: Worker, kafka_bootstrap: str
) -> None:
    expiry_first, renewal_first, earlier_cycle = party(), party(), party()
    expired_at = now()
    async with OutputWatcher(kafka_bootstrap) as watcher:
        # The expiry, then a renewal inside its grace period.
        await publish(kafka_bootstrap, [event(EXPIRED, expired(expiry_first, expired_at))])
        await wait_for_timer(worker, expiry_first["subscription_id"])
        await publish(
            kafka_bootstrap, [event(RENEWED, renewed(expiry_first, expired_at + timedelta(seconds=1)))]
        )
        # The renewal handled before its expiry arrives (the topics' order is not guaranteed).
        renewal = unique("ce")
        await publish(
            kafka_bootstrap,
            [event(RENEWED, renewed(renewal_first, expired_at + timedelta(seconds=1)), renewal)],
        )
        assert await wait_for_inbox(worker, RENEWED, renewal) == "recorded"
        await publish(kafka_bootstrap, [event(EXPIRED, expired(renewal_first, expired_at))])
        # A renewal of the cycle before does not save this one.
        await publish(
            kafka_bootstrap, [event(RENEWED, renewed(earlier_cycle, expired_at - timedelta(days=30)))]
        )
        await publish(kafka_bootstrap, [event(EXPIRED, expired(earlier_cycle, expired_at))])

        await watcher.wait_for(
            lambda r: bool(terminated_about(earlier_cycle["subscription_id"])(r)), within=15.0
        )
        await wait_until(expired_at + timedelta(seconds=GRACE_SECONDS + 1.5))
        await watcher.wait_for(lambda _: True, settle=0.5)

    assert terminated_about(expiry_first["subscription_id"])(watcher.received) == []
    assert terminated_about(renewal_first["subscription_id"])(watcher.received) == []
    for who in (expiry_first, renewal_first):
        timer = await timer_of(worker, who["subscription_id"])
        assert (timer.state, timer.cancelled_by) == ("cancelled", "renewal")
        assert timer.renewed_at == expired_at + timedelta(seconds=1)


async def test_a_termination_request_is_decided_as_any_and_cancels_the_timer(
    worker: Worker, kafka_bootstrap: str
) -> None:
    who, expired_at, request = party(), now(), unique("ce")
    # The cycle ended before the request: outside_cycle, as the contract expects for most of them.
    asked = termination_data(
        **who, cycle_start="2021-04-01", cycle_months=1, requested_at="2021-05-03T10:00:00+08:00"
    )
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(EXPIRED, expired(who, expired_at))])
        await wait_for_timer(worker, who["subscription_id"])
        await publish(kafka_bootstrap, [event(Topic.TERMINATION_REQUESTED, asked, request)])
        [answer] = await watcher.answers({request})
        await wait_until(expired_at + timedelta(seconds=GRACE_SECONDS + 1.5))
        await watcher.wait_for(lambda _: True, settle=0.5)

    assert answer.topic == TERMINATED
    assert (answer.data["cause"], answer.data["no_refund_reason"]) == ("customer_request", "outside_cycle")
    assert terminated_about(who["subscription_id"])(watcher.received) == [answer]
    timer = await timer_of(worker, who["subscription_id"])
    assert (timer.state, timer.cancelled_by) == ("cancelled", "request")


async def test_an_expiry_long_past_its_deadline_terminates_at_once(
    worker: Worker, kafka_bootstrap: str
) -> None:
    who, expired_at = party(), now() - timedelta(days=30)
    async with OutputWatcher(kafka_bootstrap) as watcher:
        sent = now()
        await publish(kafka_bootstrap, [event(EXPIRED, expired(who, expired_at))])
        await watcher.wait_for(lambda r: bool(terminated_about(who["subscription_id"])(r)), within=10.0)
        took = now() - sent

    # Well under the grace period: it did not wait for a timer armed on arrival.
    assert took < timedelta(seconds=GRACE_SECONDS - 0.5), took
    [message] = terminated_about(who["subscription_id"])(watcher.received)
    assert_expiry_termination(message, who, expired_at)


async def test_a_restart_in_between_loses_nothing(settings: Settings, kafka_bootstrap: str) -> None:
    who, expired_at = party(), now()
    deadline = expired_at + timedelta(seconds=GRACE_SECONDS)
    find = terminated_about(who["subscription_id"])
    async with OutputWatcher(kafka_bootstrap) as watcher:
        async with running_worker(settings) as first:
            await publish(kafka_bootstrap, [event(EXPIRED, expired(who, expired_at))])
            await wait_for_timer(first, who["subscription_id"])
        assert now() < deadline, "the first worker stopped too late for this test to mean anything"
        await wait_until(deadline + timedelta(seconds=0.5))  # the deadline passes with no worker running
        await watcher.wait_for(lambda _: True, settle=0.3)
        assert find(watcher.received) == []

        async with running_worker(settings):
            await watcher.wait_for(lambda r: bool(find(r)), within=15.0, settle=1.0)

    [message] = find(watcher.received)
    assert_expiry_termination(message, who, expired_at)


async def test_two_workers_terminate_each_subscription_once(settings: Settings, kafka_bootstrap: str) -> None:
    # A group of its own: two members leaving together can keep the embedded broker's next join of
    # their group waiting for minutes, which the other tests' single workers must not inherit.
    settings = settings.model_copy(update={"consumer_group": unique("refund-worker-two")})
    soon, old = [party() for _ in range(6)], [party() for _ in range(6)]
    expired_at = now()
    expiries = [event(EXPIRED, expired(who, expired_at)) for who in soon]
    expiries += [event(EXPIRED, expired(who, expired_at - timedelta(days=40))) for who in old]
    ids = {who["subscription_id"] for who in soon + old}

    def all_terminated(received: list[Received]) -> bool:
        return ids <= {r.data["subscription_id"] for r in received if r.topic == TERMINATED}

    async with OutputWatcher(kafka_bootstrap) as watcher, running_worker(settings), running_worker(settings):
        await publish(kafka_bootstrap, expiries)
        await watcher.wait_for(all_terminated, within=20.0, settle=2.0)

    counts = {i: len(terminated_about(i)(watcher.received)) for i in ids}
    assert set(counts.values()) == {1}, counts


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_backlog_never_terminates_a_subscription_renewed_in_time(
    settings: Settings, kafka_bootstrap: str, workers: int
) -> None:
    """Expiries and renewals published while no worker runs, deadlines already past, renewals
    before and after their expiry: the renewed survive, the others terminate (docs/expiry.md)."""
    if workers == 2:  # a group of its own, as in test_two_workers_terminate_each_subscription_once
        settings = settings.model_copy(update={"consumer_group": unique("refund-worker-backlog")})
    renewed_first, expired_first, not_renewed = (
        [party() for _ in range(3)],
        [party() for _ in range(3)],
        [party(), party()],
    )
    # No worker runs now, so the database's read progress is older than this instant.
    expired_at = now()
    renewed_at = expired_at + timedelta(seconds=1)  # inside the grace period
    await wait_until(expired_at + timedelta(seconds=GRACE_SECONDS + 0.3))  # deadlines past before publishing
    backlog = [event(RENEWED, renewed(who, renewed_at)) for who in renewed_first]
    backlog += [
        event(EXPIRED, expired(who, expired_at)) for who in renewed_first + expired_first + not_renewed
    ]
    backlog += [event(RENEWED, renewed(who, renewed_at)) for who in expired_first]
    controls = {who["subscription_id"] for who in not_renewed}

    def controls_terminated(received: list[Received]) -> bool:
        return controls <= {r.data["subscription_id"] for r in received if r.topic == TERMINATED}

    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, backlog)
        async with contextlib.AsyncExitStack() as running:
            started = [await running.enter_async_context(running_worker(settings)) for _ in range(workers)]
            await watcher.wait_for(controls_terminated, within=40.0, settle=1.5)
            saved = renewed_first + expired_first
            timers = [await timer_of(started[0], who["subscription_id"]) for who in saved]

    terminated = [r.data["subscription_id"] for r in watcher.received if r.topic == TERMINATED]
    assert [who["subscription_id"] for who in saved if who["subscription_id"] in terminated] == []
    for timer in timers:
        assert (timer.state, timer.cancelled_by, timer.renewed_at) == ("cancelled", "renewal", renewed_at)
    for message in (
        r for r in watcher.received if r.topic == TERMINATED and r.data["subscription_id"] in controls
    ):
        assert datetime.fromisoformat(message.data["terminated_at"]) >= expired_at + timedelta(
            seconds=GRACE_SECONDS
        )


async def test_concurrent_firing_terminates_once(database_url: str) -> None:
    """Many fire rounds at once over two connection pools: every due timer fires exactly once."""
    grace = GracePeriod(GRACE_SECONDS / 86400)
    subscriptions = [party() for _ in range(40)]
    long_ago = now() - timedelta(days=60)
    engines = [create_engine(database_url), create_engine(database_url)]
    try:
        await upgrade_to_head(engines[0])
        async with engines[0].begin() as conn:
            commands = [
                ExpiryCommand(
                    unique("ce"),
                    b"x",
                    who["subscription_id"],
                    who["account_id"],
                    who["reseller_id"],
                    long_ago,
                )
                for who in subscriptions
            ]
            await apply_expiry_batch(conn, commands, grace=grace, now=now())
        reports = []
        while True:
            round_ = await asyncio.gather(
                *(fire_due_timers(e, now(), limit=7, reads=all_read(now())) for e in engines * 3)
            )
            reports += round_
            if all(r.locked_out or r.claimed == 0 for r in round_) and any(not r.locked_out for r in round_):
                break
        fired = [f.subscription_id for r in reports for f in r.terminated]
        ids = {who["subscription_id"] for who in subscriptions}
        assert sorted(f for f in fired if f in ids) == sorted(ids)
        assert any(r.locked_out for r in reports)  # they really ran side by side
        async with engines[0].connect() as conn:
            rows = await conn.execute(
                select(terminations.c.cause, terminations.c.no_refund_reason).where(
                    terminations.c.subscription_id.in_(ids)
                )
            )
            assert sorted(tuple(row) for row in rows) == [("expired", "expired")] * len(ids)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_worker_holding_the_firing_lock_keeps_others_out(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        async with engine.begin() as holder:
            await holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRING_LOCK_KEY})
            report = await fire_due_timers(engine, now())
            assert report.locked_out
            assert (report.claimed, report.terminated) == (0, ())
    finally:
        await engine.dispose()


async def test_an_expiry_for_a_terminated_subscription_does_nothing(
    worker: Worker, kafka_bootstrap: str
) -> None:
    who, request, expiry = party(), unique("ce"), unique("ce")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish(kafka_bootstrap, [event(Topic.TERMINATION_REQUESTED, termination_data(**who), request)])
        await watcher.answers({request})
        await publish(kafka_bootstrap, [event(EXPIRED, expired(who, now() - timedelta(days=40)), expiry)])
        assert await wait_for_inbox(worker, EXPIRED, expiry) == "already_terminated"
        await watcher.wait_for(lambda _: True, settle=1.5)

    [only] = terminated_about(who["subscription_id"])(watcher.received)
    assert only.data["cause"] == "customer_request"
    assert await timer_of(worker, who["subscription_id"]) is None


async def test_a_redelivered_expiry_changes_nothing_and_a_reused_ce_id_is_dead_lettered(
    worker: Worker, kafka_bootstrap: str
) -> None:
    who, ce_id, expired_at = party(), unique("ce"), now() - timedelta(days=40)
    dlt = dead_letter_topic(EXPIRED.value)
    find = terminated_about(who["subscription_id"])
    async with OutputWatcher(kafka_bootstrap, (*OUTPUT_TOPIC_NAMES, dlt)) as watcher:
        await publish(kafka_bootstrap, [event(EXPIRED, expired(who, expired_at), ce_id)])
        await watcher.wait_for(lambda r: bool(find(r)), within=10.0)
        before = await timer_of(worker, who["subscription_id"])

        await publish(kafka_bootstrap, [event(EXPIRED, expired(who, expired_at), ce_id)])  # redelivered
        await publish(kafka_bootstrap, [event(EXPIRED, expired(who, expired_at + timedelta(days=1)), ce_id)])
        letters = await watcher.wait_for(lambda r: any(m.topic == dlt for m in r), within=15.0, settle=1.0)

    assert len(find(watcher.received)) == 1
    assert await timer_of(worker, who["subscription_id"]) == before
    [letter] = [m for m in letters if m.topic == dlt]
    assert letter.headers["kafka_dlt-original-topic"] == EXPIRED.value.encode()
    assert b"another payload" in letter.headers["kafka_dlt-exception-message"]
    assert letter.data["expired_at"] == (expired_at + timedelta(days=1)).isoformat()


async def test_a_timer_that_finds_its_subscription_terminated_publishes_nothing(database_url: str) -> None:
    """The race the timer loses: a request terminated the subscription after the expiry was armed."""
    who, expired_at = party(), now() - timedelta(days=60)
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        async with engine.begin() as conn:
            command = ExpiryCommand(
                unique("ce"), b"x", who["subscription_id"], who["account_id"], who["reseller_id"], expired_at
            )
            [armed] = await apply_expiry_batch(conn, [command], grace=GracePeriod(1), now=now())
            assert armed.outcome == "due"
            await conn.execute(
                terminations.insert().values(
                    **who, cause="customer_request", request_id=unique("ce"), terminated_at=now()
                )
            )
        report = await fire_due_timers(engine, now(), reads=all_read(now()))
        assert report.already_terminated == ((who["reseller_id"], who["subscription_id"]),)
        assert who["subscription_id"] not in {f.subscription_id for f in report.terminated}
        async with engine.connect() as conn:
            event_id = expiry_event_id(who["reseller_id"], who["subscription_id"], expired_at)
            stored = select(stored_events.c.batch).where(stored_events.c.event_id == event_id)
            assert await conn.scalar(stored) is None
            timer = (
                await conn.execute(
                    select(expiry_timers).where(expiry_timers.c.subscription_id == who["subscription_id"])
                )
            ).one()
            assert (timer.state, timer.cancelled_by) == ("cancelled", "request")
    finally:
        await engine.dispose()
