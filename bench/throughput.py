"""Benchmark: termination requests through the real broker, worker and database.

    ./dev python -m bench.throughput --requests 30000 [--prefill 1000000] [--json]

Starts the embedded broker and PostgreSQL unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set
(then it creates a fresh database on that server), runs `refund-worker run` as a child process,
publishes the requests as fast as the broker takes them, and reads `subscription-terminated` back.
Reports the sustained rate (requests answered per second, first publish to last answer), the
latency from publish to answer, the CPU each kind of process spent per request, the worker's peak
RSS, and checks that every request took effect exactly once. In the same invocation it replays
the worker's own statements for as many requests from one connection (bench/ceiling.py) and
reports the worker's rate as a share of that ceiling, so the ratio is fair on a noisy machine.
`--prefill N` first grows the tables the look-ups read to N rows (bench/prefill.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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

from bench.ceiling import CeilingRun, record_run, replay, vacuum
from bench.prefill import prefill
from bench.statements import request
from schemas.envelope import binary_headers
from schemas.topics import TOPICS, Topic
from worker.db.bulk import wanted
from worker.db.schema.balances import account_balances, balance_ledger
from worker.db.schema.inbox import inbox
from worker.db.schema.refunds import terminations
from worker.engine.runtime import create_engine, migrate_database
from worker.engine.topics_admin import ensure_topics
from worker.infra.postgres import embedded_postgres
from worker.infra.tansu import embedded_kafka

REQUESTED = Topic.TERMINATION_REQUESTED.value
TERMINATED = Topic.SUBSCRIPTION_TERMINATED.value
READER_FETCH_WAIT_MS = 5


@dataclass(frozen=True)
class Options:
    requests: int
    partitions: int
    accounts: int
    batch: int
    workers: int
    rate: int
    prefill: int = 0
    ceiling: bool = True
    single: int = 500
    fetch_max_wait_ms: int | None = None
    json: bool = False


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
    parser.add_argument("--prefill", type=int, default=0, help="rows to put in each looked-up table first")
    parser.add_argument(
        "--no-ceiling", dest="ceiling", action="store_false", help="skip the raw ceiling (bench/ceiling.py)"
    )
    parser.add_argument(
        "--single",
        type=int,
        default=500,
        help="requests of the one-transaction-a-request baseline (0: none)",
    )
    parser.add_argument(
        "--fetch-max-wait-ms", type=int, default=None, help="KAFKA_FETCH_MAX_WAIT_MS of the worker"
    )
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = parser.parse_args(argv)
    return Options(
        args.requests,
        args.partitions,
        args.accounts,
        args.batch,
        args.workers,
        args.rate,
        prefill=args.prefill,
        ceiling=args.ceiling and args.requests > 0,
        single=args.single if args.ceiling else 0,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        json=args.json,
    )


@contextlib.contextmanager
def services(*, kafka: bool = True) -> Iterator[tuple[str, str]]:
    with contextlib.ExitStack() as stack:
        bootstrap = ""
        if kafka:
            bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(embedded_kafka())
        server = os.environ.get("DATABASE_URL") or stack.enter_context(embedded_postgres())
        yield bootstrap, server


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, template: str | None = None) -> AsyncIterator[str]:
    """A new database; a copy of `template` (a database URL on the same server) if given."""
    name = f"refund_bench_{secrets.token_hex(4)}"
    copy_of = f' TEMPLATE "{database_name(template)}"' if template else ""
    admin = create_engine(server_url)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def start_workers(options: Options, bootstrap: str, database_url: str) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "CONSUMER_GROUP": "refund-worker-bench",
        "BATCH_MAX_RECORDS": str(options.batch),
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
        "MIGRATE_ON_START": "false",  # migrated (and prefilled) before the workers start
    }
    if options.fetch_max_wait_ms is not None:
        env["KAFKA_FETCH_MAX_WAIT_MS"] = str(options.fetch_max_wait_ms)
    # BENCH_WORKER_PREFIX wraps the worker, e.g. "py-spy record -o profile.svg --" to profile it.
    command = [*os.environ.get("BENCH_WORKER_PREFIX", "").split(), sys.executable, "-m", "worker", "run"]
    return [subprocess.Popen(command, env=env) for _ in range(options.workers)]


class Answers:
    """Reads subscription-terminated from its current end; the time each request was answered."""

    def __init__(self, bootstrap: str) -> None:
        # The embedded broker answers a waiting fetch only at its deadline: with aiokafka's 500 ms
        # the reader itself added up to half a second to every latency measured.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=READER_FETCH_WAIT_MS
        )
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
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
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


@dataclass(frozen=True, slots=True)
class _Process:
    parent: int
    command: str
    cpu_seconds: float


def _processes() -> dict[int, _Process]:
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
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
        found[int(entry)] = _Process(int(fields[1]), command, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def cpu_seconds(database: str) -> dict[str, float]:
    """CPU seconds used so far by kind of process (Linux /proc): this process (the load generator)
    and its children (worker, embedded broker), and the PostgreSQL backends serving `database`
    (their title names it). Other engineers' processes on a shared machine are left out."""
    processes = _processes()
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, process in processes.items():
            if pid not in mine and process.parent in mine:
                mine.add(pid)
                grew = True
    used: dict[str, float] = {}
    for pid, process in processes.items():
        if pid == os.getpid():
            kind = "load generator"
        elif "postgres" in process.command and f" {database} " in f"{process.command} ":
            kind = "postgresql"
        elif pid in mine:
            kind = _kind(process.command)
        else:
            continue
        used[kind] = used.get(kind, 0.0) + process.cpu_seconds
    return used


