"""The overdue report through the real broker and database: a money refund the payment service never
answers is reported overdue once, by the worker started after its deadline passed while none ran,
and a settlement that comes after it still settles it."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import select

from schemas.topics import Topic
from tests.integration.harness import (
    OutputWatcher,
    Received,
    event,
    money_refund_data,
    publish,
    running_worker,
    settlement_data,
    unique,
    worker_settings,
)
from worker.db.schema.money_refunds import money_refund_instructions
from worker.engine.runtime import create_engine
from worker.money_refunds.commands import instruction_id

pytestmark = pytest.mark.integration

TIMEOUT_SECONDS = 3.0


async def reported_at(database_url: str, reseller: str, instruction: str) -> datetime | None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            i = money_refund_instructions.c
            found: datetime | None = await conn.scalar(
                select(i.overdue_reported_at).where(
                    i.reseller_id == reseller, i.instruction_id == instruction
                )
            )
            return found
    finally:
        await engine.dispose()


def statuses(received: list[Received], instruction: str) -> list[str]:
    return [
        r.data["status"]
        for r in received
        if r.topic == Topic.MONEY_REFUND_UPDATED.value and r.data["instruction_id"] == instruction
    ]


async def test_an_unanswered_refund_is_reported_overdue_once_across_a_restart_and_still_settles(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> None:
    settings = worker_settings(
        kafka_bootstrap,
        database_url,
        kafka_group_settings,
        consumer_group=unique("refund-worker-overdue"),
        money_refund_timeout_hours=TIMEOUT_SECONDS / 3600,
        money_refund_check_seconds=0.2,
    )
    account, reseller, ce_id = unique("acc"), unique("res"), unique("mr")
    instruction = instruction_id(reseller, ce_id)
    # Bounded here, not by pytest-timeout: a timeout raised inside the test still stops its workers.
    async with asyncio.timeout(150):
        async with OutputWatcher(kafka_bootstrap) as watcher:
            async with running_worker(settings):
                request = money_refund_data(account, reseller, amount="15.99")
                await publish(kafka_bootstrap, [event(Topic.MONEY_REFUND_REQUESTED, request, ce_id)])
                await watcher.wait_for(lambda got: statuses(got, instruction) == ["instructed"], within=60.0)
            assert await reported_at(database_url, reseller, instruction) is None  # not before it stopped
            # No worker runs while the deadline passes.
            await asyncio.sleep(TIMEOUT_SECONDS)
            async with running_worker(settings):
                await watcher.wait_for(
                    lambda got: "overdue" in statuses(got, instruction), within=60.0, settle=1.5
                )
                assert statuses(watcher.received, instruction) == ["instructed", "overdue"]
                late = settlement_data(instruction, account, reseller, "succeeded", detail="late but fine")
                await publish(kafka_bootstrap, [event(Topic.PAYMENT_REFUND_SETTLED, late, unique("st"))])
                await watcher.wait_for(
                    lambda got: "succeeded" in statuses(got, instruction), within=60.0, settle=1.0
                )

    assert statuses(watcher.received, instruction) == ["instructed", "overdue", "succeeded"]
    (overdue,) = [
        r
        for r in watcher.received
        if r.topic == Topic.MONEY_REFUND_UPDATED.value
        and r.data["status"] == "overdue"
        and r.data["instruction_id"] == instruction
    ]
    assert overdue.data["detail"].startswith("no settlement from the payment service")
    assert await reported_at(database_url, reseller, instruction) is not None
