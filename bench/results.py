"""What one benchmark run found, as figures and as the printed report."""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from typing import Any

from bench.ceiling import CeilingRun
from bench.options import Options


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


def report(results: Results) -> None:
    options, summary = results.options, results.summary()
    pace = f"at {options.rate}/s" if options.rate else "all at once"
    wait = options.fetch_max_wait_ms if options.fetch_max_wait_ms is not None else "default"
    latency = summary["latency_ms"]
    print(
        f"run                 {options.requests} requests, {options.partitions} partitions, "
        f"{options.workers} worker(s), batches of {options.batch}, {pace}, "
        f"prefill {options.prefill:,} rows ({results.prefill_seconds:.0f} s), fetch_max_wait_ms {wait}, "
        f"reader wait {options.reader_wait_ms} ms"
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
