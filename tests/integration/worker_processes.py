"""`refund-worker run` in child processes, as it runs in production: started, stopped, killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from worker.infra.processes import LOCALHOST, free_port

TopicPartitions = frozenset[tuple[str, int]]

_LAG_SERIES = "refund_worker_consumer_lag{"


def worker_env(
    kafka_bootstrap: str, database_url: str, group: str, group_settings: dict[str, int], **more: str
) -> dict[str, str]:
    """The environment of a worker of `group` (variables as in the contract; `more` added as given)."""
    return {
        **_with_bytecode_cache(os.environ),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "CONSUMER_GROUP": group,
        "KAFKA_SESSION_TIMEOUT_MS": str(group_settings["session_timeout_ms"]),
        "KAFKA_HEARTBEAT_INTERVAL_MS": str(group_settings["heartbeat_interval_ms"]),
        "OUTBOX_POLL_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
        **more,
    }


def _with_bytecode_cache(env: Mapping[str, str]) -> dict[str, str]:
    """Under PYTHONDONTWRITEBYTECODE (set on some shared machines) every worker process compiled
    all its modules afresh: about 8 s of CPU per start instead of 2 on the 2-core machine. The
    children keep their bytecode in a directory of the system's temporary files instead."""
    if not env.get("PYTHONDONTWRITEBYTECODE"):
        return dict(env)
    cache = os.path.join(tempfile.gettempdir(), "refund-worker-tests-pycache")
    children = {name: value for name, value in env.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {"PYTHONPYCACHEPREFIX": cache, **children}


class WorkerProcess:
    """One worker process. With `metrics=True` it serves /metrics on a port of its own, from which
    `assignment()` reads the partitions the group gave it; with `log` its stderr goes there."""

    def __init__(self, env: dict[str, str], *, metrics: bool = False, log: Path | None = None) -> None:
        self._env = dict(env)
        self._log = log
        self.metrics_port = free_port() if metrics else 0
        if metrics:
            self._env.update(METRICS_HOST=LOCALHOST, METRICS_PORT=str(self.metrics_port))
        self._process: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> None:
        output = self._log.open("ab") if self._log else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                env=self._env,
                stdout=subprocess.DEVNULL,
                stderr=output,
            )
        finally:
            if self._log and not isinstance(output, int):
                output.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the process stays, but neither works nor heartbeats, like a frozen VM."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)

    def terminate(self, within: float = 15) -> int:
        """SIGTERM, as an orchestrator stops a worker; its exit status once it has stopped."""
        assert self._process is not None
        self._process.terminate()
        return self._process.wait(timeout=within)

    def stop(self) -> None:
        if self.running:
            if self.paused:
                self.resume()  # a stopped process would not see SIGTERM until continued
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()

    async def assignment(self) -> TopicPartitions | None:
        """The partitions assigned to this worker, by its consumer-lag gauge; None if not answering."""
        url = f"http://{LOCALHOST}:{self.metrics_port}/metrics"
        try:
            text = await asyncio.to_thread(_get, url)
        except OSError:
            return None
        return frozenset(_lag_partition(line) for line in text.splitlines() if line.startswith(_LAG_SERIES))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
        return body.decode()


def _lag_partition(line: str) -> tuple[str, int]:
    """`refund_worker_consumer_lag{partition="2",topic="x"} 0.0` -> ("x", 2)."""
    labels = dict(
        pair.split("=", 1) for pair in line[len(_LAG_SERIES) : line.index("}")].split(",") if "=" in pair
    )
    return labels["topic"].strip('"'), int(labels["partition"].strip('"'))
