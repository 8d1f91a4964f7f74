"""The outbox relay in PostgreSQL (no broker): a committed batch's events published from memory and
marked published, never twice when the table's claim got there first, and left unpublished for the
claim when publishing fails (a crash between the commit and the send is the same); the claim takes
batches whole and in order, and publishes what the release before left unsent in its `outbox`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.topics import TOPICS, Topic
from tests.databases import migrated_engine
from tests.integration.harness import unique
from worker.db.schema.outbox import outbox, outbox_batches, outbox_events
from worker.engine.outbox import OutboxEvent, OutboxRelay
from worker.engine.outbox_store import StoredBatch, store_events
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


def new_events(count: int) -> list[OutboxEvent]:
    return [
        OutboxEvent.built(
            unique("ev"),
            SPEC,
            {"request_id": unique("r"), "subscription_id": f"sub-{i}", "account_id": "a", "reason_code": "x"},
            NOW,
        )
        for i in range(count)
    ]


async def committed(engine: AsyncEngine, count: int) -> StoredBatch:
    async with engine.begin() as conn:
        stored = await store_events(conn, new_events(count))
    assert stored is not None
    return stored


async def unsent(engine: AsyncEngine, *batches: StoredBatch) -> set[str]:
    """The event ids of these batches whose batch is not marked published."""
    e, b = outbox_events.c, outbox_batches.c
    query = (
        select(e.event_id)
        .join_from(outbox_events, outbox_batches, e.batch == b.batch)
        .where(e.batch.in_([stored.batch for stored in batches]), b.published_at.is_(None))
    )
    async with engine.connect() as conn:
        return set((await conn.execute(query)).scalars())


def ids(*batches: StoredBatch) -> set[str]:
    return {event.event_id for stored in batches for event in stored.events}


async def claim_all(relay: OutboxRelay) -> None:
    while await relay.relay_once():
        pass


async def test_committed_events_are_published_from_memory_with_their_headers_and_marked_published(
    database: AsyncEngine,
) -> None:
    stored = await committed(database, 3)
    broker = Broker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=10)

    assert await relay.publish_committed([stored]) == 3

    assert await unsent(database, stored) == set()
    events = stored.events
    assert [r.value for r in broker.sent] == [e.value for e in events]
    assert [r.key for r in broker.sent] == [b"sub-0", b"sub-1", b"sub-2"]
    headers = dict(broker.sent[1].headers)
    assert headers["ce_id"] == events[1].event_id.encode()
    assert (headers["ce_type"], headers["ce_source"]) == (SPEC.ce_type.value.encode(), b"/tests")
    assert [name for name, _ in broker.sent[0].headers][:3] == ["ce_specversion", "ce_id", "ce_source"]


async def test_batches_another_relay_published_first_are_not_published_again(database: AsyncEngine) -> None:
    first_batch, second_batch = await committed(database, 2), await committed(database, 2)
    first, second = Broker(), Broker()
    await OutboxRelay(database, first, source="/tests", batch_size=10).publish_committed([first_batch])

    relay = OutboxRelay(database, second, source="/tests", batch_size=10)
    assert await relay.publish_committed([first_batch, second_batch]) == 2

    assert [r.value for r in second.sent] == [e.value for e in second_batch.events]


async def test_a_failed_publish_leaves_the_batch_unpublished_and_the_table_claim_publishes_it(
    database: AsyncEngine,
) -> None:
    stored = await committed(database, 2)
    relay = OutboxRelay(database, Broker(fail=True), source="/tests", batch_size=10)
    with pytest.raises(ConnectionError):
        await relay.publish_committed([stored])
    assert await unsent(database, stored) == ids(stored)

    broker = Broker()
    await claim_all(OutboxRelay(database, broker, source="/tests", batch_size=100_000))

    assert await unsent(database, stored) == set()
    published = {ce_id(r): r.value for r in broker.sent}
    assert {e.event_id: published[e.event_id] for e in stored.events} == {
        e.event_id: e.value for e in stored.events
    }


async def test_the_claim_takes_whole_batches_in_order_up_to_its_size(database: AsyncEngine) -> None:
    await claim_all(OutboxRelay(database, Broker(), source="/tests", batch_size=100_000))  # others' leftovers
    batches = [await committed(database, count) for count in (2, 2, 3, 2)]
    broker = Broker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=4)

    published = [await relay.relay_once() for _ in range(4)]

    assert published == [4, 3, 2, 0]  # 2 + 2; 3 (the next 2 would pass 4); 2; nothing left
    assert [ce_id(r) for r in broker.sent] == [e.event_id for stored in batches for e in stored.events]
    assert await unsent(database, *batches) == set()


async def test_a_batch_larger_than_the_claim_is_published_whole(database: AsyncEngine) -> None:
    await claim_all(OutboxRelay(database, Broker(), source="/tests", batch_size=100_000))
    stored = await committed(database, 5)
    broker = Broker()

    assert await OutboxRelay(database, broker, source="/tests", batch_size=2).relay_once() == 5
    assert {ce_id(r) for r in broker.sent} == ids(stored)


async def test_what_the_release_before_left_unsent_in_its_outbox_is_published_once(
    database: AsyncEngine,
) -> None:
    events = new_events(3)
    rows = [
        {
            "event_id": e.event_id,
            "topic": e.topic,
            "key": e.key,
            "ce_type": e.ce_type,
            "ce_time": e.ce_time,
            "data": e.data,
        }
        for e in events
    ]
    async with database.begin() as conn:
        await conn.execute(insert(outbox), rows)
    broker = Broker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=100_000)

    await relay.relay_due()
    await relay.relay_due()

    async with database.connect() as conn:
        query = select(outbox.c.event_id).where(
            outbox.c.event_id.in_(ids_of(events)), outbox.c.sent_at.is_(None)
        )
        still_unsent = set((await conn.execute(query)).scalars())
    assert still_unsent == set()
    sent = [ce_id(r) for r in broker.sent]
    assert [sent.count(e.event_id) for e in events] == [1, 1, 1]
    published = {ce_id(r): orjson.loads(r.value or b"") for r in broker.sent}
    assert [published[e.event_id] for e in events] == [e.data for e in events]  # JSONB's spacing, same data


def ids_of(events: Sequence[OutboxEvent]) -> list[str]:
    return [e.event_id for e in events]


async def test_this_release_writes_nothing_the_release_before_would_publish(database: AsyncEngine) -> None:
    async with database.connect() as conn:
        before = await conn.scalar(select(outbox.c.seq).order_by(outbox.c.seq.desc()).limit(1))
    await committed(database, 3)
    async with database.connect() as conn:
        after = await conn.scalar(select(outbox.c.seq).order_by(outbox.c.seq.desc()).limit(1))
    assert after == before


async def test_past_its_bound_memory_is_dropped_and_the_table_is_claimed_instead(
    database: AsyncEngine,
) -> None:
    stored = await committed(database, 3)
    broker = Broker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=100_000, max_pending=2)

    relay.publish(stored)
    await relay.relay_due()

    assert await unsent(database, stored) == set()
    assert {ce_id(r) for r in broker.sent} >= ids(stored)


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
    stored = await committed(database, 2)
    broker = HeldBroker()
    relay = OutboxRelay(database, broker, source="/tests", batch_size=100_000)
    relay.start(poll_seconds=60.0)
    relay.publish(stored)
    await asyncio.wait_for(broker.holding.wait(), timeout=10)  # the broker has them, the mark is open

    draining = asyncio.create_task(relay.drain(grace_seconds=10))
    await asyncio.sleep(0.1)
    assert not draining.done()  # a cancelled pass would roll the mark back: the next start resends
    broker.release.set()
    await draining

    assert await unsent(database, stored) == set()
    sent_ids = [ce_id(r) for r in broker.sent]
    assert [sent_ids.count(e.event_id) for e in stored.events] == [1, 1]


async def test_a_stop_waits_no_longer_than_its_grace_and_leaves_the_rows_for_the_next_start(
    database: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    stored = await committed(database, 2)
    broker = HeldBroker()  # never released: a broker that never acknowledges
    relay = OutboxRelay(database, broker, source="/tests", batch_size=100_000)
    relay.start(poll_seconds=60.0)
    relay.publish(stored)
    await asyncio.wait_for(broker.holding.wait(), timeout=10)

    await asyncio.wait_for(relay.drain(grace_seconds=0.2), timeout=5)

    assert await unsent(database, stored) == ids(stored)
    assert "stopped with events unpublished" in caplog.text


class CountingRelay(OutboxRelay):
    """Counts the events it publishes from memory (the rest it published from the table)."""

    from_memory = 0

    async def publish_committed(self, batches: Sequence[StoredBatch]) -> int:
        published = await super().publish_committed(batches)
        self.from_memory += published
        return published


async def test_the_periodic_claim_leaves_what_memory_holds_to_memory(database: AsyncEngine) -> None:
    broker = Broker()
    relay = CountingRelay(database, broker, source="/tests", batch_size=100_000)
    await relay.relay_due()  # the start's claim (of others' leftovers); the next is due in poll_seconds
    stored = await committed(database, 3)
    relay._next_claim = 0.0  # that time has come
    broker.sent.clear()

    relay.publish(stored)
    await relay.relay_due()

    assert relay.from_memory == 3  # not read back from the table first
    assert [ce_id(r) for r in broker.sent] == [e.event_id for e in stored.events]
