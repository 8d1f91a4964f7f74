"""The expiry use case in PostgreSQL alone (no broker), with an injected clock: an expiry's timer,
what cancels it, and its firing once the deadline has passed and the renewals are read up to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.inputs import TerminationRequested
from tests.databases import migrated_engine
from tests.integration.harness import termination_data, unique
from tests.stored_events import stored_events
from worker.db.inbox import Redelivery
from worker.db.schema.expiry import expiry_timers
from worker.db.schema.metadata import complete_metadata
from worker.db.schema.refunds import terminations
from worker.domain.grace_period import GracePeriod
from worker.domain.policy import RefundPolicy
from worker.domain.timer_verdicts import ExpiryOutcome, RenewalOutcome
from worker.engine.failures import IdempotencyConflict
from worker.engine.parsing import payload_digest
from worker.engine.wire_to_domain import termination_terms
from worker.expiry.commands import ExpiryCommand, RenewalCommand
from worker.expiry.firing import FireReport, fire_due_timers
from worker.expiry.read_progress import CaughtUp
from worker.expiry.service import apply_expiry_batch, apply_renewal_batch, expiry_applier
from worker.expiry.timers import ExpiryTimers
from worker.terminations.commands import Outcome, TerminationCommand
from worker.terminations.service import apply_termination_batch

GRACE = GracePeriod(28)
EXPIRED_AT = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = EXPIRED_AT + timedelta(days=28)
BEFORE = EXPIRED_AT + timedelta(days=1)  # when the expiry arrives: its deadline is ahead
AFTER = DEADLINE + timedelta(hours=1)
PARTITIONS = frozenset({0, 1})


@pytest.fixture(scope="module")
async def database(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(postgres_server_url, prefix="refund_svc_expiry") as engine:
        yield engine


@pytest.fixture
async def engine(database: AsyncEngine) -> AsyncEngine:
    """The module's database, emptied: read progress another test recorded must not move the watermark."""
    async with database.begin() as conn:
        # The ledger's append-only triggers refuse TRUNCATE; a test database's owner may step round them.
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(f"TRUNCATE {', '.join(t.name for t in complete_metadata().sorted_tables)}"))
    return database


def expiry_of(subscription_id: str, ce_id: str | None = None, payload: bytes = b"x") -> ExpiryCommand:
    return ExpiryCommand(ce_id or unique("ce"), payload, subscription_id, "acc", "res", EXPIRED_AT, 0, 0)


def renewal_of(subscription_id: str, renewed_at: datetime) -> RenewalCommand:
    return RenewalCommand(unique("ce"), b"x", subscription_id, "acc", "res", renewed_at, 1, 0)


async def arm(engine: AsyncEngine, subscription_id: str) -> None:
    async with engine.begin() as conn:
        [result] = await apply_expiry_batch(conn, [expiry_of(subscription_id)], grace=GRACE, now=BEFORE)
    assert (result.outcome, result.due_at) == (ExpiryOutcome.ARMED, DEADLINE)


async def renew(engine: AsyncEngine, subscription_id: str, renewed_at: datetime) -> RenewalOutcome:
    async with engine.begin() as conn:
        [result] = await apply_renewal_batch(conn, [renewal_of(subscription_id, renewed_at)], now=BEFORE)
    assert isinstance(result.outcome, RenewalOutcome)
    return result.outcome


def all_read(at: datetime) -> CaughtUp:
    """What the broker says when the group has read every partition of subscription-renewed at `at`."""
    return CaughtUp(at, PARTITIONS, PARTITIONS)


async def fire(engine: AsyncEngine, now: datetime) -> FireReport:
    return await fire_due_timers(engine, now, reads=all_read(now))


async def state_of(engine: AsyncEngine, subscription_id: str) -> tuple[str, str | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(expiry_timers.c.state, expiry_timers.c.cancelled_by).where(
                    expiry_timers.c.subscription_id == subscription_id
                )
            )
        ).one()
    return row.state, row.cancelled_by


async def terminations_of(engine: AsyncEngine, subscription_id: str) -> list[tuple[str, int]]:
    """(cause, events published for the subscription) of each termination of it."""
    async with engine.connect() as conn:
        causes = (
            await conn.scalars(
                select(terminations.c.cause).where(terminations.c.subscription_id == subscription_id)
            )
        ).all()
        published = await conn.scalar(
            select(func.count())
            .select_from(stored_events)
            .where(stored_events.c.topic == "subscription-terminated", stored_events.c.key == subscription_id)
        )
    return [(cause, int(published or 0)) for cause in causes]


async def test_a_timer_fires_nothing_before_its_deadline_and_terminates_once_after_it(
    engine: AsyncEngine,
) -> None:
    await arm(engine, "sub-1")

    early = await fire(engine, DEADLINE - timedelta(seconds=1))
    assert (early.claimed, early.terminated, early.next_due_at) == (0, (), DEADLINE)
    assert await state_of(engine, "sub-1") == ("pending", None)

    report = await fire(engine, AFTER)
    assert [(f.subscription_id, f.due_at) for f in report.terminated] == [("sub-1", DEADLINE)]
    again = await fire(engine, AFTER + timedelta(days=1))
    assert (again.claimed, again.terminated, again.next_due_at) == (0, (), None)

    assert await state_of(engine, "sub-1") == ("fired", None)
    assert await terminations_of(engine, "sub-1") == [("expired", 1)]


