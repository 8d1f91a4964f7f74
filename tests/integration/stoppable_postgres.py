"""A private PostgreSQL server that a test stops and starts again, as an operator restarting the
database would: same port, same data. Built on worker.infra.postgres.embedded_postgres; blocking, so async
tests call its methods through asyncio.to_thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

from worker.infra.postgres import embedded_postgres

_READY_TIMEOUT = 60.0


class StoppablePostgres:
    def __init__(self) -> None:
        self._server = embedded_postgres()
        self.url = ""
        self._data = Path()
        self._restarted: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StoppablePostgres:
        self.url = self._server.__enter__()
        self._data = Path(asyncio.run(self._fetch("SHOW data_directory")))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if self._restarted is not None and self._restarted.poll() is None:
                self.stop()
        finally:
            self._server.__exit__(kind, error, trace)  # stops the first server if still running

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, as `pg_ctl stop -m fast` does."""
        pid_file = self._data / "postmaster.pid"
        os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)
        deadline = time.monotonic() + _READY_TIMEOUT
        while pid_file.exists():  # removed by the server as its very last step
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not stop")
            time.sleep(0.02)
        if self._restarted is not None:
            self._restarted.wait()

    def start(self) -> None:
        """Start the server again with the command line it last ran with (postmaster.opts)."""
        argv = shlex.split((self._data / "postmaster.opts").read_text())
        owner = self._data.stat()
        as_owner: dict[str, Any] = (
            {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []} if os.geteuid() == 0 else {}
        )
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        self._restarted = subprocess.Popen(  # the command line the server recorded itself
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**env, "LC_ALL": "C"},
            start_new_session=True,
            **as_owner,
        )
        asyncio.run(self._wait_until_ready())

    async def _fetch(self, query: str) -> Any:
        connection = await asyncpg.connect(self.url, timeout=5)
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    async def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            try:
                await self._fetch("SELECT 1")
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def stoppable_postgres() -> AsyncIterator[StoppablePostgres]:
    """StoppablePostgres for async tests: started and removed off the event loop."""
    server = StoppablePostgres()
    await asyncio.to_thread(server.__enter__)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.__exit__, None, None, None)
