"""Benchmark: termination requests through the real broker, worker and database.

    ./dev python -m bench.throughput --requests 30000

Starts the embedded broker and PostgreSQL unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set
(then it creates a fresh database on that server), runs `refund-worker run` as a child process,
publishes the requests as fast as the broker takes them, and reads `subscription-terminated` back.
Reports the sustained rate (requests answered per second, first publish to last answer), the
latency from publish to answer, and checks that every request took effect exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select, text

from schemas.envelope import binary_headers
from schemas.topics import TOPICS, Topic
from worker.db.bulk import wanted
from worker.db.tables import account_balances, balance_ledger, inbox, terminations
from worker.engine.runtime import create_engine
from worker.engine.topics_admin import ensure_topics
from worker.infra import embedded_kafka, embedded_postgres

REQUESTED = Topic.TERMINATION_REQUESTED.value
TERMINATED = Topic.SUBSCRIPTION_TERMINATED.value


@dataclass(frozen=True)
class Options:
    requests: int
    partitions: int
    accounts: int
    batch: int
    workers: int
    rate: int


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=30000, help="termination requests to push")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of termination-requested")
    parser.add_argument("--accounts", type=int, default=2000, help="distinct accounts credited")
    parser.add_argument("--batch", type=int, default=500, help="BATCH_MAX_RECORDS of the worker")
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the group")
    parser.add_argument(
        "--rate", type=int, default=0, help="publish at this many requests/s (0: all at once, a backlog)"
    )
    args = parser.parse_args(argv)
    return Options(args.requests, args.partitions, args.accounts, args.batch, args.workers, args.rate)


@contextlib.contextmanager
def services() -> Iterator[tuple[str, str]]:
    with contextlib.ExitStack() as stack:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(embedded_kafka())
        server = os.environ.get("DATABASE_URL") or stack.enter_context(embedded_postgres())
        yield kafka, server


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"refund_bench_{secrets.token_hex(4)}"
    admin = create_engine(server_url)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def request(index: int, run: str, accounts: int) -> tuple[str, bytes, bytes]:
    """(ce_id, key, value) of the index-th request: yearly SGD, asked at varied points of the cycle."""
    day = 1 + index % 80
    data: dict[str, Any] = {
        "subscription_id": f"sub-{run}-{index}",
        "account_id": f"acc-{run}-{index % accounts}",
        "reseller_id": f"res-{run}-{index % 7}",
        "cycle_start": "2026-01-01",
        "cycle_months": 12,
        "amount_paid": "1200.00",
        "currency": "SGD",
        "timezone": "Asia/Singapore",
        "allow_refund": index % 10 != 0,
        "requested_at": f"2026-{1 + day // 30:02d}-{1 + day % 28:02d}T10:00:00+08:00",
        "requested_by": "bench",
        "reason": "benchmark",
        "credit_note": None,
    }
    return f"bench-{run}-{index}", data["subscription_id"].encode(), json.dumps(data).encode()


def start_workers(options: Options, bootstrap: str, database_url: str) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "CONSUMER_GROUP": "refund-worker-bench",
        "BATCH_MAX_RECORDS": str(options.batch),
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
    }
    # BENCH_WORKER_PREFIX wraps the worker, e.g. "py-spy record -o profile.svg --" to profile it.
    command = [*os.environ.get("BENCH_WORKER_PREFIX", "").split(), sys.executable, "-m", "worker", "run"]
    return [subprocess.Popen(command, env=env) for _ in range(options.workers)]


class Answers:
    """Reads subscription-terminated from its current end; the time each request was answered."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.answered: dict[str, float] = {}
        self.ce_ids: dict[str, set[str]] = {}

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()  # the topic may be minutes old
        partitions = [
            TopicPartition(TERMINATED, p) for p in self._consumer.partitions_for_topic(TERMINATED) or ()
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:
            await self._consumer.position(partition)

    async def until(self, wanted: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.answered.keys() and time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    request_id = json.loads(record.value)["request_id"]
                    self.answered.setdefault(request_id, now)
                    self.ce_ids.setdefault(request_id, set()).add(dict(record.headers)["ce_id"].decode())

    async def stop(self) -> None:
        await self._consumer.stop()


async def publish_all(
    bootstrap: str, messages: list[tuple[str, bytes, bytes]], rate: int = 0
) -> dict[str, float]:
    """Publish as fast as the broker acknowledges, or at `rate` per second; returns when each
    ce_id was sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5, max_batch_size=512 * 1024
    )
    ce_type = TOPICS[Topic.TERMINATION_REQUESTED].ce_type
    sent: dict[str, float] = {}
    await producer.start()
    try:
        pending = []
        start = time.monotonic()
        for index, (ce_id, key, value) in enumerate(messages):
            if rate and index % 100 == 0:  # pace in steps of 100, so latency is not queueing
                await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
            headers = binary_headers(event_id=ce_id, source="/bench", ce_type=ce_type, time=datetime.now(UTC))
            sent[ce_id] = time.monotonic()
            pending.append(await producer.send(REQUESTED, value, key=key, headers=headers))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def warm_up(bootstrap: str, answers: Answers, run: str, accounts: int) -> None:
    """One request answered: the workers have migrated, joined the group and are consuming."""
    message = request(0, f"{run}w", accounts)
    await publish_all(bootstrap, [message])
    await answers.until({message[0]}, timeout_s=120)
    if message[0] not in answers.answered:
        raise SystemExit("the worker did not answer a warm-up request within 120 s")


async def audit(database_url: str, ce_ids: set[str], answers: Answers) -> list[str]:
    """Problems found; none means every request took effect exactly once."""
    problems = []
    missing = ce_ids - answers.answered.keys()
    if missing:
        problems.append(f"{len(missing)} requests never answered")
    reissued = [r for r in ce_ids if len(answers.ce_ids.get(r, ())) > 1]
    if reissued:
        problems.append(f"{len(reissued)} requests answered under more than one ce_id")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            ids, wanted_ids = {"ids": list(ce_ids)}, wanted("ids")
            handled = await conn.scalar(
                select(func.count()).select_from(wanted_ids.join(inbox, inbox.c.ce_id == wanted_ids.c.id)),
                ids,
            )
            ended = await conn.scalar(
                select(func.count()).select_from(
                    wanted_ids.join(terminations, terminations.c.request_id == wanted_ids.c.id)
                ),
                ids,
            )
            if handled != len(ce_ids) or ended != len(ce_ids):
                problems.append(f"inbox {handled} / terminations {ended} for {len(ce_ids)} requests")
            balances = await conn.scalar(select(func.sum(account_balances.c.balance_minor)))
            ledger = await conn.scalar(select(func.sum(balance_ledger.c.delta_minor)))
            if balances != ledger:
                problems.append(f"balances {balances} differ from the ledger {ledger}")
    finally:
        await engine.dispose()
    return problems


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by kind of process on this machine (Linux /proc): where time goes."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        kind = _kind(command)
        used[kind] = used.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def _kind(command: str) -> str:
    if "-m worker run" in command:
        return "worker"
    if "postgres" in command:
        return "postgresql"
    if "tansu" in command:
        return "broker"
    if "bench.throughput" in command:
        return "bench (publisher, reader)"
    return "other processes"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def bench(options: Options, bootstrap: str, server_url: str) -> int:
    run = secrets.token_hex(3)
    await ensure_topics(bootstrap, partitions=options.partitions)  # before anyone reads or writes
    async with fresh_database(server_url) as database_url:
        workers = start_workers(options, bootstrap, database_url)
        answers = Answers(bootstrap)
        try:
            await answers.start()
            await warm_up(bootstrap, answers, run, options.accounts)
            messages = [request(i, run, options.accounts) for i in range(options.requests)]
            ce_ids = {ce_id for ce_id, _, _ in messages}
            listening = asyncio.create_task(answers.until(ce_ids, timeout_s=600))
            cpu_before = cpu_seconds()
            sent = await publish_all(bootstrap, messages, options.rate)
            published = time.monotonic()
            await listening
            cpu_after = cpu_seconds()
            problems = await audit(database_url, ce_ids, answers)
        finally:
            await answers.stop()
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
    report(options, sent, published, answers.answered, problems)
    cpu = {kind: cpu_after.get(kind, 0.0) - cpu_before.get(kind, 0.0) for kind in cpu_after}
    print(
        "cpu per request     "
        + ", ".join(
            f"{kind} {seconds / options.requests * 1e6:,.0f} us"
            for kind, seconds in sorted(cpu.items())
            if seconds > 0
        )
    )
    return 1 if problems else 0


def report(
    options: Options,
    sent: dict[str, float],
    published: float,
    answered: dict[str, float],
    problems: list[str],
) -> None:
    first = min(sent.values())
    done = [answered[c] for c in sent if c in answered]
    latencies = [(answered[c] - sent[c]) * 1000 for c in sent if c in answered]
    elapsed = max(done) - first
    pace = f"at {options.rate}/s" if options.rate else "all at once"
    setup = (
        f"{options.partitions} partitions, {options.workers} worker(s), batches of {options.batch}, {pace}"
    )
    print(f"requests            {options.requests} over {setup}")
    print(f"published in        {published - first:.2f} s ({options.requests / (published - first):,.0f}/s)")
    print(f"answered in         {elapsed:.2f} s")
    print(f"sustained           {len(done) / elapsed:,.0f} requests/s (first publish to last answer)")
    print(
        f"latency ms          p50 {statistics.median(latencies):,.0f}  p99 {percentile(latencies, 0.99):,.0f}"
        f"  max {max(latencies):,.0f} (publish to subscription-terminated)"
    )
    print("exactly once        " + ("yes" if not problems else "NO: " + "; ".join(problems)))


def main() -> None:
    # `timeout` and Ctrl-C stop us with a signal: unwind, so the workers and embedded services stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = parse_options()
    with services() as (bootstrap, server_url):
        raise SystemExit(asyncio.run(bench(options, bootstrap, server_url)))


if __name__ == "__main__":
    main()
