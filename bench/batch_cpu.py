"""The worker's own CPU per termination request, in-process, without a broker:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
      ./dev python -m bench.batch_cpu [--batch 500] [--batches 12] [--profile]

Parses the requests as the pipeline does, applies each batch in a transaction and commits it
through the worker's termination applier, and relays the committed events from memory (to a
broker that takes them and does nothing). Prints the process CPU time per request of each step
(the first two batches are warm-up) and the peak RSS; `--profile` prints cProfile's top functions.
bench/throughput.py measures the whole worker; this splits its Python between the steps.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import resource
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from bench.services import fresh_database
from bench.statements import REQUESTED, request
from schemas.envelope import binary_headers
from schemas.topics import TOPICS, Topic
from worker.db.migrate import upgrade_to_head
from worker.domain.policy import RefundPolicy
from worker.engine.outbox import OutboxRelay
from worker.engine.parsing import termination_command
from worker.engine.records import InboundRecord, OutboundRecord
from worker.engine.runtime import create_engine
from worker.entrypoints.launch import tune_garbage_collector
from worker.ops.logs import configure_logging
from worker.terminations.service import termination_applier

WARM_UP = 2


async def _take(_records: Sequence[OutboundRecord]) -> None:
    return None


def _records(count: int) -> list[InboundRecord]:
    ce_type = TOPICS[Topic.TERMINATION_REQUESTED].ce_type
    now, run = datetime.now(UTC), secrets.token_hex(3)
    records = []
    for index in range(count):
        ce_id, key, value = request(index, run, 2000)
        headers = binary_headers(event_id=ce_id, source="/bench", ce_type=ce_type, time=now)
        records.append(InboundRecord(REQUESTED, index % 8, index, key, value, tuple(headers), 0))
    return records


async def measure(
    server_url: str, batch: int, batches: int, profile: cProfile.Profile | None
) -> dict[str, float]:
    spent = {"parse": 0.0, "apply and commit": 0.0, "relay": 0.0}
    async with fresh_database(server_url) as url:
        engine = create_engine(url)
        await upgrade_to_head(engine)
        relay = OutboxRelay(engine, _take, source="/bench", batch_size=2000)
        apply = termination_applier(RefundPolicy(window_days=14), lambda _: None, publish=relay.publish)
        records = _records(batch * batches)
        await relay.relay_due()  # the start-up claim, of an empty table
        tune_garbage_collector()  # as `refund-worker run` does once it is built
        for number in range(batches):
            if profile is not None and number == WARM_UP:
                profile.enable()
            started = time.process_time()
            commands = [termination_command(r) for r in records[number * batch : (number + 1) * batch]]
            parsed = time.process_time()
            async with engine.begin() as conn:
                applied = await apply(conn, commands)
            applied.on_commit()
            committed = time.process_time()
            await relay.relay_due()
            relayed = time.process_time()
            if number >= WARM_UP:
                spent["parse"] += parsed - started
                spent["apply and commit"] += committed - parsed
                spent["relay"] += relayed - committed
        if profile is not None:
            profile.disable()
        await engine.dispose()
    measured = batch * (batches - WARM_UP)
    return {step: seconds / measured * 1e6 for step, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    configure_logging("INFO")
    for handler in logging.getLogger().handlers:  # formatted, as in the worker, but not shown
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - open for the whole run
    profile = cProfile.Profile() if options.profile else None
    steps = asyncio.run(
        measure(os.environ["DATABASE_URL"], options.batch, max(options.batches, WARM_UP + 1), profile)
    )
    for step, micros in steps.items():
        print(f"{step:18} {micros:7.1f} us/request")
    print(f"{'total':18} {sum(steps.values()):7.1f} us/request")
    print(f"peak RSS           {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
