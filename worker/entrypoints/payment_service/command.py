"""`refund-worker payment-simulator`: the simulated payment service against a running broker."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from worker.entrypoints.cli_support import fail, settings_or_exit
from worker.entrypoints.payment_service.service import DEFAULT_GROUP

SIMULATOR_FAILED = 1


def payment_simulator(
    group: Annotated[
        str, typer.Option("--group", help="The simulator's consumer group (its offsets are kept there).")
    ] = DEFAULT_GROUP,
) -> None:
    """Answer the worker's payment-refund-instructed on KAFKA_BOOTSTRAP_SERVERS as a simulated payment
    service would, until Ctrl-C. The rule is on the amount's last two digits in minor units: 13 fails
    (50.13 SGD: card expired), 99 is never answered (20.99 SGD: the worker reports it overdue), any
    other succeeds. For trying the worker out, never for production."""
    from aiokafka.errors import KafkaError

    from worker.config.security import kafka_client_options, kafka_security
    from worker.ops.logs import configure_logging

    settings = settings_or_exit()
    if settings.kafka_bootstrap_servers is None:
        raise fail(
            "KAFKA_BOOTSTRAP_SERVERS is not set: the simulator answers the instructions on that broker"
        )
    if not group.strip():
        raise fail("--group must not be blank")
    try:
        options = kafka_client_options(kafka_security(settings))
    except (OSError, ValueError) as error:  # a TLS file missing or unreadable
        raise fail(f"bad Kafka TLS/SASL configuration: {error}") from None
    configure_logging("INFO", settings.log_format)
    consumer_options = {
        name: value
        for name, value in (
            ("session_timeout_ms", settings.kafka_session_timeout_ms),
            ("heartbeat_interval_ms", settings.kafka_heartbeat_interval_ms),
        )
        if value is not None
    }
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it: no traceback
            asyncio.run(
                _serve(
                    settings.kafka_bootstrap_servers,
                    group,
                    settings.topic_partitions,
                    consumer_options,
                    options,
                )
            )
    except KafkaError as error:
        typer.echo(f"refund-worker: payment simulator stopped: {error}", err=True)
        raise typer.Exit(SIMULATOR_FAILED) from None


async def _serve(
    bootstrap: str, group: str, partitions: int, consumer_options: dict[str, int], options: dict[str, object]
) -> None:
    from worker.entrypoints.payment_service.service import PaymentSimulator

    async with PaymentSimulator(
        bootstrap, group_id=group, partitions=partitions, consumer_options=consumer_options, **options
    ) as simulator:
        await simulator.run_until_stopped()
