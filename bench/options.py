"""The benchmark's command line: what one run of bench/throughput.py measures."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from bench.answers import BACKLOG_READER_FETCH_WAIT_MS, READER_FETCH_WAIT_MS


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
    reader_wait_ms: int = READER_FETCH_WAIT_MS
    """The answers' reader's fetch wait: 5 ms at a fixed rate, 50 in a backlog (bench/answers.py)."""


def parse_options(argv: list[str] | None = None, description: str | None = None) -> Options:
    parser = argparse.ArgumentParser(description=description)
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
    parser.add_argument(
        "--reader-wait-ms",
        type=int,
        default=None,
        help="fetch wait of the answers' reader (default: 5 with --rate, 50 in a backlog)",
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
        reader_wait_ms=_reader_wait(args.reader_wait_ms, args.rate),
    )


def _reader_wait(given: int | None, rate: int) -> int:
    if given is not None:
        return given
    return READER_FETCH_WAIT_MS if rate else BACKLOG_READER_FETCH_WAIT_MS
