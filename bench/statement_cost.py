"""PostgreSQL's cost of each statement the worker issues for a batch of terminations:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
      ./dev python -m bench.statement_cost [--requests 20000] [--batch 500] [--prefill N]

Captures the worker's statements as the raw ceiling does (bench/statements.py), replays them from
one asyncpg connection, and sums per statement the server process's CPU time (Linux /proc, in
clock ticks, so only sums over many batches mean anything) and the wall time seen by the client
(on an otherwise quiet machine mostly the server's work). Prints µs per request of each, largest
first: where PostgreSQL's CPU per request goes, and what a change to one statement could save.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Sequence

import asyncpg

from bench.ceiling import prefilled_database, record_run
from bench.statements import Copy, RecordedBatch, Replayer, Step

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _name(step: Step) -> str:
    if isinstance(step, Copy):
        return f"COPY {step.table}"
    words = " ".join(step.sql.split())
    return words[:90]


async def costs(database_url: str, recorded: Sequence[RecordedBatch]) -> dict[str, list[float]]:
    """By statement: [server CPU seconds, client wall seconds], over every batch."""
    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    conn = await asyncpg.connect(database_url)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        for sql in os.environ.get("BENCH_BEFORE_SQL", "").split(";"):
            if sql.strip():
                await conn.execute(sql)  # an experiment: e.g. a constraint dropped, an index added
        replayer = Replayer(conn)
        for batch in recorded:
            for steps in (batch.apply, batch.relay):
                if steps:
                    await _timed(conn, pid, "BEGIN", spent, conn.execute("BEGIN"))
                    for step in steps:
                        await _timed(conn, pid, _name(step), spent, replayer.run(step))
                    await _timed(conn, pid, "COMMIT", spent, conn.execute("COMMIT"))
    finally:
        await conn.close()
    return spent


async def _timed(
    conn: asyncpg.Connection, pid: int, name: str, spent: dict[str, list[float]], work: Awaitable[object]
) -> None:
    cpu, wall = _cpu(pid), time.perf_counter()
    await work
    spent[name][0] += _cpu(pid) - cpu
    spent[name][1] += time.perf_counter() - wall


async def _main(options: argparse.Namespace) -> None:
    async with prefilled_database(options.prefill) as database_url:
        recorded = await record_run(
            database_url, "cost", requests=options.requests, batch=options.batch, accounts=2000
        )
        spent = await costs(database_url, recorded)
    per_request = 1e6 / options.requests
    run = f"{options.requests} requests in batches of {options.batch}, prefill {options.prefill}"
    print(f"{'server CPU':>10} {'wall':>8}  µs per request; {run}")
    for name, (cpu, wall) in sorted(spent.items(), key=lambda item: -item[1][1]):
        print(f"{cpu * per_request:10.1f} {wall * per_request:8.1f}  {name}")
    cpu_total = sum(cpu for cpu, _ in spent.values())
    wall_total = sum(wall for _, wall in spent.values())
    print(f"{cpu_total * per_request:10.1f} {wall_total * per_request:8.1f}  total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--prefill", type=int, default=0)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
