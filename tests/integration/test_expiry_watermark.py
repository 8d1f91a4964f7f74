"""Expiry timers against PostgreSQL alone, with an injected clock: the low watermark, the lock a
renewal takes against the firing, and timers that cannot fire (docs/expiry.md)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.integration.harness import unique
from worker.config.settings import async_database_url
from worker.db.migrate import upgrade_to_head
from worker.db.schema.expiry import expiry_timer_failures, expiry_timers, read_progress
from worker.domain.grace_period import GracePeriod
from worker.domain.timer_verdicts import ExpiryOutcome, RenewalOutcome
from worker.engine.runtime import create_engine
from worker.expiry import firing_store as expiry_store
from worker.expiry import plan as expiry_plan
from worker.expiry import timers as expiry
from worker.expiry.commands import ExpiryCommand, RenewalCommand
from worker.expiry.firing import fire_due_timers
from worker.expiry.read_progress import CaughtUp
from worker.expiry.service import apply_expiry_batch, apply_renewal_batch

GRACE = GracePeriod(28)
EXPIRED_AT = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = EXPIRED_AT + timedelta(days=28)
NOW = DEADLINE + timedelta(days=3)  # every deadline here has passed by the wall clock
PARTITIONS = frozenset({0, 1})


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of this module's own: read progress other tests record must not move its watermark."""
    name = f"refund_watermark_{secrets.token_hex(5)}"
    server = create_async_engine(
        async_database_url(postgres_server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    async with server.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}")))
    try:
        await upgrade_to_head(engine)
        yield engine
    finally:
        await engine.dispose()
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await server.dispose()


@pytest.fixture
async def engine(database: AsyncEngine) -> AsyncEngine:
    """The module's database, emptied: each test starts with no timers and no read progress."""
    async with database.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE expiry_timers, expiry_timer_failures, read_progress, subscription_renewals,"
                " terminations, outbox, inbox CASCADE"
            )
        )
    return database


def expiry_of(subscription_id: str, expired_at: datetime = EXPIRED_AT) -> ExpiryCommand:
    return ExpiryCommand(unique("ce"), b"x", subscription_id, "acc", "res", expired_at, partition=0, offset=0)


def renewal_of(subscription_id: str, renewed_at: datetime, partition: int) -> RenewalCommand:
    return RenewalCommand(unique("ce"), b"x", subscription_id, "acc", "res", renewed_at, partition, offset=0)


async def arm(engine: AsyncEngine, *subscriptions: str) -> None:
    async with engine.begin() as conn:
        results = await apply_expiry_batch(conn, [expiry_of(s) for s in subscriptions], grace=GRACE, now=NOW)
    assert {r.outcome for r in results} == {ExpiryOutcome.DUE}


async def renew(engine: AsyncEngine, command: RenewalCommand) -> RenewalOutcome:
    async with engine.begin() as conn:
        [result] = await apply_renewal_batch(conn, [command], now=NOW)
    assert isinstance(result.outcome, RenewalOutcome)
    return result.outcome


def caught_up(*partitions: int, at: datetime = NOW) -> CaughtUp:
    return CaughtUp(at, PARTITIONS, frozenset(partitions))


class AllRead:
    """A ReadProbe whose broker says every partition is read to its end."""

    async def probe(self) -> CaughtUp:
        return caught_up(*PARTITIONS)

    async def close(self) -> None:
        return None


async def state_of(engine: AsyncEngine, subscription_id: str) -> str:
    async with engine.connect() as conn:
        state = await conn.scalar(
            select(expiry_timers.c.state).where(expiry_timers.c.subscription_id == subscription_id)
        )
    return str(state)


async def test_a_due_timer_waits_until_renewals_are_read_up_to_its_deadline(engine: AsyncEngine) -> None:
    await arm(engine, "sub-renewed", "sub-control")

    # Nothing known of subscription-renewed yet, then partition 1 neither read nor caught up.
    assert (await fire_due_timers(engine, NOW)).watermark is None
    report = await fire_due_timers(engine, NOW, reads=caught_up(0))
    assert (report.watermark, report.claimed) == (None, 0)
    # Partition 1 read up to a renewal of the day before the expiry: still short of the deadline.
    assert await renew(engine, renewal_of("sub-other", EXPIRED_AT - timedelta(days=1), 1)) == "recorded"
    report = await fire_due_timers(engine, NOW, reads=caught_up(0))
    assert (report.watermark, report.claimed) == (EXPIRED_AT - timedelta(days=1), 0)
    assert report.next_due_at == DEADLINE  # the loop knows what it waits for

    # The renewal that was waiting in the backlog arrives, then the group is caught up.
    assert await renew(engine, renewal_of("sub-renewed", EXPIRED_AT + timedelta(days=1), 1)) == "cancelled"
    assert (await fire_due_timers(engine, NOW, reads=caught_up(0))).claimed == 0
    report = await fire_due_timers(engine, NOW, reads=caught_up(0, 1))

    assert report.watermark == NOW
    assert [f.subscription_id for f in report.terminated] == ["sub-control"]
    assert await state_of(engine, "sub-renewed") == "cancelled"


