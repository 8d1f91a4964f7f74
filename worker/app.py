"""The composition root: the one place that builds the worker from its settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.topics import Topic
from worker.domain.expiry import GracePeriod
from worker.domain.policy import RefundPolicy
from worker.expiry import ExpiryTimers, expiry_applier, renewal_applier
from worker.failures import IdempotencyConflict, PoisonMessage
from worker.handlers.inputs import subscribe_inputs
from worker.handlers.outputs import declare_outputs
from worker.health import Liveness, Routes, StartupProgress, http_routes
from worker.infra import TANSU_GROUP_SETTINGS
from worker.observability import WorkerMetrics
from worker.outbox import OutboxRelay
from worker.parsing import expiry_command, renewal_command, termination_command
from worker.pipeline import Applied, Apply, BatchPipeline, ObserverGroup, RetryPolicy
from worker.read_progress import ReadProbe
from worker.runtime import ProducerSender, create_engine, create_producer
from worker.security import database_connect_args, kafka_client_options, kafka_security
from worker.settings import Settings
from worker.startup import broker_connected, database_at_head
from worker.terminations import CommandResult, Outcome, TerminationCommand, apply_termination_batch
from worker.topics_admin import ensure_topics

log = logging.getLogger("worker.decisions")

KAFKA_GROUP_TIMING = {"session_timeout_ms": 10000, "heartbeat_interval_ms": 3000}


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
    """/health/live, /health/ready and /metrics, served by worker.health.HttpServer."""
    startup: StartupProgress
    """What start-up waits for (the database, its schema, the broker), as readiness reports it."""


def build_worker(settings: Settings, services: Services) -> Worker:
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
    terminations = BatchPipeline(
        engine=engine,
        parse=termination_command,
        apply=termination_applier(
            RefundPolicy(window_days=settings.refund_window_days), metrics.record_decisions
        ),
        send_all=send_all,
        consumer_group=settings.consumer_group,
        retry=retry,
        observer=observer,
        after_commit=relay.wake,
    )
    # The timers fire on what the group has read of subscription-renewed (docs/expiry.md).
    read_probe = ReadProbe(
        services.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        topic=Topic.SUBSCRIPTION_RENEWED.value,
        **kafka_options,
    )
    timers = ExpiryTimers(
        engine, check_seconds=settings.expiry_check_seconds, after_fire=relay.wake, probe=read_probe
    )
    expired = BatchPipeline(
        engine=engine,
        parse=expiry_command,
        apply=expiry_applier(GracePeriod(settings.expiry_grace_days)),
        send_all=send_all,
        consumer_group=settings.consumer_group,
        retry=retry,
        observer=observer,
        after_commit=timers.wake,  # an expiry past its deadline fires once the renewals are read to it
    )
    renewed = BatchPipeline(
        engine=engine,
        parse=renewal_command,
        apply=renewal_applier(),
        send_all=send_all,
        consumer_group=settings.consumer_group,
        retry=retry,
        observer=observer,
        after_commit=timers.wake,  # the renewals read so far may let due timers fire
    )
    broker = KafkaBroker(
        services.kafka_bootstrap_servers,
        client_id="refund-worker",
        logger=None,
        security=security,
        middlewares=[metrics.faststream_middleware()],
    )
    inputs: dict[Topic, BatchPipeline[Any]] = {
        Topic.TERMINATION_REQUESTED: terminations,
        Topic.SUBSCRIPTION_EXPIRED: expired,
        Topic.SUBSCRIPTION_RENEWED: renewed,
    }
    subscribe_inputs(broker, inputs, consumer_options(settings, services))
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
        a missing schema or service is waited out (worker/startup.py), never taken for poison."""
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
        background.append(asyncio.create_task(relay.run(settings.outbox_poll_seconds), name="outbox-relay"))
        background.append(asyncio.create_task(timers.run(), name="expiry-timers"))
        background.append(asyncio.create_task(liveness.watch_loop(), name="liveness-heartbeat"))
        startup.started = True

    @app.on_shutdown
    async def stop_relay() -> None:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @app.after_shutdown
    async def release() -> None:
        await producer.stop()
        await engine.dispose()

    routes = http_routes(
        metrics=metrics,
        engine=engine,
        broker=broker,
        timeout=settings.health_check_timeout_seconds,
        liveness=liveness,
        startup=startup,
    )
    return Worker(
        app=app,
        broker=broker,
        engine=engine,
        relay=relay,
        timers=timers,
        metrics=metrics,
        http_routes=routes,
        startup=startup,
    )


def consumer_options(settings: Settings, services: Services) -> dict[str, Any]:
    timing = TANSU_GROUP_SETTINGS if services.embedded_kafka else KAFKA_GROUP_TIMING
    return {
        "group_id": settings.consumer_group,
        "auto_offset_reset": "earliest",
        "max_records": settings.batch_max_records,
        "batch_timeout_ms": settings.batch_timeout_ms,
        "session_timeout_ms": settings.kafka_session_timeout_ms or timing["session_timeout_ms"],
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms or timing["heartbeat_interval_ms"],
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
    }


def termination_applier(
    policy: RefundPolicy, on_decisions: Callable[[Sequence[CommandResult]], None]
) -> Apply[TerminationCommand]:
    """`on_decisions` sees the results once committed (metrics); each decision is logged then too."""

    def committed(results: Sequence[CommandResult]) -> None:
        _log_decisions(results)
        on_decisions(results)

    async def apply(conn: AsyncConnection, commands: Sequence[TerminationCommand]) -> Applied:
        results = await apply_termination_batch(conn, commands, policy=policy, now=datetime.now(UTC))
        conflicts: list[tuple[int, PoisonMessage]] = [
            (index, IdempotencyConflict(_conflict_message(result.command)))
            for index, result in enumerate(results)
            if result.outcome is Outcome.CONFLICT
        ]
        return Applied(conflicts, on_commit=lambda: committed(results))

    return apply


def _log_decisions(results: Sequence[CommandResult]) -> None:
    """One line per decision, once it is committed."""
    for result in results:
        if result.outcome is Outcome.CONFLICT:
            continue  # the dead-lettering logs it
        command, decision = result.command, result.decision
        why = result.rejection.code if result.rejection else decision.no_refund_reason if decision else None
        fields = {
            "outcome": result.outcome.value,
            "subscription_id": command.subscription_id,
            "account_id": command.account_id,
            "ce_id": command.request_id,
            "amount": str(decision.amount) if decision else None,
            "currency": decision.amount.currency.code if decision else None,
            "rule": decision.rule.value if decision and decision.rule else None,
            "reason": str(why) if why else None,
        }
        log.info("decision %s", result.outcome.value, extra=fields)


def _conflict_message(command: TerminationCommand) -> str:
    return (
        f"ce_id {command.request_id!r} was processed before with another payload; "
        "a new request needs a new ce_id"
    )
