"""Start-up as patient as steady state.

Before it consumes anything, a worker waits for its database (reachable, and its schema at this
release's head or newer: migrated by the worker itself when MIGRATE_ON_START, by `refund-worker
migrate` otherwise), then for its broker (the topics, the outbox producer, the broker's own
connection). A wait retries with jittered exponential backoff (tenacity's "full jitter") for as
long as the failure is an outage (worker.engine.failures.classify says INFRASTRUCTURE); anything else
(a database that does not exist, refused credentials) is a StartupFailed, one line for the CLI.

A wait is logged once when it starts, at most once a minute while it lasts (or when its reason
changes), and once when it ends; readiness says what start-up waits for (StartupProgress).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from worker.db.migrate import head_revision, known_revisions, schema_revision, upgrade_to_head
from worker.engine.failures import FailureKind, SchemaNotAtHead, StartupFailed, classify, driver_brief
from worker.ops.health import StartupProgress, migration_check

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BACKOFF_SECONDS = 30.0
LOG_EVERY_SECONDS = 60.0

Step = Callable[[], Awaitable[None]]


def is_outage(error: BaseException) -> bool:
    return classify(error) is FailureKind.INFRASTRUCTURE


class StartupWaitLog:
    """One line when a wait starts, at most one every `every` seconds while it lasts (and one when
    its reason changes, e.g. unreachable -> schema behind), one when it ends: no traceback."""

    def __init__(self, what: str, every: float = LOG_EVERY_SECONDS) -> None:
        self._what = what
        self._every = every
        self._since: float | None = None
        self._logged = 0.0
        self._reason: type[BaseException] | None = None
        self.attempts = 0

    def failed(self, error: BaseException, retry_in: float) -> None:
        now = time.monotonic()
        self.attempts += 1
        if self._since is None:
            self._since = self._logged = now
            log.warning(
                "start-up waits for %s: %s; retrying with backoff (next in %.1fs), consuming nothing",
                self._what,
                driver_brief(error),
                retry_in,
            )
        elif now - self._logged >= self._every or type(error) is not self._reason:
            self._logged = now
            log.warning(
                "start-up still waits for %s after %.0fs and %d attempts: %s",
                self._what,
                now - self._since,
                self.attempts,
                driver_brief(error),
            )
        self._reason = type(error)

    def ended(self) -> None:
        if self._since is not None:
            log.warning(
                "%s is there after %.1fs and %d failed attempts; start-up goes on",
                self._what,
                time.monotonic() - self._since,
                self.attempts,
            )


async def patiently(
    what: str, attempt: Callable[[], Awaitable[T]], progress: StartupProgress, *, first_backoff: float
) -> T:
    """`attempt()` until it succeeds, waiting out outages; any other failure is a StartupFailed."""
    outages = StartupWaitLog(what)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if error is not None:
            outages.failed(error, state.upcoming_sleep)
            progress.waiting(what, _reason(error))

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_outage),
        wait=wait_random_exponential(multiplier=max(first_backoff, 0.01), max=MAX_BACKOFF_SECONDS),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        result: T = await retrying(attempt)
    except Exception as error:
        log.debug("start-up failed on %s", what, exc_info=True)
        raise StartupFailed(f"cannot start: {what}: {driver_brief(error)}") from error
    outages.ended()
    return result


def _reason(error: BaseException) -> str:
    # For readiness: the class only (a driver's message may name hosts and users), except our own.
    return str(error) if isinstance(error, SchemaNotAtHead) else type(error).__name__


async def database_at_head(
    engine: AsyncEngine, progress: StartupProgress, *, migrate: bool, first_backoff: float
) -> None:
    """Wait until the database answers with a schema this release can use (migrating it first if
    `migrate`): a worker on a schema that lacks a table or a column would fail every message."""
    head, known = head_revision(), known_revisions()

    async def attempt() -> None:
        if migrate:
            await upgrade_to_head(engine)
        check = migration_check(await schema_revision(engine), head, known)
        if not check.ok:
            raise SchemaNotAtHead(f"schema {check.detail}; run refund-worker migrate")

    progress.doing("connecting to the database")
    await patiently("the database", attempt, progress, first_backoff=first_backoff)


async def broker_connected(steps: Sequence[Step], progress: StartupProgress, *, first_backoff: float) -> None:
    """Run each step once, in order, waiting out outages; a retry resumes at the step that failed
    (a producer already started is not started again)."""
    remaining = list(steps)

    async def attempt() -> None:
        while remaining:
            await remaining[0]()
            remaining.pop(0)

    progress.doing("connecting to the broker")
    with _without_bootstrap_errors():
        await patiently("the broker", attempt, progress, first_backoff=first_backoff)
    progress.broker_connected = True
    progress.doing("joining the consumer group")


class _BootstrapErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to")


@contextlib.contextmanager
def _without_bootstrap_errors() -> Iterator[None]:
    """aiokafka logs an ERROR line for each failed bootstrap, i.e. for every retry of the wait:
    while start-up waits for the broker, StartupWaitLog's lines say it instead, rarely."""
    logger, quiet = logging.getLogger("aiokafka"), _BootstrapErrors()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