async def test_event_time_read_moves_the_watermark_but_never_past_the_clock(engine: AsyncEngine) -> None:
    await arm(engine, "sub-a")
    await fire_due_timers(engine, NOW, reads=caught_up(0, at=DEADLINE + timedelta(days=1)))
    # Partition 1 shows renewals made after the deadline, one of them dated years ahead.
    await renew(engine, renewal_of("sub-b", DEADLINE - timedelta(seconds=1), 1))
    assert (await fire_due_timers(engine, NOW)).claimed == 0
    await renew(engine, renewal_of("sub-c", NOW + timedelta(days=900), 1))

    report = await fire_due_timers(engine, NOW)

    assert [f.subscription_id for f in report.terminated] == ["sub-a"]
    async with engine.connect() as conn:
        through = await conn.scalar(
            select(read_progress.c.read_through).where(read_progress.c.kafka_partition == 1)
        )
    assert through == NOW
    assert report.watermark == DEADLINE + timedelta(days=1)  # partition 0's caught-up mark


async def test_a_renewal_waits_for_a_firing_of_its_timer_and_is_then_too_late(engine: AsyncEngine) -> None:
    await arm(engine, "sub-1")
    async with engine.begin() as firing:  # what fire_due_timers holds between its claim and commit
        await firing.execute(
            update(expiry_timers)
            .where(expiry_timers.c.subscription_id == "sub-1")
            .values(state="fired", fired_at=NOW, updated_at=NOW)
        )
        renewal = asyncio.create_task(renew(engine, renewal_of("sub-1", EXPIRED_AT + timedelta(days=1), 0)))
        await asyncio.sleep(0.3)
        assert not renewal.done(), "the renewal read the timer without waiting for the firing"

    assert await renewal == RenewalOutcome.TOO_LATE  # never logged as cancelled
    assert await state_of(engine, "sub-1") == "fired"


async def test_a_renewal_in_progress_keeps_the_firing_off_its_timer(engine: AsyncEngine) -> None:
    await arm(engine, "sub-1", "sub-2")
    await fire_due_timers(engine, NOW, reads=caught_up(at=EXPIRED_AT))  # the progress rows exist
    async with engine.begin() as conn:
        [result] = await apply_renewal_batch(
            conn, [renewal_of("sub-1", EXPIRED_AT + timedelta(days=1), 0)], now=NOW
        )
        report = await asyncio.wait_for(fire_due_timers(engine, NOW, reads=caught_up(0, 1)), timeout=5)
        assert [f.subscription_id for f in report.terminated] == ["sub-2"]  # sub-1 skipped, not awaited

    assert result.outcome == RenewalOutcome.CANCELLED
    assert (await fire_due_timers(engine, NOW, reads=caught_up(0, 1))).claimed == 0
    assert await state_of(engine, "sub-1") == "cancelled"


async def _store_bad_timer(engine: AsyncEngine, subscription_id: str, expired_at: str, due_at: str) -> None:
    """A row as an older worker stored it: 0001-01-01T00:00:00Z became -infinity."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO expiry_timers (subscription_id, account_id, reseller_id, expired_at, due_at,"
                " state, expiry_ce_id, updated_at)"
                " VALUES (:id, 'acc', 'res', CAST(CAST(:expired AS text) AS timestamptz),"
                " CAST(CAST(:due AS text) AS timestamptz),"
                " 'pending', :ce, now())"
            ),
            {"id": subscription_id, "expired": expired_at, "due": due_at, "ce": f"ce-{subscription_id}"},
        )


def warnings_about_parking(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "cannot fire and is set aside" in r.getMessage()
    ]


async def test_a_timer_that_cannot_fire_is_set_aside_once_and_the_others_fire(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    await _store_bad_timer(engine, "sub-infinite", "-infinity", "0001-01-29 00:00:00+00")
    await _store_bad_timer(engine, "sub-bc", "0001-12-01 00:00:00+00 BC", "0001-12-29 00:00:00+00 BC")
    await arm(engine, "sub-good")

    timers = expiry.ExpiryTimers(engine, check_seconds=1, clock=lambda: NOW, probe=AllRead())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="worker.expiry"):
        assert await timers.fire_all() == 1  # the loop's own round: it returns, nothing pending
        report = await fire_due_timers(engine, NOW, reads=caught_up(0, 1))

    assert report.claimed == 0  # the set-aside are not claimed again
    assert report.next_due_at is None  # nor waited for
    assert await state_of(engine, "sub-good") == "fired"
    async with engine.connect() as conn:
        failures = dict(
            (
                await conn.execute(
                    select(expiry_timer_failures.c.subscription_id, expiry_timer_failures.c.error)
                )
            ).all()
        )
    assert set(failures) == {"sub-infinite", "sub-bc"}
    assert all(failures.values())
    assert len(warnings_about_parking(caplog)) == 2


async def test_a_timer_whose_firing_fails_alone_is_set_aside_and_the_batch_fires(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await arm(engine, "sub-1", "sub-broken", "sub-3")
    build: Callable[..., Any] = expiry_plan.terminated_event

    def failing_for_one(due: Any, now: datetime) -> Any:
        if due.subscription_id == "sub-broken":
            raise ValueError("cannot build its event")
        return build(due, now)

    monkeypatch.setattr(expiry_store, "terminated_event", failing_for_one)
    with caplog.at_level(logging.WARNING, logger="worker.expiry"):
        report = await fire_due_timers(engine, NOW, reads=caught_up(0, 1))

    assert sorted(f.subscription_id for f in report.terminated) == ["sub-1", "sub-3"]
    assert [(p.subscription_id, p.error) for p in report.parked] == [
        ("sub-broken", "ValueError: cannot build its event")
    ]
    assert await state_of(engine, "sub-broken") == "pending"  # still there, set aside by its expiry
    assert (await fire_due_timers(engine, NOW, reads=caught_up(0, 1))).claimed == 0
