"""The gauges of shared state, read when Prometheus scrapes: the outbox, the expiry timers, the open
money refunds, the consumer's lag, and whether each source answered.

They are as fresh as the scrape and cost nothing between scrapes. Each source is read on its own:
a database that does not answer leaves its gauges at their last values and sets
`dependency_up{dependency="database"}` to 0, while the broker's lag is still read (and the other
way round); `gauges_refreshed_timestamp_seconds` says how old each source's are. What is read is
worker/ops/gauge_sources.py.

Every worker reports the outbox, expiry and money refund gauges of the one shared database: aggregate them
across instances with max(), never sum(). Consumer lag is per assigned partition: sum() is fine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.engine.outage import OutageLog
from worker.ops.gauge_sources import (
    DatabaseGauges,
    Lags,
    consumers_of,
    read_consumer_lag,
    read_database_gauges,
)

# The metrics' logger since before the modules were split: log routing may name it.
log = logging.getLogger("worker.ops.observability")

PREFIX = "refund_worker"

# What the gauges are read from; each is also a `dependency` of refund_worker_dependency_up.
DATABASE, BROKER = "database", "broker"
SOURCES = (DATABASE, BROKER)


class ScrapedGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
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
        self.money_refunds_open = Gauge(
            f"{PREFIX}_money_refunds_open",
            "Money refunds instructed and not settled by the payment service yet (whole database).",
            registry=r,
        )
        self.money_refunds_oldest_open_age = Gauge(
            f"{PREFIX}_money_refunds_oldest_open_age_seconds",
            "How long the oldest open money refund has waited for its settlement; 0 when none.",
            registry=r,
        )
        self.money_refunds_overdue = Gauge(
            f"{PREFIX}_money_refunds_overdue",
            "Open money refunds past MONEY_REFUND_TIMEOUT_HOURS without a settlement (whole database).",
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
        for source in SOURCES:  # exported at 0 from the start
            self.dependency_up.labels(source)
            self.refreshed.labels(source)

    async def refresh(self, engine: AsyncEngine, broker: KafkaBroker, *, within: float) -> None:
        """Read the gauges' current values, each source on its own and each within `within` seconds."""

        async def lag() -> Lags:
            if not await broker.ping(within):
                raise ConnectionError("the broker did not answer a ping")
            return await read_consumer_lag(consumers_of(broker))

        await self.refresh_from(database=lambda: read_database_gauges(engine), broker=lag, within=within)

    async def refresh_from(
        self,
        *,
        database: Callable[[], Awaitable[DatabaseGauges]],
        broker: Callable[[], Awaitable[Lags]],
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
        self.money_refunds_open.set(state.money_refunds.open)
        self.money_refunds_oldest_open_age.set(state.money_refunds.oldest_open_age_seconds)
        self.money_refunds_overdue.set(state.money_refunds.overdue)

    def _set_consumer_lag(self, lags: Lags) -> None:
        self.consumer_lag.clear()  # partitions taken away by a rebalance must disappear
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
