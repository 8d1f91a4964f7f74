"""The worker's HTTP side: /health/live, /health/ready and /metrics on METRICS_PORT.

Built from the ecosystem's parts: FastStream serves the app over ASGI (`FastStream.as_asgi`, its
`get` handlers), uvicorn is the server, and prometheus-client renders the metrics. The HTTP
server shares the worker's event loop, so readiness checks the very engine and broker the worker
uses, and a loop that stopped answering fails liveness too.

The server listens from the first moment, before the app starts (uvicorn's lifespan is off;
HttpServer.serve starts and stops the app itself): while start-up waits for the database, its
schema or the broker (worker.engine.startup), liveness answers and readiness says what it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from faststream import FastStream
from faststream.asgi import AsgiResponse, get
from faststream.asgi.response import JSONResponse
from faststream.asgi.types import ASGIApp, Receive, Scope, Send
from faststream.kafka import KafkaBroker
from prometheus_client import make_asgi_app
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db.migrate import head_revision, known_revisions, schema_revision
from worker.ops.metrics import WorkerMetrics

if TYPE_CHECKING:
    from worker.ops.liveness import Liveness

log = logging.getLogger(__name__)

Routes = list[tuple[str, ASGIApp]]

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
METRICS_PATH = "/metrics"


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


def migration_check(current: str | None, head: str | None, known: frozenset[str]) -> Check:
    """Whether the schema suits this release: at its head, or newer (a later release migrated first,
    and migrations only ever add, so this one keeps working until it is replaced)."""
    if current == head:
        return Check(True, "ok")
    if current is None:
        return Check(False, f"behind: no schema yet, head is {head}")
    if current in known:
        return Check(False, f"behind: at {current}, head is {head}")
    return Check(True, f"ok: at {current}, newer than this release's head {head}")


class StartupProgress:
    """What start-up is doing or waiting for (worker.engine.startup), for readiness to tell."""

    def __init__(self) -> None:
        self._doing = "starting"
        self.broker_connected = False
        self.started = False

    def waiting(self, what: str, reason: str) -> None:
        self._doing = f"waiting for {what} ({reason})"

    def doing(self, what: str) -> None:
        self._doing = what

    def check(self) -> Check:
        return Check(True, "ok") if self.started else Check(False, self._doing)


class Readiness:
    """Ready = start-up is done, the database answers, its schema is at this release's head (or
    newer), the broker answers."""

    def __init__(
        self,
        engine: AsyncEngine,
        broker: KafkaBroker,
        timeout: float,
        startup: StartupProgress | None = None,
    ) -> None:
        self._engine = engine
        self._broker = broker
        self._timeout = timeout
        self._startup = startup
        self._head = head_revision()
        self._known = known_revisions()

    async def checks(self) -> dict[str, Check]:
        (database, migrations), broker = await asyncio.gather(self._database(), self._broker_check())
        checks = {"database": database, "migrations": migrations, "broker": broker}
        return checks if self._startup is None else {"startup": self._startup.check(), **checks}

    async def _database(self) -> tuple[Check, Check]:
        try:
            async with asyncio.timeout(self._timeout):
                current = await schema_revision(self._engine)
        except Exception as error:  # noqa: BLE001 - any failure to answer is "unreachable"
            return Check(False, f"unreachable ({_name(error)})"), Check(False, "unknown")
        return Check(True, "ok"), migration_check(current, self._head, self._known)

    async def _broker_check(self) -> Check:
        if self._startup is not None and not self._startup.broker_connected:
            return Check(False, "not connected yet")  # ping needs the connection start-up makes
        if await self._broker.ping(self._timeout):
            return Check(True, "ok")
        return Check(False, "unreachable")


def _name(error: BaseException) -> str:
    # The class only: a driver's message may quote host names, users or worse.
    return "timeout" if isinstance(error, TimeoutError) else type(error).__name__


def http_routes(
    *,
    metrics: WorkerMetrics,
    engine: AsyncEngine,
    broker: KafkaBroker,
    timeout: float,
    liveness: Liveness | None = None,
    startup: StartupProgress | None = None,
) -> Routes:
    readiness = Readiness(engine, broker, timeout, startup)

    @get(include_in_schema=False)
    async def live(scope: Scope) -> AsgiResponse:
        """The event loop answers, and the consumer is not stuck (Liveness): 200, or 503 saying why."""
        check = Check(True, "alive") if liveness is None else liveness.check()
        if check.ok:
            return JSONResponse({"status": "alive"})
        return JSONResponse({"status": "stuck", "detail": check.detail}, status_code=503)

    @get(include_in_schema=False)
    async def ready(scope: Scope) -> AsgiResponse:
        """Ready to work: 200, or 503 naming what is missing."""
        checks = await readiness.checks()
        ok = all(check.ok for check in checks.values())
        body = {"status": "ready" if ok else "not ready", "checks": {k: c.detail for k, c in checks.items()}}
        return JSONResponse(body, status_code=200 if ok else 503)

    render = make_asgi_app(metrics.registry)

    async def metrics_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await metrics.gauges.refresh(engine, broker, within=timeout)
        await render(scope, receive, send)

    return [(LIVE_PATH, live), (READY_PATH, ready), (METRICS_PATH, metrics_endpoint)]


class HttpServer:
    """uvicorn serving the routes on a socket bound beforehand (see `bind`: a port in use fails
    before anything starts); `serve` starts the worker's app, runs it and stops it."""

    def __init__(
        self, app: FastStream, routes: Routes, host: str, port: int, *, sock: socket.socket | None = None
    ) -> None:
        self._app = app
        self._socket = sock or bind(host, port)
        # lifespan off: the app starts beside the server, not before it listens.
        config = uvicorn.Config(
            app.as_asgi(asgi_routes=routes), lifespan="off", log_config=None, access_log=False
        )
        self._server = _Server(config)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    async def serve(self) -> None:
        """Until SIGTERM/SIGINT, or until start-up fails (its error is raised then)."""
        starting = asyncio.create_task(self._app.start(), name="worker-start-up")
        starting.add_done_callback(self._stop_unless_started)
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()
            starting.cancel()  # a signal during a start-up wait: stop waiting
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([starting])
            await self._app.stop()  # also releases what a cancelled or failed start-up opened
        if not starting.cancelled() and (error := starting.exception()) is not None:
            raise error

    def _stop_unless_started(self, starting: asyncio.Task[None]) -> None:
        if starting.cancelled() or starting.exception() is not None:
            self._server.should_exit = True

    def stop(self) -> None:
        self._server.should_exit = True


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        message = f"cannot listen on {host}:{port} (METRICS_PORT): {error.strerror}"
        raise OSError(error.errno, message) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, but on SIGTERM/SIGINT it only stops serving: it does not re-raise the signal after
    shutdown (its default), so the caller's cleanup (embedded services) still runs."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