async def test_a_timer_past_its_deadline_waits_until_every_partition_is_read_up_to_it(
    engine: AsyncEngine,
) -> None:
    await arm(engine, "sub-1")

    assert (await fire_due_timers(engine, AFTER)).watermark is None  # nothing known of the reads
    one_read = await fire_due_timers(engine, AFTER, reads=CaughtUp(AFTER, PARTITIONS, frozenset({0})))
    assert (one_read.watermark, one_read.claimed) == (None, 0)
    stale = await fire_due_timers(engine, AFTER, reads=all_read(DEADLINE - timedelta(seconds=1)))
    assert (stale.watermark, stale.claimed) == (DEADLINE - timedelta(seconds=1), 0)

    assert [f.subscription_id for f in (await fire(engine, AFTER)).terminated] == ["sub-1"]


async def test_a_renewal_inside_the_grace_period_cancels_the_timer(engine: AsyncEngine) -> None:
    await arm(engine, "sub-1")

    assert await renew(engine, "sub-1", EXPIRED_AT + timedelta(days=5)) == RenewalOutcome.CANCELLED
    report = await fire(engine, AFTER)

    assert (report.claimed, report.terminated) == (0, ())
    assert await state_of(engine, "sub-1") == ("cancelled", "renewal")
    assert await terminations_of(engine, "sub-1") == []


async def test_a_renewal_at_the_deadline_is_too_late_and_the_timer_fires(engine: AsyncEngine) -> None:
    await arm(engine, "sub-1")

    assert await renew(engine, "sub-1", DEADLINE) == RenewalOutcome.TOO_LATE
    assert [f.subscription_id for f in (await fire(engine, AFTER)).terminated] == ["sub-1"]


async def test_a_termination_request_cancels_the_pending_timer(engine: AsyncEngine) -> None:
    await arm(engine, "sub-1")
    request = TerminationRequested.model_validate(
        termination_data(subscription_id="sub-1", account_id="acc", reseller_id="res")
    )
    command = TerminationCommand(
        request_id=unique("ce"),
        payload_sha256=payload_digest(request),
        subscription_id=request.subscription_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        requested_by=request.requested_by,
        reason=request.reason,
        terms=termination_terms(request),
    )
    async with engine.begin() as conn:
        [result] = await apply_termination_batch(conn, [command], policy=RefundPolicy(), now=BEFORE)
    assert result.outcome is Outcome.TERMINATED

    report = await fire(engine, AFTER)

    assert (report.claimed, report.terminated) == (0, ())
    assert await state_of(engine, "sub-1") == ("cancelled", "request")
    assert await terminations_of(engine, "sub-1") == [("customer_request", 1)]  # the request's event only


async def test_a_redelivered_expiry_changes_nothing_and_another_payload_under_its_ce_id_is_a_conflict(
    engine: AsyncEngine,
) -> None:
    first = expiry_of("sub-1")
    applier = expiry_applier(GRACE, clock=lambda: BEFORE)
    async with engine.begin() as conn:
        assert (await applier(conn, [first])).conflicts == []
    stored = await state_of(engine, "sub-1")

    async with engine.begin() as conn:
        [duplicate, conflict] = await apply_expiry_batch(
            conn, [first, expiry_of("sub-1", first.ce_id, payload=b"other")], grace=GRACE, now=BEFORE
        )
    async with engine.begin() as conn:
        applied = await applier(conn, [expiry_of("sub-1", first.ce_id, payload=b"other")])

    assert (duplicate.outcome, conflict.outcome) == (Redelivery.DUPLICATE, Redelivery.CONFLICT)
    assert [(index, type(error)) for index, error in applied.conflicts] == [(0, IdempotencyConflict)]
    assert await state_of(engine, "sub-1") == stored


class Clock:
    """The time the timer loop sees, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class AllReadProbe:
    """A ReadProbe whose broker says, at the clock's time, that every partition is read to its end."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def probe(self) -> CaughtUp:
        return all_read(self._clock())

    async def close(self) -> None:
        return None


async def test_the_timer_loop_waits_for_the_deadline_by_its_clock_then_fires_once(
    engine: AsyncEngine,
) -> None:
    await arm(engine, "sub-1")
    clock = Clock(DEADLINE - timedelta(hours=2))
    fired: list[None] = []
    week = 7 * 24 * 3600.0
    timers = ExpiryTimers(
        engine,
        check_seconds=week,
        clock=clock,
        probe=AllReadProbe(clock),  # type: ignore[arg-type]  # a stand-in for the broker
        after_fire=lambda: fired.append(None),
    )

    # Before the deadline the round asks the broker nothing and sleeps until the deadline; after
    # it, its first question to the broker (so no answer cached by the loop's monotonic clock).
    assert await timers.fire_all() == pytest.approx(2 * 3600 + 0.005)
    assert fired == []
    clock.now = AFTER
    assert await timers.fire_all() == week  # nothing pending any more
    assert fired == [None]
    clock.now = AFTER + timedelta(days=1)
    assert await timers.fire_all() == week

    assert fired == [None]
    assert await terminations_of(engine, "sub-1") == [("expired", 1)]
