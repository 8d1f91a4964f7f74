"""SIGKILL the worker again and again under load: afterwards every request took effect exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import ProgrammingError

from schemas.topics import Topic, dead_letter_topic
from tests.integration.audit import (
    assert_database_applied_each_once,
    assert_nothing_dead_lettered,
    assert_published_each_once,
)
from tests.integration.harness import (
    OUTPUT_TOPIC_NAMES,
    OutputWatcher,
    event,
    publish,
    termination_data,
    unique,
)
from tests.integration.worker_processes import WorkerProcess, worker_env
from worker.db.schema.inbox import inbox
from worker.engine.runtime import create_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 3000
KILLS = 6


@pytest.fixture
def worker_process(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> Iterator[WorkerProcess]:
    # Batches of 20: many commits, so kills land between a commit and its offsets.
    env = worker_env(
        kafka_bootstrap, database_url, unique("crash-test"), kafka_group_settings, BATCH_MAX_RECORDS="20"
    )
    process = WorkerProcess(env)
    yield process
    process.stop()


async def wait_for_progress(database_url: str, beyond: int) -> int:
    """Return as soon as more than `beyond` requests are in the inbox: right after a commit, when
    the worker is likely between its database commit and its offset commit (the window that makes
    redeliveries). Polls without sleeping for that reason."""
    engine = create_engine(database_url, pool_size=1)
    deadline = asyncio.get_running_loop().time() + 60
    try:
        async with engine.connect() as conn:
            while asyncio.get_running_loop().time() < deadline:
                try:
                    count = await conn.scalar(select(func.count()).select_from(inbox)) or 0
                except ProgrammingError:  # before the first migration: no table yet
                    count = 0
                finally:
                    await conn.rollback()  # a fresh snapshot each time
                if count > beyond:
                    return count
        raise AssertionError(f"the worker made no progress past {beyond} requests in 60 s")
    finally:
        await engine.dispose()


def requests_under_test() -> list[tuple[str, dict[str, Any]]]:
    """Many requests, few accounts and resellers, so balances and credit-note numbers contend."""
    accounts = [unique("acc") for _ in range(5)]
    resellers = [unique("res") for _ in range(3)]
    requests = []
    for index in range(REQUESTS):
        day = 2 + index % 60  # inside the window, past it, months later: all rules that pay
        data = termination_data(
            account_id=accounts[index % len(accounts)],
            reseller_id=resellers[index % len(resellers)],
            requested_at=f"2021-{4 + day // 30:02d}-{1 + day % 28:02d}T10:00:00+08:00",
        )
        requests.append((unique("ce"), data))
    return requests


async def test_sigkill_under_load_leaves_every_request_applied_exactly_once(
    worker_process: WorkerProcess, kafka_bootstrap: str, database_url: str
) -> None:
    requests = requests_under_test()
    watched = (*OUTPUT_TOPIC_NAMES, dead_letter_topic(Topic.TERMINATION_REQUESTED))
    async with OutputWatcher(kafka_bootstrap, watched) as watcher:
        await publish(kafka_bootstrap, [event(Topic.TERMINATION_REQUESTED, d, c) for c, d in requests])
        done = 0
        for _ in range(KILLS):
            worker_process.start()
            # A cold start takes seconds (imports, migration, group join): kill on evidence of work,
            # a moment after this life has committed some batches, so the kill lands mid-stream.
            done = await wait_for_progress(database_url, beyond=done + random.randint(50, 300))
            worker_process.kill()
        assert done < REQUESTS, "the backlog ran out before the last kill: raise REQUESTS"
        worker_process.start()
        request_ids = {ce_id for ce_id, _ in requests}
        received = await watcher.answers(request_ids, within=240, settle=2.0)

    assert_nothing_dead_lettered(watcher.received, request_ids)
    await assert_database_applied_each_once(database_url, requests)
    assert_published_each_once(received, requests)
