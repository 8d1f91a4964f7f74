"""The worker's Prometheus metrics: every name in one place, fed by hooks where things happen.

The pipeline reports through `PipelineObserver` (worker/pipeline.py) and the composition root
hands decisions to `record_decisions`, so neither the pipeline nor the domain imports a metric.
Gauges that describe shared state (the outbox, the expiry timers, the consumer's lag) are read
when Prometheus scrapes, so they are as fresh as the scrape and cost nothing between scrapes.

Every worker reports the outbox and expiry gauges of the one shared database: aggregate them
across instances with max(), never sum(). Consumer lag is per assigned partition: sum() is fine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.db.tables import expiry_timers, outbox
from worker.failures import FailureKind
from worker.pipeline import PipelineObserver
from worker.records import InboundRecord
from worker.terminations import CommandResult, Outcome

log = logging.getLogger(__name__)

PREFIX = "refund_worker"

# Handling a batch takes milliseconds when all is well and tens of seconds while the database is
# away (the pipeline waits it out), so the buckets span both.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class WorkerMetrics:
    """The metrics of one worker, in a registry of its own (tests run several workers in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or _registry_with_process_metrics()
        r = self.registry
        self.consumed = Counter(
            f"{PREFIX}_messages_consumed", "Input messages handled and committed.", ["topic"], registry=r
        )
        self.failed = Counter(
            f"{PREFIX}_messages_failed",
            "Messages in a failed attempt, by failure kind (worker/failures.py): poison counts each "
            "poison message once; contention, infrastructure and unexpected count every message of "
            "each attempt that failed so and was retried.",
            ["topic", "kind"],
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{PREFIX}_dead_lettered", "Messages sent to <topic>-dlt.", ["topic", "reason"], registry=r
        )
        self.refunds_issued = Counter(
            f"{PREFIX}_refunds_issued", "Refunds above zero decided.", ["currency", "method"], registry=r
        )
        self.refunded_amount = Counter(
            f"{PREFIX}_refunded_amount",
            "Sum of refunds decided, in the currency's major unit (exact minor units converted at the edge).",
            ["currency"],
            registry=r,
        )
        self.decisions = Counter(
            f"{PREFIX}_decisions", "Termination requests decided, by outcome.", ["outcome"], registry=r
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_seconds",
            "Time to handle one batch: parse, decide and commit, dead-letter.",
            ["topic"],
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.outbox_backlog = Gauge(
            f"{PREFIX}_outbox_backlog", "Outbox rows not yet published (whole database).", registry=r
        )
        self.outbox_oldest_age = Gauge(
            f"{PREFIX}_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row; 0 when none.",
            registry=r,
        )
        self.expiry_timers_due = Gauge(
            f"{PREFIX}_expiry_timers_due",
            "Pending expiry timers whose deadline has passed (whole database).",
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "Log end offset minus this worker's position, per partition assigned to it.",
            ["topic", "partition"],
            registry=r,
        )

    def faststream_middleware(self) -> KafkaPrometheusMiddleware:
        """FastStream's own consume/publish metrics (refund_worker_received_messages_total, ...)."""
        return KafkaPrometheusMiddleware(
            registry=self.registry, app_name="refund-worker", metrics_prefix=PREFIX
        )

    def observer(self) -> MetricsObserver:
        return MetricsObserver(self)

    def record_decisions(self, results: Iterable[CommandResult]) -> None:
        """Count committed decisions; a refund's amount goes from exact minor units to a float here only."""
        for result in results:
            self.decisions.labels(result.outcome.value).inc()
            decision = result.decision
            if result.outcome is not Outcome.TERMINATED or decision is None or not decision.refundable:
                continue
            currency = decision.amount.currency.code
            method = decision.method.value if decision.method else "none"
            self.refunds_issued.labels(currency, method).inc()
            self.refunded_amount.labels(currency).inc(float(decision.amount.to_decimal()))

    async def refresh(self, engine: AsyncEngine, broker: KafkaBroker, *, within: float) -> None:
        """Read the gauges' current values; on failure the previous values stay and the error is logged."""
        try:
            async with asyncio.timeout(within):
                state = await read_database_gauges(engine)
                lags = await read_consumer_lag(_consumers(broker))
        except Exception as error:  # noqa: BLE001 - a scrape must still answer while the database is away
            log.warning("metrics: could not read current state (%s: %s)", type(error).__name__, error)
            return
        self.outbox_backlog.set(state.outbox_backlog)
        self.outbox_oldest_age.set(state.outbox_oldest_age_seconds)
        self.expiry_timers_due.set(state.expiry_timers_due)
        self.consumer_lag.clear()  # partitions taken away by a rebalance must disappear
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)


class MetricsObserver(PipelineObserver):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
        for topic, count in _per_topic(records).items():
            self._metrics.consumed.labels(topic).inc(count)
            self._metrics.batch_seconds.labels(topic).observe(seconds)

    def attempt_failed(self, records: Sequence[InboundRecord], kind: FailureKind) -> None:
        for topic, count in _per_topic(records).items():
            self._metrics.failed.labels(topic, kind.value).inc(count)

    def dead_lettered(self, record: InboundRecord, reason: str, kind: FailureKind) -> None:
        self._metrics.dead_lettered.labels(record.topic, reason).inc()
        if kind is FailureKind.POISON:  # the other kinds were counted at each failed attempt
            self._metrics.failed.labels(record.topic, kind.value).inc()


@dataclass(frozen=True, slots=True)
class DatabaseGauges:
    outbox_backlog: int
    outbox_oldest_age_seconds: float
    expiry_timers_due: int


async def read_database_gauges(engine: AsyncEngine) -> DatabaseGauges:
    async with engine.connect() as conn:
        backlog, oldest_age = (
            await conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.extract("epoch", func.now() - func.min(outbox.c.created_at)), 0),
                ).where(outbox.c.sent_at.is_(None))
            )
        ).one()
        due = await _expiry_timers_due(conn)
    return DatabaseGauges(int(backlog), float(oldest_age), due)


async def _expiry_timers_due(conn: AsyncConnection) -> int:
    # A database whose migrations are behind may not have the table yet: nothing is due then.
    exists = await conn.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": expiry_timers.name})
    if not exists:
        return 0
    due = select(func.count()).where(expiry_timers.c.state == "pending", expiry_timers.c.due_at <= func.now())
    return int(await conn.scalar(due) or 0)


async def read_consumer_lag(consumers: Iterable[AIOKafkaConsumer]) -> dict[tuple[str, int], int]:
    """For each assigned partition: the broker's log end offset minus the consumer's position."""
    lags: dict[tuple[str, int], int] = {}
    for consumer in consumers:
        assigned = list(consumer.assignment())
        if not assigned:
            continue
        ends: dict[TopicPartition, int] = await consumer.end_offsets(assigned)
        for partition in assigned:
            position = await consumer.position(partition)
            lags[(partition.topic, partition.partition)] = max(ends[partition] - position, 0)
    return lags


def _consumers(broker: KafkaBroker) -> list[AIOKafkaConsumer]:
    found: list[Any] = [getattr(subscriber, "consumer", None) for subscriber in broker.subscribers]
    return [consumer for consumer in found if isinstance(consumer, AIOKafkaConsumer)]


def _per_topic(records: Sequence[InboundRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.topic] = counts.get(record.topic, 0) + 1
    return counts


def _registry_with_process_metrics() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry
