"""The worker's Prometheus metrics: every name in one place, fed by hooks where things happen.

The pipeline reports through `PipelineObserver` (worker/engine/observer.py) and the composition root
hands decisions to `record_decisions`, so neither the pipeline nor the domain imports a metric.
Gauges that describe shared state (the outbox, the expiry timers, the consumer's lag) are read
when Prometheus scrapes, so they are as fresh as the scrape and cost nothing between scrapes.
Each source is read on its own: a database that does not answer leaves its gauges at their last
values and sets `dependency_up{dependency="database"}` to 0, while the broker's lag is still read
(and the other way round); `gauges_refreshed_timestamp_seconds` says how old each source's are.
Every counter series whose labels are known in advance is exported at 0 from the start, so an
alert on `increase()` fires on the first event after a start, not the second.

Every worker reports the outbox and expiry gauges of the one shared database: aggregate them
across instances with max(), never sum(). Consumer lag is per assigned partition: sum() is fine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
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

from schemas.topics import INPUT_TOPICS
from worker.db.tables import expiry_timers, outbox
from worker.engine.failures import FailureKind
from worker.engine.observer import PipelineObserver
from worker.engine.outage import OutageLog
from worker.engine.records import InboundRecord
from worker.expiry.store import due_clause
from worker.terminations.commands import CommandResult, Outcome

log = logging.getLogger(__name__)

PREFIX = "refund_worker"

# Handling a batch takes milliseconds when all is well and tens of seconds while the database is
# away (the pipeline waits it out), so the buckets span both.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# What the gauges are read from; each is also a `dependency` of refund_worker_dependency_up.
DATABASE, BROKER = "database", "broker"
SOURCES = (DATABASE, BROKER)

# Every `reason` worker.engine.failures.failure_reason gives (tests/unit/test_observability.py checks).
DEAD_LETTER_REASONS = (
    "not_json",
    "invalid_envelope",
    "invalid_data",
    "domain_refused",
    "idempotency_conflict",
    "retries_exhausted",
    "poison",
    "unexpected",
)


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
            "Messages in a failed attempt, by failure kind (worker/engine/failures.py): poison counts each "
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
            "Log end offset minus the group's committed offset, per partition assigned to this worker.",
            ["topic", "partition"],
            registry=r,
        )
        self.dependency_up = Gauge(
            f"{PREFIX}_dependency_up",
            "1 when the last scrape reached the dependency (database: the gauges' query answered; "
            "broker: a ping and the lag read answered), 0 when it did not or before the first scrape.",
            ["dependency"],
            registry=r,
        )
        self.refreshed = Gauge(
            f"{PREFIX}_gauges_refreshed_timestamp_seconds",
            "Unix time the gauges read from this source were last refreshed; 0 before the first time.",
            ["source"],
            registry=r,
        )
        meanwhile = "its gauges keep their last values until it answers"
        self._outages = {
            source: OutageLog(f"{source} (metrics)", meanwhile=meanwhile, logger=log) for source in SOURCES
        }
        self._export_known_series()

    def _export_known_series(self) -> None:
        """Every series whose labels are known before the first event, at 0 (currencies are not
        known in advance: their series appear with their first refund)."""
        for topic in (topic.value for topic in INPUT_TOPICS):
            self.consumed.labels(topic)
            self.batch_seconds.labels(topic)
            for kind in FailureKind:
                self.failed.labels(topic, kind.value)
            for reason in DEAD_LETTER_REASONS:
                self.dead_lettered.labels(topic, reason)
        for outcome in Outcome:
            self.decisions.labels(outcome.value)
        for source in SOURCES:
            self.dependency_up.labels(source)
            self.refreshed.labels(source)

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
        """Read the gauges' current values, each source on its own and each within `within` seconds."""

        async def lag() -> dict[tuple[str, int], int]:
            if not await broker.ping(within):
                raise ConnectionError("the broker did not answer a ping")
            return await read_consumer_lag(_consumers(broker))

        await self.refresh_from(database=lambda: read_database_gauges(engine), broker=lag, within=within)

    async def refresh_from(
        self,
        *,
        database: Callable[[], Awaitable[DatabaseGauges]],
        broker: Callable[[], Awaitable[dict[tuple[str, int], int]]],
        within: float,
    ) -> None:
        """Refresh from both sources at once; one that fails or is slow leaves its gauges as they
        were and marks its dependency down, without holding up the other."""
        await asyncio.gather(
            self._refresh(DATABASE, database, self._set_database_gauges, within),
            self._refresh(BROKER, broker, self._set_consumer_lag, within),
        )

    async def _refresh(
        self, source: str, read: Callable[[], Awaitable[Any]], store: Callable[[Any], None], within: float
    ) -> None:
        try:
            async with asyncio.timeout(within):
                found = await read()
        except Exception as error:  # noqa: BLE001 - a scrape must still answer while a source is away
            self.dependency_up.labels(source).set(0)
            self._outages[source].failed(error)
            return
        store(found)
        self.dependency_up.labels(source).set(1)
        self.refreshed.labels(source).set_to_current_time()
        self._outages[source].ended()

    def _set_database_gauges(self, state: DatabaseGauges) -> None:
        self.outbox_backlog.set(state.outbox_backlog)
        self.outbox_oldest_age.set(state.outbox_oldest_age_seconds)
        self.expiry_timers_due.set(state.expiry_timers_due)

    def _set_consumer_lag(self, lags: dict[tuple[str, int], int]) -> None:
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
        log_dead_letter(record, reason, kind)


def log_dead_letter(record: InboundRecord, reason: str, kind: FailureKind) -> None:
    """One WARNING per dead letter, once the broker has it, with what finds it in `refund-worker dlq`."""
    fields = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": _text(record.key),
        "ce_id": _text(dict(record.headers).get("ce_id")),
        "reason": reason,
        "kind": kind.value,
    }
    log.warning(
        "dead-lettered %s[%d]@%d to its dead-letter topic: %s",
        record.topic,
        record.partition,
        record.offset,
        reason,
        extra=fields,
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


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
    due = select(func.count()).where(due_clause(func.now()))
    return int(await conn.scalar(due) or 0)


async def read_consumer_lag(consumers: Iterable[AIOKafkaConsumer]) -> dict[tuple[str, int], int]:
    """For each assigned partition: the log end offset minus the group's committed offset (the
    earliest offset where the group has committed nothing yet, as `auto_offset_reset=earliest`).

    Committed, not the consumer's position: while the database is away the position runs ahead
    over the batch in hand, but nothing is committed, and the lag must say so."""
    lags: dict[tuple[str, int], int] = {}
    for consumer in consumers:
        assigned = sorted(consumer.assignment())
        if not assigned:
            continue
        ends: dict[TopicPartition, int] = await consumer.end_offsets(assigned)
        committed = dict(zip(assigned, await asyncio.gather(*map(consumer.committed, assigned)), strict=True))
        never = [partition for partition in assigned if committed[partition] is None]
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(never) if never else {}
        for partition in assigned:
            done = committed[partition]
            lags[(partition.topic, partition.partition)] = max(
                ends[partition] - (starts[partition] if done is None else done), 0
            )
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
