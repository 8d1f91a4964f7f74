"""Waiting out a dependency that is away: the retry policy, jittered backoff, and an outage's few log
lines (as it starts, now and then while it lasts, when it ends)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.engine.failures import (
    brief,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    unexpected_attempts: int = 3
    contention_attempts: int = 20
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2 ** max(attempt - 1, 0), self.max_backoff_seconds))


class OutageLog:
    """The log of a dependency being away: one WARNING as it starts (the error's class and first
    line, no traceback), at most one every `remind_seconds` while it lasts, one when it ends. A
    70 s outage costs three lines, not one per retry (retries come every few hundred milliseconds)."""

    def __init__(
        self,
        service: str,
        *,
        meanwhile: str,
        remind_seconds: float = 60.0,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._meanwhile = meanwhile
        self._remind_seconds = remind_seconds
        self._log = logger
        self._clock = clock
        self.attempts = 0
        self._since = self._reminded = 0.0

    def failed(self, error: BaseException, *, traceback: bool = False) -> None:
        """One more failed attempt; `traceback` adds the error's traceback to the first line only."""
        now = self._clock()
        self.attempts += 1
        fields = {"dependency": self._service, "error": brief(error), "attempts": self.attempts}
        if self.attempts == 1:
            self._since = self._reminded = now
            self._log.warning(
                "%s unavailable (%s); %s",
                self._service,
                brief(error),
                self._meanwhile,
                extra=fields,
                exc_info=error if traceback else None,
            )
        elif now - self._reminded >= self._remind_seconds:
            self._reminded = now
            down = round(now - self._since, 1)
            self._log.warning(
                "%s still unavailable after %.0fs and %d failed attempts (%s)",
                self._service,
                down,
                self.attempts,
                brief(error),
                extra={**fields, "down_seconds": down},
            )

    def ended(self) -> None:
        if not self.attempts:
            return
        down = round(self._clock() - self._since, 1)
        self._log.warning(
            "%s is back after %.1fs and %d failed attempts; resuming",
            self._service,
            down,
            self.attempts,
            extra={"dependency": self._service, "attempts": self.attempts, "down_seconds": down},
        )
        self.attempts = 0


def jittered(delay: float) -> float:
    """A delay between half and all of `delay`, so workers that failed together do not retry in step."""
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - spreading retries, not cryptography


class Outage:
    """Waiting out a service that is away, with jittered exponential backoff; logged by `OutageLog`
    (as it starts, now and then while it lasts, when it ends)."""

    def __init__(
        self,
        service: str,
        retry: RetryPolicy,
        *,
        meanwhile: str = "pausing and retrying with backoff; nothing is dead-lettered for it",
        logger: logging.Logger = log,
    ) -> None:
        self._retry = retry
        self._log = OutageLog(service, meanwhile=meanwhile, logger=logger)

    def failed(self, error: BaseException, *, traceback: bool = False) -> float:
        """Count and log a failed attempt; returns how long to wait before the next."""
        self._log.failed(error, traceback=traceback)
        return jittered(self._retry.backoff(self._log.attempts))

    async def wait(self, error: BaseException) -> None:
        await asyncio.sleep(self.failed(error))

    def ended(self) -> None:
        self._log.ended()