def _kind(command: str) -> str:
    if "-m worker run" in command:
        return "worker"
    if "postgres" in command:
        return "postgresql"
    if "tansu" in command:
        return "broker"
    return "other children"


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        kind: after[kind] - before.get(kind, 0.0) for kind in after if after[kind] > before.get(kind, 0.0)
    }


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process has had."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Results:
    options: Options
    sent: dict[str, float]
    published: float
    answered: dict[str, float]
    problems: list[str]
    cpu: dict[str, float]
    worker_peak_rss: list[int]
    ceiling: CeilingRun | None = None
    ceiling_cpu: dict[str, float] | None = None
    single: CeilingRun | None = None
    prefill_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        first = min(self.sent.values())
        done = [self.answered[c] for c in self.sent if c in self.answered]
        latencies = [(self.answered[c] - self.sent[c]) * 1000 for c in self.sent if c in self.answered]
        rate = len(done) / (max(done) - first)
        n = self.options.requests
        return {
            "options": dataclasses.asdict(self.options),
            "requests_per_s": rate,
            "published_per_s": n / (self.published - first),
            "latency_ms": {
                "p50": statistics.median(latencies),
                "p99": percentile(latencies, 0.99),
                "max": max(latencies),
            },
            "cpu_us_per_request": {kind: seconds / n * 1e6 for kind, seconds in sorted(self.cpu.items())},
            "worker_peak_rss_mib": [rss / 2**20 for rss in self.worker_peak_rss],
            "ceiling_requests_per_s": self.ceiling.rate if self.ceiling else None,
            "ceiling_cpu_us_per_request": {
                kind: seconds / n * 1e6 for kind, seconds in sorted((self.ceiling_cpu or {}).items())
            },
            "share_of_ceiling": rate / self.ceiling.rate if self.ceiling else None,
            "single_transaction_requests_per_s": self.single.rate if self.single else None,
            "exactly_once": not self.problems,
            "problems": self.problems,
            "prefill_seconds": self.prefill_seconds,
        }


async def bench(options: Options, bootstrap: str, server_url: str) -> int:
    run = secrets.token_hex(3)
    await ensure_topics(bootstrap, partitions=options.partitions)  # before anyone reads or writes
    async with fresh_database(server_url) as template_url:
        prefill_seconds = await prepared(template_url, options.prefill)
        async with fresh_database(server_url, template=template_url) as database_url:
            # The ceiling runs in the template, the workers in its copy: both start from the same tables.
            single, ceiling_run, ceiling_cpu = await raw_ceiling(options, template_url, run)
            results = await through_workers(options, bootstrap, database_url, run)
    results.ceiling, results.ceiling_cpu, results.single = ceiling_run, ceiling_cpu, single
    results.prefill_seconds = prefill_seconds
    report(results)
    return 1 if results.problems else 0


async def prepared(database_url: str, rows: int) -> float:
    """Migrate and prefill; returns how long the prefill took."""
    await migrate_database(database_url)
    engine = create_engine(database_url, pool_size=1)
    started = time.monotonic()
    try:
        await prefill(engine, rows)
    finally:
        await engine.dispose()
    return time.monotonic() - started


