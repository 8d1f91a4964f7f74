"""The raw ceiling: the worker's own statements for a run, replayed from one asyncpg connection.

    ./dev python -m bench.ceiling --requests 30000 --batch 500 [--prefill 1000000]

The statements are captured from the worker's code (bench/statements.py): the same look-ups,
counter upserts, timer update and COPYs, with the same batch size and row shapes, then the outbox
relay's mark of the batch's events in a transaction of its own, as the worker's relay does. The replay does
no Python work between them (rows and parameters are built before the clock starts), so its rate
is what PostgreSQL on this machine allows one connection: what the worker could reach if its own
work cost nothing. bench/throughput.py runs it in the same invocation and reports the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from bench.services import fresh_database
from bench.statements import RecordedBatch, Replayer, commands, record_batches, request
from worker.engine.runtime import create_engine, migrate_database


@dataclass(frozen=True, slots=True)
class CeilingRun:
    requests: int
    seconds: float
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """What `measure` counted between the first statement and the last, by kind of process."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


CpuReading = Callable[[], dict[str, float]]


async def record_run(
    database_url: str, run: str, *, requests: int, batch: int, accounts: int, relay_batch_size: int = 2000
) -> list[RecordedBatch]:
    """The statements a worker issues for `requests` requests read in batches of `batch`, captured in
    a scratch database of the same server, migrated and each batch committed there as the worker
    commits it (the statements do not depend on the rows of other keys a prefill adds)."""
    parsed = commands([request(i, run, accounts) for i in range(requests)])
    batches = [parsed[i : i + batch] for i in range(0, len(parsed), batch)]
    async with fresh_database(database_url) as scratch_url:  # created from a connection to this one
        await migrate_database(scratch_url)
        engine = create_engine(scratch_url, pool_size=1)
        try:
            return await record_batches(
                engine, batches, relay=True, relay_batch_size=relay_batch_size, commit_each=True
            )
        finally:
            await engine.dispose()


async def replay(
    database_url: str, recorded: Sequence[RecordedBatch], requests: int, measure: CpuReading | None = None
) -> CeilingRun:
    """Each batch in its transaction, then its relay in another, back to back on one connection.
    `measure` is read before and after, while the connection (its server process) still lives."""
    conn = await asyncpg.connect(database_url)
    try:
        replayer = Replayer(conn)
        before = measure() if measure else {}
        started = time.perf_counter()
        for batch in recorded:
            for steps in (batch.apply, batch.relay):
                if steps:
                    async with conn.transaction():
                        for step in steps:
                            await replayer.run(step)
        seconds = time.perf_counter() - started
        after = measure() if measure else {}
        spent = {kind: after[kind] - before.get(kind, 0.0) for kind in after}
        return CeilingRun(requests, seconds, {kind: used for kind, used in spent.items() if used > 0})
    finally:
        await conn.close()


async def ceiling(
    database_url: str, run: str, *, requests: int, batch: int, accounts: int
) -> tuple[CeilingRun, float]:
    """The replayed run, and how long capturing its statements took (not part of the rate)."""
    started = time.perf_counter()
    recorded = await record_run(database_url, run, requests=requests, batch=batch, accounts=accounts)
    recording = time.perf_counter() - started
    return await replay(database_url, recorded, requests), recording


async def vacuum(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def prefilled_database(prefill_rows: int) -> AsyncIterator[str]:
    """A fresh database at the schema's head, its looked-up tables prefilled (bench/prefill.py), on
    the configured or embedded server: for the tools that replay the worker's statements alone."""
    from bench.prefill import prefill
    from bench.services import services

    with services(kafka=False) as (_, server_url):
        async with fresh_database(server_url) as database_url:
            await migrate_database(database_url)
            engine = create_engine(database_url)
            try:
                await prefill(engine, prefill_rows)
            finally:
                await engine.dispose()
            yield database_url


async def _main(options: argparse.Namespace) -> None:
    async with prefilled_database(options.prefill) as database_url:
        run, _ = await ceiling(
            database_url, "ceil", requests=options.requests, batch=options.batch, accounts=options.accounts
        )
    print(f"ceiling  {run.rate:,.0f} requests/s ({run.requests} requests in {run.seconds:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--prefill", type=int, default=0)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
