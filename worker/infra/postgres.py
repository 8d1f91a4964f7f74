"""The embedded PostgreSQL: a fresh cluster in a private temporary directory, for a laptop and the
tests; its data lasts as long as the context. Under root it runs as `nobody`
(worker/infra/postgres_binaries.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from worker.infra.postgres_binaries import Account, postgres_bin_dir, unprivileged_account
from worker.infra.processes import LOCALHOST, Child, EmbeddedServiceError, start_on_free_port


@contextmanager
def embedded_postgres(*, ready_timeout: float = 60.0) -> Iterator[str]:
    """Run a fresh PostgreSQL cluster; yield `postgresql://postgres@127.0.0.1:PORT/postgres`.

    PostgreSQL refuses to run as root, so under root it runs as the unprivileged user `nobody`.
    """
    account = unprivileged_account()
    with _private_workdir(account) as workdir:
        bin_dir = postgres_bin_dir(account, workdir)
        data_dir = workdir / "data"
        _initdb(bin_dir, data_dir, account, workdir / "initdb.log")
        child = Child("embedded PostgreSQL", workdir / "postgres.log", signal.SIGINT, 15.0)
        as_account = account.popen_arguments() if account else {}

        def spawn(port: int) -> None:
            child.spawn(_postgres_argv(bin_dir, data_dir, port), _postgres_env(), **as_account)

        port = start_on_free_port(child, spawn, _postgres_answers, ready_timeout)
        try:
            yield _postgres_url(port)
        finally:
            child.stop()


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


def _initdb(bin_dir: Path, data_dir: Path, account: Account | None, log_path: Path) -> None:
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


@contextmanager
def _private_workdir(account: Account | None) -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="refund-worker-pg-"))  # mode 0700: ours alone
    try:
        if account is not None:
            os.chown(workdir, account.uid, account.gid)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
