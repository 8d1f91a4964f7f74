"""Start-up waits: an outage is retried until it ends, logged when it starts, rarely while it lasts
and when it ends; anything else stops start-up with one line; readiness says what it waits for."""

from __future__ import annotations

import logging

import pytest

from worker.engine.failures import SchemaNotAtHead, StartupFailed
from worker.engine.startup import StartupWaitLog, broker_connected, patiently
from worker.ops.health import Check, StartupProgress


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "worker.engine.startup" and r.levelno >= logging.WARNING
    ]


async def test_an_outage_is_retried_until_it_ends_and_logged_once_at_each_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = [ConnectionRefusedError(111, "refused")] * 5
    progress = StartupProgress()
    seen: list[Check] = []

    async def attempt() -> str:
        if failures:
            seen.append(progress.check())
            raise failures.pop()
        return "connected"

    with caplog.at_level(logging.INFO, logger="worker.engine.startup"):
        assert await patiently("the database", attempt, progress, first_backoff=0.001) == "connected"

    lines = warnings(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("start-up waits for the database: ConnectionRefusedError")
    assert lines[1].startswith("the database is there after")
    assert "5 failed attempts" in lines[1]
    assert seen[-1] == Check(False, "waiting for the database (ConnectionRefusedError)")


async def test_what_no_wait_can_fix_stops_start_up_with_one_line() -> None:
    async def attempt() -> None:
        raise ValueError("no")

    with pytest.raises(StartupFailed, match=r"^cannot start: the broker: ValueError: no$"):
        await patiently("the broker", attempt, StartupProgress(), first_backoff=0.001)


def test_a_long_outage_is_logged_again_only_when_its_reason_changes_or_a_while_has_passed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = StartupWaitLog("the database", every=3600)
    with caplog.at_level(logging.INFO, logger="worker.engine.startup"):
        for _ in range(20):
            outage.failed(ConnectionRefusedError(111, "refused"), retry_in=1.0)
        for _ in range(20):
            outage.failed(SchemaNotAtHead("schema behind: no schema yet, head is 0004"), retry_in=1.0)
        outage.ended()

    lines = warnings(caplog)
    assert len(lines) == 3, lines
    assert "after 0s and 21 attempts: SchemaNotAtHead: schema behind" in lines[1]
    assert "40 failed attempts" in lines[2]


async def test_a_broker_step_that_succeeded_is_not_repeated_when_a_later_one_fails() -> None:
    calls: list[str] = []
    refusals = [ConnectionRefusedError(111, "refused")]

    async def topics() -> None:
        calls.append("topics")

    async def producer() -> None:
        calls.append("producer")
        if refusals:
            raise refusals.pop()

    progress = StartupProgress()
    await broker_connected([topics, producer], progress, first_backoff=0.001)

    assert calls == ["topics", "producer", "producer"]
    assert progress.broker_connected
    assert not progress.check().ok  # ready only once the consumers have joined (after_startup)
