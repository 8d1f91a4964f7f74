"""Metrics and logs of a worker whose broker goes away: the outbox gauges still show the events
waiting, the broker is reported down, and the outage costs a few log lines, not one per retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime
from functools import partial

import pytest

from schemas.topics import Topic
from tests.integration.harness import unique, worker_settings
from tests.integration.test_operability import eventually, is_ready, scrape, serving, value, with_name
from worker.engine.outbox_events import OutboxEvent
from worker.engine.outbox_store import store_events
from worker.infra.tansu import embedded_kafka
from worker.ops.logs import RepeatLimiter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = 8.0


async def test_a_broker_outage_leaves_the_outbox_gauges_true_and_the_log_short(
    database_url: str, kafka_group_settings: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    exit_stack = contextlib.ExitStack()
    bootstrap = await asyncio.to_thread(exit_stack.enter_context, embedded_kafka())
    settings = worker_settings(
        bootstrap,
        database_url,
        kafka_group_settings,
        consumer_group=unique("telemetry"),
        health_check_timeout_seconds=1.0,
    )
    try:
        async with serving(settings) as (worker, base):
            await eventually(partial(is_ready, base), within=30)

            async def assigned() -> bool:
                return bool(with_name(await scrape(base), "refund_worker_consumer_lag"))

            await eventually(assigned, within=30)
            before = await scrape(base)
            assert value(before, "refund_worker_dependency_up", dependency="broker") == 1
            assert value(before, "refund_worker_dependency_up", dependency="database") == 1

            await asyncio.to_thread(exit_stack.close)  # the broker process stops
            async with worker.engine.begin() as conn:  # a decision committed as it went
                await store_events(conn, [waiting_event()])

            with caplog.at_level(logging.INFO):
                caplog.clear()
                caplog.handler.addFilter(RepeatLimiter(("aiokafka",)))  # as configure_logging does

                async def broker_reported_down() -> bool:
                    samples = await scrape(base)
                    return value(samples, "refund_worker_dependency_up", dependency="broker") == 0

                await eventually(broker_reported_down, within=20)
                await asyncio.sleep(OUTAGE_SECONDS)
                during = await scrape(base)
                lines = Counter(record.name for record in caplog.records)
                tracebacks = [record for record in caplog.records if record.exc_info]
    finally:
        await asyncio.to_thread(exit_stack.close)

    assert (value(during, "refund_worker_outbox_backlog") or 0) >= 1
    assert (value(during, "refund_worker_outbox_oldest_age_seconds") or 0) >= OUTAGE_SECONDS
    assert value(during, "refund_worker_dependency_up", dependency="database") == 1
    assert value(during, "refund_worker_dependency_up", dependency="broker") == 0
    print(f"log lines in {OUTAGE_SECONDS:.0f}s of broker outage by logger: {dict(lines)}")
    assert sum(count for name, count in lines.items() if name.startswith("worker")) <= 5, lines
    assert sum(lines.values()) <= 40, lines  # unlimited, aiokafka alone writes ~130 a second
    assert tracebacks == []


def waiting_event() -> OutboxEvent:
    return OutboxEvent(
        str(uuid.uuid4()),
        Topic.REFUND_ISSUED.value,
        "sub-telemetry",
        "refund.issued",
        datetime.now(UTC),
        b"{}",
    )
