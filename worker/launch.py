"""Starting the worker for `refund-worker run`: logging, the embedded services when unconfigured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from rich.console import Console

from worker.app import Services, build_worker
from worker.infra.embedded import embedded_kafka, embedded_postgres
from worker.settings import Settings, redacted

log = logging.getLogger("worker")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    """The configured broker and database, or embedded ones for as long as the worker runs."""
    with contextlib.ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap_servers
        if bootstrap is None:
            log.info("KAFKA_BOOTSTRAP_SERVERS is unset: starting the embedded broker")
            bootstrap = await asyncio.to_thread(stack.enter_context, embedded_kafka())
        database_url = settings.database_url
        if database_url is None:
            log.info("DATABASE_URL is unset: starting an embedded PostgreSQL (its data lasts this run)")
            database_url = await asyncio.to_thread(stack.enter_context, embedded_postgres())
        log.info("kafka at %s, database at %s", bootstrap, redacted(database_url))
        yield Services(bootstrap, database_url, embedded_kafka=settings.kafka_bootstrap_servers is None)


async def launch(settings: Settings, *, demo: bool) -> None:
    configure_logging("WARNING" if demo else settings.log_level)
    async with services(settings) as found:
        worker = build_worker(settings, found)
        if not demo:
            await worker.app.run()
            return
        from worker.demo import run_demo

        console = Console(width=max(Console().width, 150))
        async with worker.app:
            await run_demo(found.kafka_bootstrap_servers, console)
