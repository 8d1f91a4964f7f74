"""The double-refund guard (contract section 10) through the real broker and database: a note from
the invoice app and its subscription's termination, each on a partition of its own, in either order,
give one refund: the note linked, or an account credit and exactly one conflict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from schemas.topics import Topic
from tests.integration.harness import (
    OutputWatcher,
    Raw,
    Received,
    event,
    running_worker,
    termination_data,
    unique,
    worker_settings,
)
from worker.app import Worker
from worker.db.schema.invoice_notes import invoice_credit_notes

pytestmark = pytest.mark.integration

NOTE_PARTITION, TERMINATION_PARTITION = 0, 1


@pytest.fixture
async def worker(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> AsyncIterator[Worker]:
    async with running_worker(
        worker_settings(kafka_bootstrap, database_url, kafka_group_settings)
    ) as running:
        yield running


def note_data(termination: dict[str, Any]) -> dict[str, Any]:
    return {
        "credit_note_id": unique("INV-CN"),
        "reseller_id": termination["reseller_id"],
        "account_id": termination["account_id"],
        "subscription_id": termination["subscription_id"],
        "amount": "110.00",
        "currency": "SGD",
        "issued_at": "2021-04-11T09:15:00+08:00",
        "number": "CN/2021/0419",
    }


async def publish_to(bootstrap: str, message: Raw, partition: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(
            message.topic, message.value, key=message.key, headers=message.headers, partition=partition
        )
    finally:
        await producer.stop()


async def note_stored(worker: Worker, reseller_id: str, credit_note_id: str, within: float = 30.0) -> None:
    c = invoice_credit_notes.c
    query = select(c.credit_note_id).where(c.reseller_id == reseller_id, c.credit_note_id == credit_note_id)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with worker.engine.connect() as conn:
            if await conn.scalar(query) is not None:
                return
        assert asyncio.get_running_loop().time() < deadline, f"{credit_note_id} was never recorded"
        await asyncio.sleep(0.2)


def about(received: list[Received], subscription_id: str, topic: Topic) -> list[dict[str, Any]]:
    return [
        r.data
        for r in received
        if r.topic == topic.value and r.data.get("subscription_id") == subscription_id
    ]


async def test_a_note_then_its_termination_is_one_refund_by_the_note(
    worker: Worker, kafka_bootstrap: str
) -> None:
    termination = termination_data(requested_at="2021-04-17T10:00:00+08:00")
    note = note_data(termination)
    request_id = unique("ce")
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish_to(kafka_bootstrap, event(Topic.CREDIT_NOTE_ISSUED, note), NOTE_PARTITION)
        await note_stored(worker, note["reseller_id"], note["credit_note_id"])
        await publish_to(
            kafka_bootstrap,
            event(Topic.TERMINATION_REQUESTED, termination, request_id),
            TERMINATION_PARTITION,
        )
        received = await watcher.answers({request_id})

    (refund,) = about(received, termination["subscription_id"], Topic.REFUND_ISSUED)
    assert (refund["method"], refund["auto_linked"], refund["amount"]) == ("credit_note", True, "110.00")
    assert [n["credit_note_id"] for n in refund["credit_notes"]] == [note["credit_note_id"]]
    assert not [r for r in received if r.topic == Topic.CREDITS_UPDATED.value]


async def test_a_termination_then_its_note_is_one_automatic_refund_and_one_conflict(
    worker: Worker, kafka_bootstrap: str
) -> None:
    termination = termination_data()
    note = note_data(termination)
    request_id = unique("ce")
    subscription = termination["subscription_id"]
    async with OutputWatcher(kafka_bootstrap) as watcher:
        await publish_to(
            kafka_bootstrap,
            event(Topic.TERMINATION_REQUESTED, termination, request_id),
            TERMINATION_PARTITION,
        )
        await watcher.answers({request_id})
        await publish_to(kafka_bootstrap, event(Topic.CREDIT_NOTE_ISSUED, note), NOTE_PARTITION)
        await publish_to(
            kafka_bootstrap, event(Topic.CREDIT_NOTE_ISSUED, note), NOTE_PARTITION
        )  # another ce_id
        received = await watcher.wait_for(
            lambda got: bool(about(got, subscription, Topic.REFUND_CONFLICT_DETECTED)), settle=2.0
        )

    (refund,) = about(received, subscription, Topic.REFUND_ISSUED)
    assert refund["method"] == "account_credit"
    (conflict,) = about(received, subscription, Topic.REFUND_CONFLICT_DETECTED)
    assert (conflict["refund_id"], conflict["credit_note_id"], conflict["amount"]) == (
        refund["refund_id"],
        note["credit_note_id"],
        "110.00",
    )
