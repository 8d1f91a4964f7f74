"""The composition root: the one place that builds the worker from its settings."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.topics import Topic
from worker.adjustments.service import adjustment_applier
from worker.config.security import database_connect_args, kafka_client_options, kafka_security
from worker.config.settings import Settings
from worker.credit_notes.service import credit_note_applier
from worker.domain.grace_period import GracePeriod
from worker.domain.money_refund_facts import SettlementTimeout
from worker.domain.policy import RefundPolicy
from worker.engine.clock import utc_now
from worker.engine.observer import ObserverGroup
from worker.engine.outage import RetryPolicy
from worker.engine.outbox import OutboxRelay
from worker.engine.parsing import (
    adjustment_command,
    credit_note_command,
    expiry_command,
    money_refund_command,
    renewal_command,
    settlement_command,
    termination_command,
)
from worker.engine.pipeline import BatchPipeline
from worker.engine.runtime import ProducerSender, create_engine, create_producer, release_engine
from worker.engine.startup import broker_connected, database_at_head
from worker.engine.topics_admin import ensure_topics
from worker.expiry.read_progress import ReadProbe
from worker.expiry.service import expiry_applier, renewal_applier
from worker.expiry.timers import ExpiryTimers
from worker.handlers.batch import Processor
from worker.handlers.inputs import consumer_options, subscribe_inputs
from worker.handlers.outputs import declare_outputs
from worker.money_refunds.overdue_timer import OverdueReports
from worker.money_refunds.service import money_refund_applier
from worker.money_refunds.settlement_service import settlement_applier
from worker.ops.health import Routes, StartupProgress, http_routes
from worker.ops.liveness import Liveness
from worker.ops.metrics import WorkerMetrics
from worker.terminations.service import termination_applier


@dataclass(frozen=True, slots=True)
class Services:
    """Where the broker and the database are, once the embedded ones (if any) have started."""

    kafka_bootstrap_servers: str
    database_url: str
    embedded_kafka: bool = False


@dataclass
class Worker:
    app: FastStream
    broker: KafkaBroker
    engine: AsyncEngine
    relay: OutboxRelay
    timers: ExpiryTimers
    metrics: WorkerMetrics
    http_routes: Routes
    """/health/live, /health/ready and /metrics, served by worker.ops.health.HttpServer."""
    startup: StartupProgress
    """What start-up waits for (the database, its schema, the broker), as readiness reports it."""
    overdue: OverdueReports


def build_worker(settings: Settings, services: Services) -> Worker:
    clock = utc_now  # the one wall clock: every decision and timer reads the time from it
    metrics = WorkerMetrics()
    liveness = Liveness(
        stall_seconds=settings.liveness_stall_seconds, blocked_seconds=settings.liveness_loop_blocked_seconds
    )
    observer = ObserverGroup(metrics.observer(), liveness)
    security = None if services.embedded_kafka else kafka_security(settings)
    kafka_options = kafka_client_options(security)
    engine = create_engine(
        services.database_url,
        pool_size=settings.database_pool_size,
        connect_args=database_connect_args(settings),
    )
    producer = create_producer(services.kafka_bootstrap_servers, **kafka_options)
    send_all = ProducerSender(producer)
    relay = OutboxRelay(engine, send_all, source=settings.ce_source, batch_size=settings.outbox_batch_size)
    retry = RetryPolicy(
        unexpected_attempts=settings.retry_attempts, backoff_seconds=settings.retry_backoff_seconds
    )
    # Every input's pipeline shares the engine, the producer, the group, the retry policy and the
    # observer; they differ in how a record is read, applied, and what wakes after a commit.
    pipeline = functools.partial(
        BatchPipeline,
        engine=engine,
        send_all=send_all,
        consumer_group=settings.consumer_group,
        retry=retry,
        observer=observer,
    )
    # The timers fire on what the group has read: the expiry timers of subscription-renewed
    # (docs/expiry.md), the overdue money refunds of payment-refund-settled (docs/money-refunds.md).
    probe = functools.partial(
        ReadProbe,
        services.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        clock=clock,
        **kafka_options,
    )
    timers = ExpiryTimers(
        engine,
        check_seconds=settings.expiry_check_seconds,
        after_fire=relay.wake,
        clock=clock,
        probe=probe(topic=Topic.SUBSCRIPTION_RENEWED.value),
    )
    overdue = OverdueReports(
        engine,
        check_seconds=settings.money_refund_check_seconds,
        after_report=relay.wake,
        on_reported=metrics.record_overdue,
        clock=clock,
        probe=probe(topic=Topic.PAYMENT_REFUND_SETTLED.value),
    )

    def money_refund_committed() -> None:
        relay.wake()
        overdue.wake()  # an instruction due sooner than the next look, or a settlement read to a deadline

    broker = KafkaBroker(
        services.kafka_bootstrap_servers,
        client_id="refund-worker",
        logger=None,
        security=security,
        middlewares=[metrics.faststream_middleware()],
    )
    inputs: dict[Topic, Processor] = {
        Topic.TERMINATION_REQUESTED: pipeline(
            parse=termination_command,
            apply=termination_applier(
                RefundPolicy(window_days=settings.refund_window_days),
                metrics.record_decisions,
                clock=clock,
                publish=relay.publish,  # from memory once committed (worker/engine/outbox.py)
            ),
        ),
        Topic.SUBSCRIPTION_EXPIRED: pipeline(
            parse=expiry_command,
            apply=expiry_applier(GracePeriod(settings.expiry_grace_days), clock=clock),
            after_commit=timers.wake,  # an expiry past its deadline fires once the renewals are read to it
        ),
        Topic.SUBSCRIPTION_RENEWED: pipeline(
            parse=renewal_command,
            apply=renewal_applier(clock=clock),
            after_commit=timers.wake,  # the renewals read so far may let due timers fire
        ),
        Topic.BALANCE_ADJUSTMENT_REQUESTED: pipeline(
            parse=adjustment_command,
            apply=adjustment_applier(metrics.record_adjustments, clock=clock),
            after_commit=relay.wake,
        ),
        # Requests before settlements: a batch of both stores an instruction before its settlement is
        # judged (worker/money_refunds/settlement_service.py).
        Topic.MONEY_REFUND_REQUESTED: pipeline(
            parse=money_refund_command,
            apply=money_refund_applier(
                SettlementTimeout(settings.money_refund_timeout_hours),
                metrics.record_money_refunds,
                clock=clock,
            ),
            after_commit=money_refund_committed,
        ),
        Topic.PAYMENT_REFUND_SETTLED: pipeline(
            parse=settlement_command,
            apply=settlement_applier(metrics.record_settlements, clock=clock),
            after_commit=money_refund_committed,
        ),
        Topic.CREDIT_NOTE_ISSUED: pipeline(
            parse=credit_note_command,
            apply=credit_note_applier(metrics.record_credit_notes, clock=clock),
            after_commit=relay.wake,
        ),
    }
    subscribe_inputs(broker, inputs, consumer_options(settings, embedded_kafka=services.embedded_kafka))
    declare_outputs(broker)
    specification = AsyncAPI(
        broker,
        title="refund-worker",
        version="1.0.0",
        description="Turns subscription terminations into refunds, credit notes and credit changes.",
    )
    app = FastStream(broker, logger=logging.getLogger("worker"), specification=specification)
    background: list[asyncio.Task[None]] = []

    startup = StartupProgress()

    @app.on_startup
    async def prepare() -> None:
        """Consume nothing until the database answers at this release's schema and the broker answers:
        a missing schema or service is waited out (worker/engine/startup.py), never taken for poison."""
        backoff = settings.retry_backoff_seconds
        await database_at_head(engine, startup, migrate=settings.migrate_on_start, first_backoff=backoff)

        async def topics() -> None:
            await ensure_topics(
                services.kafka_bootstrap_servers, partitions=settings.topic_partitions, **kafka_options
            )

        async def connect_broker() -> None:
            await broker.connect()  # what broker.start() would do first, here with the waiting

        await broker_connected([topics, producer.start, connect_broker], startup, first_backoff=backoff)

    @app.after_startup
    async def start_relay() -> None:
        relay.start(settings.outbox_poll_seconds)
        background.append(asyncio.create_task(timers.run(), name="expiry-timers"))
        background.append(asyncio.create_task(overdue.run(), name="overdue-money-refunds"))
        background.append(asyncio.create_task(liveness.watch_loop(), name="liveness-heartbeat"))
        startup.started = True

    @app.on_shutdown
    async def stop_background() -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)  # each ends by its cancellation

    @app.after_shutdown
    async def release() -> None:
        await relay.drain()  # the consumers have stopped: what they committed leaves now, once
        await producer.stop()
        await release_engine(engine)

    routes = http_routes(
        metrics=metrics,
        engine=engine,
        broker=broker,
        timeout=settings.health_check_timeout_seconds,
        liveness=liveness,
        startup=startup,
    )
    return Worker(app, broker, engine, relay, timers, metrics, routes, startup, overdue)
