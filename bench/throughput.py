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

import asyncio
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time

from bench.answers import Answers, audit, publish_all, warm_up
from bench.ceiling import CeilingRun, record_run, replay, vacuum
from bench.options import Options, parse_options
from bench.prefill import prefill
from bench.process_cpu import cpu_between, cpu_seconds, peak_rss_bytes
from bench.results import Results, report
from bench.services import database_name, fresh_database, services
from bench.statements import request
from worker.engine.runtime import create_engine, migrate_database
from worker.engine.topics_admin import ensure_topics


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
    await vacuum(database_url)  # after the baseline's writes: the ceiling plans on fresh statistics
    # The replay's CPU alone, not the capture's (the worker's code, run in this process).
    ceiling_run = await replay(database_url, recorded, options.requests, lambda: cpu_seconds(database))
    return single, ceiling_run, ceiling_run.cpu_seconds


async def through_workers(options: Options, bootstrap: str, database_url: str, run: str) -> Results:
    workers = start_workers(options, bootstrap, database_url)
    answers = Answers(bootstrap, options.reader_wait_ms)
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


def main() -> None:
    # `timeout` and Ctrl-C stop us with a signal: unwind, so the workers and embedded services stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = parse_options(description=__doc__.splitlines()[0] if __doc__ else None)
    with services() as (bootstrap, server_url):
        raise SystemExit(asyncio.run(bench(options, bootstrap, server_url)))


if __name__ == "__main__":
    main()