async def raw_ceiling(
    options: Options, database_url: str, run: str
) -> tuple[CeilingRun | None, CeilingRun | None, dict[str, float] | None]:
    """The one-transaction-per-request baseline and the batched ceiling, with the CPU of the latter."""
    if not options.ceiling:
        return None, None, None
    database = database_name(database_url)
    single = None
    if options.single:
        recorded = await record_run(
            database_url, f"{run}s", requests=options.single, batch=1, accounts=options.accounts
        )
        alone = [dataclasses.replace(batch, relay=[]) for batch in recorded]
        single = await replay(database_url, alone, options.single)
    recorded = await record_run(
        database_url, f"{run}c", requests=options.requests, batch=options.batch, accounts=options.accounts
    )
    await vacuum(database_url)  # the rolled-back captures left dead rows the workers' copy has not
    # The replay's CPU alone, not the capture's (the worker's code, run in this process).
    ceiling_run = await replay(database_url, recorded, options.requests, lambda: cpu_seconds(database))
    return single, ceiling_run, ceiling_run.cpu_seconds


async def through_workers(options: Options, bootstrap: str, database_url: str, run: str) -> Results:
    workers = start_workers(options, bootstrap, database_url)
    answers = Answers(bootstrap)
    database = database_name(database_url)
    try:
        await answers.start()
        await warm_up(bootstrap, answers, run, options.accounts)
        messages = [request(i, run, options.accounts) for i in range(options.requests)]
        ce_ids = {ce_id for ce_id, _, _ in messages}
        listening = asyncio.create_task(answers.until(ce_ids, timeout_s=600))
        cpu_before = cpu_seconds(database)
        sent = await publish_all(bootstrap, messages, options.rate)
        published = time.monotonic()
        await listening
        cpu_after = cpu_seconds(database)
        peaks = [peak_rss_bytes(worker.pid) for worker in workers]
        problems = await audit(database_url, ce_ids, answers)
    finally:
        await answers.stop()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    cpu = cpu_between(cpu_before, cpu_after)
    return Results(options, sent, published, answers.answered, problems, cpu, peaks)


def report(results: Results) -> None:
    options, summary = results.options, results.summary()
    pace = f"at {options.rate}/s" if options.rate else "all at once"
    wait = options.fetch_max_wait_ms if options.fetch_max_wait_ms is not None else "default"
    latency = summary["latency_ms"]
    print(
        f"run                 {options.requests} requests, {options.partitions} partitions, "
        f"{options.workers} worker(s), batches of {options.batch}, {pace}, "
        f"prefill {options.prefill:,} rows ({results.prefill_seconds:.0f} s), fetch_max_wait_ms {wait}"
    )
    print(f"published           {summary['published_per_s']:,.0f}/s")
    print(f"sustained           {summary['requests_per_s']:,.0f} requests/s (first publish to last answer)")
    print(
        f"latency ms          p50 {latency['p50']:,.0f}  p99 {latency['p99']:,.0f}  max {latency['max']:,.0f}"
        " (publish to subscription-terminated)"
    )
    print("cpu us/request      " + _per_request(summary["cpu_us_per_request"]))
    print("worker peak RSS     " + ", ".join(f"{mib:,.0f} MiB" for mib in summary["worker_peak_rss_mib"]))
    if results.ceiling:
        print(
            f"raw ceiling         {results.ceiling.rate:,.0f} requests/s (the worker's statements from one"
            f" connection); cpu us/request {_per_request(summary['ceiling_cpu_us_per_request'])}"
        )
        print(f"share of ceiling    {summary['share_of_ceiling']:.2f}")
    if results.single:
        print(
            f"1 tx per request    {results.single.rate:,.0f} requests/s "
            f"({results.single.requests} requests replayed, each its own transaction, relay left out)"
        )
    print("exactly once        " + ("yes" if not results.problems else "NO: " + "; ".join(results.problems)))
    if options.json:
        print(json.dumps(summary))


def _per_request(cpu: dict[str, float]) -> str:
    return ", ".join(f"{kind} {us:,.0f}" for kind, us in cpu.items())


def main() -> None:
    # `timeout` and Ctrl-C stop us with a signal: unwind, so the workers and embedded services stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = parse_options()
    with services() as (bootstrap, server_url):
        raise SystemExit(asyncio.run(bench(options, bootstrap, server_url)))


if __name__ == "__main__":
    main()
