"""The embedded services' child processes: started on a free port of 127.0.0.1, probed until they
answer, stopped on leaving (also when the body raises).

The context managers built on this are synchronous so that the command line and pytest session
fixtures can use them alike. They never touch the caller's event loop (the readiness probes run on
a loop of their own in a helper thread); code already inside a loop can enter them with
`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

LOCALHOST: Final = "127.0.0.1"

_START_ATTEMPTS: Final = 3  # a free port can be taken by someone else before the child binds it
_PROBE_INTERVAL_SECONDS: Final = 0.02


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started."""


class _ExitedDuringStartup(EmbeddedServiceError):
    """The child died before it was ready, most likely because its port was taken meanwhile."""


@dataclass(slots=True)
class Child:
    name: str
    log_path: Path
    stop_signal: signal.Signals
    stop_grace_seconds: float
    process: subprocess.Popen[bytes] = field(init=False)

    def spawn(self, argv: list[str], env: dict[str, str], **popen_arguments: Any) -> None:
        with self.log_path.open("ab") as output:
            # A session of its own: a Ctrl-C in the terminal reaches the worker, which then stops
            # the child after draining, instead of the child vanishing under the draining worker.
            self.process = subprocess.Popen(  # noqa: S603 (argv is ours, no shell)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **popen_arguments,
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(self.stop_grace_seconds)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, self.stop_grace_seconds)
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start_on_free_port(
    child: Child,
    spawn: Callable[[int], None],
    answers: Callable[[int], Awaitable[bool]],
    ready_timeout: float,
) -> int:
    """Spawn the child on a free port until it answers there; returns the port."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        log.info("starting %s on %s:%d", child.name, LOCALHOST, port)
        started = time.monotonic()
        spawn(port)
        try:
            _wait_until_ready(child, functools.partial(answers, port), ready_timeout)
        except _ExitedDuringStartup:
            if attempt == _START_ATTEMPTS:
                raise
            log.warning("%s exited during startup; retrying on another port", child.name)
            continue
        except BaseException:
            child.stop()
            raise
        log.info("%s ready on %s:%d in %.2f s", child.name, LOCALHOST, port, time.monotonic() - started)
        return port
    raise AssertionError("unreachable: the last attempt returns or raises")


def _wait_until_ready(child: Child, answers: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + timeout
        while not await answers():
            status = child.process.poll()
            if status is not None:
                raise _ExitedDuringStartup(
                    f"{child.name} exited with status {status} during startup:\n{child.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"{child.name} not ready after {timeout:.0f} s:\n{child.log_tail()}"
                )
            await asyncio.sleep(_PROBE_INTERVAL_SECONDS)

    # The caller may be inside a running event loop; a thread of our own keeps asyncio.run legal.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-ready") as pool:
        pool.submit(asyncio.run, poll()).result()


async def port_accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(LOCALHOST, port)
    except OSError:
        return False
    writer.close()
    return True
