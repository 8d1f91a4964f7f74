"""Starting the worker for `refund-worker run`: logging, the embedded services when unconfigured."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator

from rich.console import Console

from worker.app import Services, Worker, build_worker
from worker.config.settings import Settings, redacted
from worker.engine.failures import StartupFailed
from worker.infra.extra import EXTRA_MISSING, embedded_services_installed
from worker.infra.postgres import embedded_postgres
from worker.infra.tansu import TANSU_GROUP_SETTINGS, embedded_kafka
from worker.ops.health import HttpServer, bind
from worker.ops.logs import configure_logging

log = logging.getLogger("worker")


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    """The configured broker and database, or embedded ones for as long as the worker runs."""
    unconfigured = settings.kafka_bootstrap_servers is None or settings.database_url is None
    if unconfigured and not embedded_services_installed():
        raise StartupFailed(EXTRA_MISSING)
    with contextlib.ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap_servers
        if bootstrap is None:
            # WARNING: in production an unset variable is a mistake, and this is its only sign.
            log.warning(
                "KAFKA_BOOTSTRAP_SERVERS is unset: starting the embedded broker (its data lasts this run)"
            )
            bootstrap = await asyncio.to_thread(stack.enter_context, embedded_kafka())
        database_url = settings.database_url
        if database_url is None:
            log.warning("DATABASE_URL is unset: starting an embedded PostgreSQL (its data lasts this run)")
            database_url = await asyncio.to_thread(stack.enter_context, embedded_postgres())
        log.info("kafka at %s, database at %s", bootstrap, redacted(database_url))
        yield Services(bootstrap, database_url, embedded_kafka=settings.kafka_bootstrap_servers is None)


async def launch(settings: Settings, *, demo: bool) -> None:
    configure_logging("WARNING" if demo else settings.log_level, settings.log_format)
    sock = None if demo else listen(settings)  # first: a taken port fails before anything starts
    async with services(settings) as found:
        worker = build_worker(settings, found)
        tune_garbage_collector()
        if not demo:
            await serve(worker, settings, sock)
            return
        from worker.entrypoints.demo import run_demo

        console = Console(width=max(Console().width, 150))
        async with worker.app:
            group_settings = TANSU_GROUP_SETTINGS if found.embedded_kafka else None
            await run_demo(found.kafka_bootstrap_servers, console, group_settings=group_settings)


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections: a batch allocates thousands of short-lived objects, and the
    default thresholds ran the collector often enough to cost ~15% of a request's time. Objects
    alive now (modules, the app) are moved out of the collector's sight for good."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def listen(settings: Settings) -> socket.socket | None:
    """The HTTP port, bound now; None when METRICS_PORT is 0. A port another process holds (a
    second worker on the host) is a StartupFailed: the CLI prints one line and exits 2."""
    if settings.metrics_port == 0:
        return None
    try:
        return bind(settings.metrics_host, settings.metrics_port)
    except OSError as error:
        raise StartupFailed(f"{error.strerror}; set METRICS_PORT to a free port, or 0 for none") from None


async def serve(worker: Worker, settings: Settings, sock: socket.socket | None) -> None:
    """Run until SIGTERM/SIGINT: with the HTTP server (metrics, probes) unless METRICS_PORT is 0."""
    if sock is None:
        await worker.app.run()
        return
    server = HttpServer(
        worker.app, worker.http_routes, settings.metrics_host, settings.metrics_port, sock=sock
    )
    log.info("metrics and health on %s:%d", settings.metrics_host, server.port)
    await server.serve()
