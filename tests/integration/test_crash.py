"""SIGKILL the worker again and again under load: afterwards every request took effect exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import ProgrammingError

from schemas.topics import Topic, dead_letter_topic
from tests.integration.harness import (
    OUTPUT_TOPIC_NAMES,
    OutputWatcher,
    Received,
    event,
    publish,
    termination_data,
    unique,
)
from worker.db.tables import account_balances, balance_ledger, credit_notes, inbox, outbox, terminations
from worker.engine.runtime import create_engine

pytestmark = pytest.mark.integration

REQUESTS = 3000
KILLS = 6


class WorkerProcess:
    """`refund-worker run` in a child process, as it runs in production."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_process(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> Iterator[WorkerProcess]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "CONSUMER_GROUP": unique("crash-test"),
        "KAFKA_SESSION_TIMEOUT_MS": str(kafka_group_settings["session_timeout_ms"]),
        "KAFKA_HEARTBEAT_INTERVAL_MS": str(kafka_group_settings["heartbeat_interval_ms"]),
        "OUTBOX_POLL_SECONDS": "0.2",
        "BATCH_MAX_RECORDS": "20",  # many commits, so kills land between a commit and its offsets
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
    }
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
        # Ours only: this group starts from the earliest offset, so it also meets earlier tests' poison.
        dead_letters = [
            m
            for m in watcher.received
            if m.topic.endswith("-dlt") and m.headers.get("ce_id", b"").decode() in request_ids
        ]

    assert dead_letters == [], f"{len(dead_letters)} requests were dead-lettered"

    await assert_database_applied_each_once(database_url, requests)
    assert_published_each_once(received, request_ids)


async def assert_database_applied_each_once(
    database_url: str, requests: list[tuple[str, dict[str, Any]]]
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            request_ids = [ce_id for ce_id, _ in requests]
            terminated = await conn.scalar(
                select(func.count())
                .select_from(terminations)
                .where(terminations.c.request_id.in_(request_ids))
            )
            assert terminated == REQUESTS
            accounts = sorted({data["account_id"] for _, data in requests})
            for account in accounts:
                balance = (
                    await conn.execute(
                        select(account_balances).where(account_balances.c.account_id == account)
                    )
                ).one()
                ledger = (
                    await conn.execute(
                        select(balance_ledger.c.balance_version, balance_ledger.c.delta_minor)
                        .where(balance_ledger.c.account_id == account)
                        .order_by(balance_ledger.c.balance_version)
                    )
                ).all()
                assert [version for version, _ in ledger] == list(range(1, len(ledger) + 1))
                assert balance.balance_minor == sum(delta for _, delta in ledger)
                assert balance.balance_version == len(ledger)
            resellers = sorted({data["reseller_id"] for _, data in requests})
            for reseller in resellers:
                numbers = list(
                    await conn.scalars(
                        select(credit_notes.c.number)
                        .where(credit_notes.c.reseller_id == reseller)
                        .order_by(credit_notes.c.number)
                    )
                )
                assert numbers == list(range(1, len(numbers) + 1)), f"gap in {reseller}'s credit notes"
            unsent = await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
            assert unsent == 0
    finally:
        await engine.dispose()


def assert_published_each_once(received: list[Received], request_ids: set[str]) -> None:
    """At least once on the wire, but one ce_id per effect: consumers de-duplicating see each once."""
    distinct: dict[str, set[str]] = defaultdict(set)
    for message in received:
        distinct[message.topic].add(message.ce_id)
    terminated = Counter(m.data["request_id"] for m in received if m.topic == Topic.SUBSCRIPTION_TERMINATED)
    assert set(terminated) == request_ids
    rejected = [m.data for m in received if m.topic == Topic.TERMINATION_REJECTED]
    assert rejected == [], "a redelivery was taken for a new request"
    ids_per_request: dict[str, set[str]] = defaultdict(set)
    for message in received:
        if message.topic == Topic.SUBSCRIPTION_TERMINATED:
            ids_per_request[message.data["request_id"]].add(message.ce_id)
    assert all(len(ids) == 1 for ids in ids_per_request.values()), "a re-publish changed a ce_id"
    refunds = {m.ce_id: Decimal(m.data["amount"]) for m in received if m.topic == Topic.REFUND_ISSUED}
    assert len(refunds) == REQUESTS  # every request in this test pays something
    assert len(distinct[Topic.SUBSCRIPTION_TERMINATED]) == REQUESTS
