"""The outbox relay in PostgreSQL (no broker): a committed batch's events published from memory and
marked sent, never twice when the table's claim got there first, and left unsent for the claim when
publishing fails (a crash between the commit and the send is the same: the rows stay unsent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.topics import TOPICS, Topic
from tests.databases import migrated_engine
from tests.integration.harness import unique
from worker.db.bulk import copy_rows
from worker.db.schema.outbox import outbox
from worker.engine.outbox import OutboxEvent, OutboxRelay
from worker.engine.records import OutboundRecord

NOW = datetime(2021, 4, 20, 4, 0, tzinfo=UTC)
SPEC = TOPICS[Topic.TERMINATION_REJECTED]


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_relay") as engine:
        yield engine


class Broker:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[OutboundRecord] = []
        self.fail = fail

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        if self.fail:
            raise ConnectionError("the broker is away")
        self.sent.extend(records)


def ce_id(record: OutboundRecord) -> str:
    return (dict(record.headers)["ce_id"] or b"").decode()


async def committed(engine: AsyncEngine, count: int) -> list[OutboxEvent]:
    events = [
        OutboxEvent.built(
            unique("ev"),
            SPEC,
            {"request_id": unique("r"), "subscription_id": f"sub-{i}", "account_id": "a", "reason_code": "x"},
            NOW,
        )
        for i in range(count)
    ]
    async with engine.begin() as conn:
        await copy_rows(conn, outbox, [event.row() for event in events])
    return events


async def unsent(engine: AsyncEngine, events: Sequence[OutboxEvent]) -> set[str]:
    async with engine.connect() as conn:
        query = select(outbox.c.event_id).where(
            outbox.c.event_id.in_([e.event_id for e in events]), outbox.c.sent_at.is_(None)
        )
        return set((await conn.execute(query)).scalars())


async def test_committed_events_are_published_from_memory_with_their_headers_and_marked_sent(
    database: AsyncEngine,
) -> None:
    events = await committed(database, 3)
    broker = Broker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=10)

    assert await relay.publish_committed(events) == 3

    assert await unsent(database, events) == set()
    assert [r.value for r in broker.sent] == [e.value for e in events]
    assert [r.key for r in broker.sent] == [b"sub-0", b"sub-1", b"sub-2"]
    headers = dict(broker.sent[1].headers)
    assert headers["ce_id"] == events[1].event_id.encode()
    assert (headers["ce_type"], headers["ce_source"]) == (SPEC.ce_type.value.encode(), b"/tests")
    assert [name for name, _ in broker.sent[0].headers][:3] == ["ce_specversion", "ce_id", "ce_source"]


async def test_events_another_relay_published_first_are_not_published_again(database: AsyncEngine) -> None:
    events = await committed(database, 4)
    first, second = Broker(), Broker()
    await OutboxRelay(database, first, source="/tests", batch_size=10).publish_committed(events[:2])

    assert await OutboxRelay(database, second, source="/tests", batch_size=10).publish_committed(events) == 2

    assert [r.value for r in second.sent] == [e.value for e in events[2:]]


async def test_a_failed_publish_leaves_the_rows_unsent_and_the_table_claim_publishes_them(
    database: AsyncEngine,
) -> None:
    events = await committed(database, 2)
    relay = OutboxRelay(database, Broker(fail=True), source="/tests", batch_size=10)
    with pytest.raises(ConnectionError):
        await relay.publish_committed(events)
    assert await unsent(database, events) == {e.event_id for e in events}

    broker = Broker()
    recovering = OutboxRelay(database, broker, source="/tests", batch_size=100_000)
    while await recovering.relay_once():
        pass

    assert await unsent(database, events) == set()
    published = {ce_id(r): orjson.loads(r.value or b"") for r in broker.sent}
    # The same data (JSONB gives it back in its own spacing and key order).
    assert {e.event_id: published[e.event_id] for e in events} == {e.event_id: e.data for e in events}


async def test_past_its_bound_memory_is_dropped_and_the_table_is_claimed_instead(
    database: AsyncEngine,
) -> None:
    events = await committed(database, 3)
    broker = Broker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=100_000, max_pending=2)

    relay.publish(events)
    await relay.relay_due()

    assert await unsent(database, events) == set()
    assert {ce_id(r) for r in broker.sent} >= {e.event_id for e in events}


class HeldBroker(Broker):
    """Takes the records, then holds its acknowledgement until released (or forever)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, records: Sequence[OutboundRecord]) -> None:
        self.sent.extend(records)
        self.holding.set()
        await self.release.wait()


async def test_a_graceful_stop_lets_the_publish_in_flight_commit_its_mark(database: AsyncEngine) -> None:
    events = await committed(database, 2)
    broker = HeldBroker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=100_000)
    relay.start(poll_seconds=60.0)
    relay.publish(events)
    await asyncio.wait_for(broker.holding.wait(), timeout=10)  # the broker has them, the mark is open

    draining = asyncio.create_task(relay.drain(grace_seconds=10))
    await asyncio.sleep(0.1)
    assert not draining.done()  # a cancelled pass would roll the mark back: the next start resends
    broker.release.set()
    await draining

    assert await unsent(database, events) == set()
    sent_ids = [ce_id(r) for r in broker.sent]
    assert [sent_ids.count(e.event_id) for e in events] == [1, 1]


async def test_a_stop_waits_no_longer_than_its_grace_and_leaves_the_rows_for_the_next_start(
    database: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    events = await committed(database, 2)
    broker = HeldBroker()  # never released: a broker that never acknowledges
    relay = OutboxRelay(database, broker, source="/tests", batch_size=100_000)
    relay.start(poll_seconds=60.0)
    relay.publish(events)
    await asyncio.wait_for(broker.holding.wait(), timeout=10)

    await asyncio.wait_for(relay.drain(grace_seconds=0.2), timeout=5)

    assert await unsent(database, events) == {e.event_id for e in events}
    assert "stopped with events unpublished" in caplog.text
