"""The expiry lifecycle (contract section 3): expiries become durable timers, due timers terminate.

- `apply_expiry_batch`: each `subscription-expired` arms, re-arms or ignores the subscription's
  timer (worker.domain.expiry decides), in the caller's transaction.
- `apply_renewal_batch`: each `subscription-renewed` is kept, and cancels a pending timer whose
  grace period it falls in.
- `fire_due_timers`: one transaction terminates the subscriptions whose timers are due, with a
  `subscription-terminated` event in the outbox. Due means: the deadline is at or before the low
  watermark of subscription-renewed (worker.domain.expiry.low_watermark over the read_progress
  rows, worker/read_progress.py), so a renewal still unread in a backlog is never overtaken.
  Only one worker fires at a time (an advisory lock), and the timer rows are claimed FOR UPDATE
  SKIP LOCKED, so a timer fires once however many workers run; a termination request that got
  there first wins (ON CONFLICT DO NOTHING). A timer that cannot fire is parked
  (expiry_timer_failures) and reported once; the others fire.
- `ExpiryTimers`: the background task that asks the broker how far the group has read, then
  calls it, every EXPIRY_CHECK_SECONDS, sooner when the next timer is due sooner or an input
  batch has just committed.

Expiry and renewal batches lock their subscriptions (transaction-scoped advisory locks, in key
order) before reading, so an expiry and a renewal of the same subscription handled at the same
moment by two consumers see each other, whichever commits first; they read the timers FOR
UPDATE, so a timer being fired is seen fired, never cancelled while it fires. A renewal batch
records the event time it read in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.outputs import UNKNOWN_CURRENCY_AMOUNT, SubscriptionTerminated, TerminationCause
from schemas.topics import Topic
from worker.db.bulk import copy_rows, wanted
from worker.db.inbox import inbox_row, seen_digests, terminated_subscriptions
from worker.db.tables import (
    expiry_timer_failures,
    expiry_timers,
    inbox,
    outbox,
    subscription_renewals,
    terminations,
)
from worker.domain.expiry import (
    EARLIEST_INSTANT,
    CancelledBy,
    ExpiryOutcome,
    GracePeriod,
    RenewalOutcome,
    Timer,
    TimerState,
    event_time_read,
    judge_expiry,
    judge_renewal,
    low_watermark,
    require_in_range,
)
from worker.domain.policy import NoRefundReason
from worker.failures import FailureKind, IdempotencyConflict, PoisonMessage, brief, classify
from worker.outbox import OutboxEvent, derived_id
from worker.pipeline import Applied, Apply, OutageLog, jittered
from worker.read_progress import (
    CaughtUp,
    ReadProbe,
    as_progress,
    progress_of,
    record_caught_up,
    record_read,
)

log = logging.getLogger(__name__)
decisions = logging.getLogger("worker.decisions")

FIRE_BATCH_SIZE = 500
"""Timers terminated per transaction; the loop goes on at once while batches come back full."""
MAX_BACKOFF_SECONDS = 30.0
MIN_PROBE_INTERVAL_SECONDS = 0.1
"""Rounds woken by every committed batch ask the broker at most this often (three requests each)."""

# pg_try_advisory_xact_lock(bigint): held by the one worker firing timers. Any constant shared by
# every worker; the one-key form never collides with the two-key form used per subscription.
FIRING_LOCK_KEY = 0x5EF0_0E01
# pg_advisory_xact_lock(int, int): (this class, a hash of the subscription id).
_SUBSCRIPTION_LOCK_CLASS = 0x5EF0_0E02


@dataclass(frozen=True, slots=True)
class ExpiryCommand:
    """A validated subscription-expired event, with where it came from."""

    ce_id: str
    payload_sha256: bytes
    subscription_id: str
    account_id: str
    reseller_id: str
    expired_at: datetime
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class RenewalCommand:
    """A validated subscription-renewed event, with where it came from."""

    ce_id: str
    payload_sha256: bytes
    subscription_id: str
    account_id: str
    reseller_id: str
    renewed_at: datetime
    partition: int | None = None
    offset: int | None = None


class Redelivery(StrEnum):
    DUPLICATE = "duplicate"
    """The same ce_id with the same payload: already handled, nothing to do."""
    CONFLICT = "conflict"
    """The same ce_id with another payload: not ours to decide, a dead letter."""


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    command: ExpiryCommand
    outcome: ExpiryOutcome | Redelivery
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RenewalResult:
    command: RenewalCommand
    outcome: RenewalOutcome | Redelivery


@dataclass(frozen=True, slots=True)
class _Stored:
    """A timer row: the rule's view (`timer`) and who it is about."""

    account_id: str
    reseller_id: str
    expiry_ce_id: str
    renewal_ce_id: str | None
    timer: Timer


# --- subscription-expired ---------------------------------------------------------------------


async def apply_expiry_batch(
    conn: AsyncConnection, commands: Sequence[ExpiryCommand], *, grace: GracePeriod, now: datetime
) -> list[ExpiryResult]:
    """Arm, re-arm or ignore each expiry's timer, in order; one result per command, in order."""
    topic = Topic.SUBSCRIPTION_EXPIRED.value
    subscriptions = {c.subscription_id for c in commands}
    await _lock_subscriptions(conn, subscriptions)
    seen = await seen_digests(conn, topic, {c.ce_id for c in commands})
    terminated = await terminated_subscriptions(conn, subscriptions)
    stored = await _timers(conn, subscriptions)  # FOR UPDATE: waits for a firing of them to end
    earliest = min((c.expired_at for c in commands), default=now)
    renewals = await _renewals(conn, subscriptions, after=earliest)

    results: list[ExpiryResult] = []
    inbox_rows: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for command in commands:
        redelivery = _redelivery(seen, command.ce_id, command.payload_sha256)
        if redelivery is not None:
            results.append(ExpiryResult(command, redelivery))
            continue
        seen[command.ce_id] = command.payload_sha256
        current = stored.get(command.subscription_id)
        verdict = judge_expiry(
            command.expired_at,
            now=now,
            grace=grace,
            terminated=command.subscription_id in terminated,
            current=current.timer if current else None,
            renewals=renewals.get(command.subscription_id, ()),
        )
        if verdict.timer is not None:
            new = _Stored(command.account_id, command.reseller_id, command.ce_id, None, verdict.timer)
            if verdict.timer.renewed_at is not None:
                new = replace(new, renewal_ce_id=renewals[command.subscription_id][verdict.timer.renewed_at])
            stored[command.subscription_id] = new
            changed[command.subscription_id] = _timer_row(command.subscription_id, new, now)
        inbox_rows.append(
            inbox_row(
                topic,
                command.ce_id,
                command.payload_sha256,
                verdict.outcome,
                command.partition,
                command.offset,
            )
        )
        due = verdict.timer.due_at if verdict.timer else None
        results.append(ExpiryResult(command, verdict.outcome, due))

    await copy_rows(conn, inbox, inbox_rows)
    await _upsert_timers(conn, changed.values())
    return results


# --- subscription-renewed ---------------------------------------------------------------------


async def apply_renewal_batch(
    conn: AsyncConnection, commands: Sequence[RenewalCommand], *, now: datetime
) -> list[RenewalResult]:
    """Keep each renewal and cancel the pending timer it saves, in order; one result per command."""
    topic = Topic.SUBSCRIPTION_RENEWED.value
    subscriptions = {c.subscription_id for c in commands}
    await _lock_subscriptions(conn, subscriptions)
    seen = await seen_digests(conn, topic, {c.ce_id for c in commands})
    stored = await _timers(conn, subscriptions)  # FOR UPDATE: waits for a firing of them to end

    results: list[RenewalResult] = []
    inbox_rows: list[dict[str, Any]] = []
    renewal_rows: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for command in commands:
        redelivery = _redelivery(seen, command.ce_id, command.payload_sha256)
        if redelivery is not None:
            results.append(RenewalResult(command, redelivery))
            continue
        seen[command.ce_id] = command.payload_sha256
        current = stored.get(command.subscription_id)
        verdict = judge_renewal(command.renewed_at, current=current.timer if current else None)
        if current is not None and verdict.timer is not None:
            new = replace(current, renewal_ce_id=command.ce_id, timer=verdict.timer)
            stored[command.subscription_id] = new
            changed[command.subscription_id] = _timer_row(command.subscription_id, new, now)
        renewal_rows.append(
            {
                "subscription_id": command.subscription_id,
                "renewed_at": command.renewed_at,
                "account_id": command.account_id,
                "reseller_id": command.reseller_id,
                "ce_id": command.ce_id,
            }
        )
        inbox_rows.append(
            inbox_row(
                topic,
                command.ce_id,
                command.payload_sha256,
                verdict.outcome,
                command.partition,
                command.offset,
            )
        )
        results.append(RenewalResult(command, verdict.outcome))

    await copy_rows(conn, inbox, inbox_rows)
    if renewal_rows:  # the same instant under another ce_id is the same renewal
        await conn.execute(insert(subscription_renewals).values(renewal_rows).on_conflict_do_nothing())
    await _upsert_timers(conn, changed.values())
    await record_read(conn, topic, _event_time_by_partition(commands, now), now)
    return results


def _event_time_by_partition(commands: Sequence[RenewalCommand], now: datetime) -> dict[int, datetime]:
    """How far the batch read each partition, in event time (redeliveries were read too)."""
    by_partition: dict[int, list[datetime]] = {}
    for command in commands:
        if command.partition is not None:
            by_partition.setdefault(command.partition, []).append(command.renewed_at)
    read = {p: event_time_read(instants, now=now) for p, instants in by_partition.items()}
    return {p: instant for p, instant in read.items() if instant is not None}


# --- firing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fired:
    subscription_id: str
    account_id: str
    expired_at: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Parked:
    """A due timer that could not fire: set aside in expiry_timer_failures, with why."""

    subscription_id: str
    expiry_ce_id: str
    error: str


@dataclass(frozen=True, slots=True)
class FireReport:
    locked_out: bool = False
    """Another worker is firing timers right now; this one did nothing."""
    claimed: int = 0
    terminated: tuple[Fired, ...] = ()
    already_terminated: tuple[str, ...] = ()
    """Subscriptions a termination request had terminated meanwhile: nothing was published."""
    parked: tuple[Parked, ...] = ()
    """Due timers that could not fire, now set aside; the others fired."""
    watermark: datetime | None = None
    """Renewals are read up to here, and timers due by then fire (None: not known, none fired)."""
    next_due_at: datetime | None = None
    """The earliest pending deadline after the watermark, if any (not known when locked out)."""


@dataclass(frozen=True, slots=True)
class _Due:
    """A claimed timer whose values could be read."""

    subscription_id: str
    account_id: str
    reseller_id: str
    expiry_ce_id: str
    expired_at: datetime
    due_at: datetime


async def fire_due_timers(
    engine: AsyncEngine, now: datetime, limit: int = FIRE_BATCH_SIZE, *, reads: CaughtUp | None = None
) -> FireReport:
    """Terminate, in one transaction, up to `limit` subscriptions whose timers are due: their deadline
    is at or before the low watermark of subscription-renewed (and `now`). `reads`, what the broker
    said of the consumer group's progress, is recorded first. A timer that cannot fire is parked."""
    async with engine.begin() as conn:
        if not await conn.scalar(select(func.pg_try_advisory_xact_lock(FIRING_LOCK_KEY))):
            return FireReport(locked_out=True)
        watermark = await _renewals_watermark(conn, reads, now)
        claimed = await _claim_due(conn, watermark, limit) if watermark is not None else []
        due, parked = _readable(claimed)
        fired, others, failed = await _fire(conn, due, now)
        parked += failed
        await _park(conn, parked, now)
        next_due = await _next_due(conn, after=watermark)
    return FireReport(False, len(claimed), fired, others, tuple(parked), watermark, next_due)


async def _renewals_watermark(
    conn: AsyncConnection, reads: CaughtUp | None, now: datetime
) -> datetime | None:
    topic = Topic.SUBSCRIPTION_RENEWED.value
    progress = await progress_of(conn, topic)
    if reads is None:
        return low_watermark(progress, now=now)
    await record_caught_up(conn, topic, reads, stored=progress)
    return low_watermark([*progress, *as_progress(reads)], now=now, partitions=reads.partitions)


async def _claim_due(conn: AsyncConnection, watermark: datetime, limit: int) -> Sequence[Any]:
    """Lock the due timers (skipping those another transaction holds), earliest first. Instants come
    as epoch numbers, which decode whatever is stored; `_readable` then judges each row alone."""
    t = expiry_timers.c
    claim = (
        select(
            t.subscription_id,
            t.account_id,
            t.reseller_id,
            t.expiry_ce_id,
            func.extract("epoch", t.expired_at).label("expired_epoch"),
            func.extract("epoch", t.due_at).label("due_epoch"),
        )
        .where(t.state == TimerState.PENDING, t.due_at <= watermark, _not_parked())
        .order_by(t.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=expiry_timers)
    )
    return (await conn.execute(claim)).all()


def _not_parked() -> ColumnElement[bool]:
    t, failed = expiry_timers.c, expiry_timer_failures.c
    parked = select(failed.subscription_id).where(
        failed.subscription_id == t.subscription_id, failed.expiry_ce_id == t.expiry_ce_id
    )
    return ~parked.exists()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(epoch: Decimal) -> datetime:
    """A stored instant, from its epoch seconds; raises for one Python cannot hold (+-infinity, BC)."""
    instant = _EPOCH + timedelta(microseconds=int(epoch * 1_000_000))
    require_in_range(instant, "a stored instant")
    return instant


def _readable(rows: Sequence[Any]) -> tuple[list[_Due], list[Parked]]:
    due: list[_Due] = []
    parked: list[Parked] = []
    for row in rows:
        try:
            expired_at, due_at = _instant(row.expired_epoch), _instant(row.due_epoch)
            expiry_event_id(row.subscription_id, expired_at)
        except (ArithmeticError, ValueError) as error:  # DomainError is a ValueError
            parked.append(Parked(row.subscription_id, row.expiry_ce_id, f"{type(error).__name__}: {error}"))
            continue
        due.append(
            _Due(row.subscription_id, row.account_id, row.reseller_id, row.expiry_ce_id, expired_at, due_at)
        )
    return due, parked


async def _fire(
    conn: AsyncConnection, due: Sequence[_Due], now: datetime
) -> tuple[tuple[Fired, ...], tuple[str, ...], list[Parked]]:
    """Fire them all at once; if that fails for a reason other than the database being away or
    busy, fire them one by one, each in its savepoint, and park those that fail alone."""
    if not due:
        return (), (), []
    try:
        async with conn.begin_nested():
            return (*await _terminate(conn, due, now), [])
    except Exception as error:
        if classify(error) in (FailureKind.INFRASTRUCTURE, FailureKind.CONTENTION):
            raise
        log.warning(
            "firing %d expiry timers together failed (%s); firing them one by one", len(due), brief(error)
        )
    fired: list[Fired] = []
    others: list[str] = []
    parked: list[Parked] = []
    for one in due:
        try:
            async with conn.begin_nested():
                ours, theirs = await _terminate(conn, [one], now)
        except Exception as error:
            if classify(error) in (FailureKind.INFRASTRUCTURE, FailureKind.CONTENTION):
                raise
            parked.append(Parked(one.subscription_id, one.expiry_ce_id, brief(error)))
            continue
        fired += ours
        others += theirs
    return tuple(fired), tuple(others), parked


async def _terminate(
    conn: AsyncConnection, due: Sequence[_Due], now: datetime
) -> tuple[tuple[Fired, ...], tuple[str, ...]]:
    ours = await _terminate_expired(conn, due, now)
    fired = tuple(
        Fired(d.subscription_id, d.account_id, d.expired_at, d.due_at)
        for d in due
        if d.subscription_id in ours
    )
    others = tuple(d.subscription_id for d in due if d.subscription_id not in ours)
    await _mark_fired(conn, [f.subscription_id for f in fired], others, now)
    return fired, others


async def _park(conn: AsyncConnection, parked: Sequence[Parked], now: datetime) -> None:
    if not parked:
        return
    rows = [
        {
            "subscription_id": p.subscription_id,
            "expiry_ce_id": p.expiry_ce_id,
            "error": p.error,
            "failed_at": now,
        }
        for p in parked
    ]
    await conn.execute(insert(expiry_timer_failures).values(rows).on_conflict_do_nothing())


async def _next_due(conn: AsyncConnection, *, after: datetime | None) -> datetime | None:
    """The earliest pending deadline after `after` (any, if None), of the timers not set aside."""
    t = expiry_timers.c
    pending = select(func.min(func.extract("epoch", t.due_at))).where(
        t.state == TimerState.PENDING, _not_parked()
    )
    if after is not None:
        pending = pending.where(t.due_at > after)
    epoch = await conn.scalar(pending)
    if epoch is None:
        return None
    try:
        return _instant(Decimal(epoch))
    except (ArithmeticError, ValueError):
        # Before year 1 (-infinity, BC): due by any clock, to be claimed and set aside; after
        # 9999 (+infinity): never due, nothing to wait for.
        return EARLIEST_INSTANT if Decimal(epoch) < 0 else None


async def _terminate_expired(conn: AsyncConnection, due: Sequence[_Due], now: datetime) -> set[str]:
    """Insert the terminations and their events; returns the subscriptions terminated here (those a
    request terminated first keep that termination, and nothing is published for them)."""
    rows = [
        {
            "subscription_id": d.subscription_id,
            "account_id": d.account_id,
            "reseller_id": d.reseller_id,
            "cause": TerminationCause.EXPIRED,
            "request_id": None,
            "terminated_at": now,
            "currency": None,
            "refund_minor": 0,
            "rule": None,
            "no_refund_reason": NoRefundReason.EXPIRED,
        }
        for d in due
    ]
    add = (
        insert(terminations)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[terminations.c.subscription_id])
        .returning(terminations.c.subscription_id)
    )
    ours = set((await conn.execute(add)).scalars())
    events = [_terminated_event(d, now) for d in due if d.subscription_id in ours]
    await copy_rows(conn, outbox, [e.row() for e in events])
    return ours


async def _mark_fired(
    conn: AsyncConnection, fired: Sequence[str], others: Sequence[str], now: datetime
) -> None:
    ids = wanted("ids")
    mark = update(expiry_timers).where(expiry_timers.c.subscription_id == ids.c.id)
    if fired:
        fire = mark.values(state=TimerState.FIRED, fired_at=now, updated_at=now)
        await conn.execute(fire, {"ids": list(fired)})
    if others:
        cancel = mark.values(state=TimerState.CANCELLED, cancelled_by=CancelledBy.REQUEST, updated_at=now)
        await conn.execute(cancel, {"ids": list(others)})


def expiry_event_id(subscription_id: str, expired_at: datetime) -> str:
    """The ce_id of the subscription-terminated an expiry causes: fixed by the subscription and expiry."""
    return derived_id(f"{subscription_id}@{expired_at.astimezone(UTC).isoformat()}", "expiry-terminated")


def _terminated_event(due: _Due, now: datetime) -> OutboxEvent:
    data = SubscriptionTerminated(
        request_id=None,
        subscription_id=due.subscription_id,
        account_id=due.account_id,
        reseller_id=due.reseller_id,
        terminated_at=now,
        cause=TerminationCause.EXPIRED,
        refund_amount=UNKNOWN_CURRENCY_AMOUNT,
        currency=None,
        rule=None,
        no_refund_reason=NoRefundReason.EXPIRED,
    )
    return OutboxEvent.of(expiry_event_id(due.subscription_id, due.expired_at), data, now)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExpiryTimers:
    """Fires due timers until cancelled: every `check_seconds`, or sooner when the next is due
    sooner or `wake()` is called (after an input batch commits). When a timer is due by the clock
    but not by the stored read progress, a round asks `probe` how far the consumer group has read
    subscription-renewed. A database outage is logged and retried with backoff; a broker outage
    only stops the watermark from moving."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        check_seconds: float,
        batch_size: int = FIRE_BATCH_SIZE,
        after_fire: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = _utc_now,
        probe: ReadProbe | None = None,
    ) -> None:
        self._engine = engine
        self._check_seconds = check_seconds
        self._batch_size = batch_size
        self._after_fire = after_fire
        self._clock = clock
        self._probe = probe
        self._probe_failing = False
        self._last_reads: tuple[float, CaughtUp] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._probe is not None:
                await self._probe.close()

    async def _run(self) -> None:
        backoff = self._check_seconds
        # One line as an outage starts, a reminder a minute, one as it ends: not a traceback a round.
        outage = OutageLog("firing expiry timers", meanwhile="they are durable and fire once it works again")
        while True:
            try:
                delay = await self.fire_all()
                outage.ended()
                backoff = self._check_seconds
            except Exception as error:  # noqa: BLE001 - logged by OutageLog; the timers are durable, retry later
                outage.failed(error, traceback=classify(error) is not FailureKind.INFRASTRUCTURE)
                delay = jittered(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def fire_all(self) -> float:
        """Fire every timer due now; returns how long to wait before looking again.

        The broker is asked only when a timer is due by the clock but not by the stored read
        progress: a worker with nothing waiting sends it nothing."""
        reads: CaughtUp | None = None
        asked = False
        while True:
            now = self._clock()
            report = await fire_due_timers(self._engine, now, self._batch_size, reads=reads)
            _log_fired(report)
            if report.terminated:
                self._after_fire()
            if report.locked_out:
                break
            if report.claimed >= self._batch_size:
                continue
            if not asked and _waits_for_reads(report, now):
                asked = True
                reads = await self._read_progress()
                if reads is not None:
                    continue
            break
        if report.next_due_at is None:
            return self._check_seconds
        until_due = (report.next_due_at - self._clock()).total_seconds()
        if until_due <= 0:  # due by the clock, waiting for renewals to be read: a batch wakes us
            return self._check_seconds
        return min(until_due + 0.005, self._check_seconds)

    async def _read_progress(self) -> CaughtUp | None:
        """What the broker says of the group's progress; None while it does not answer (the
        watermark then rests on what the database recorded)."""
        if self._probe is None:
            return None
        if self._last_reads and time.monotonic() - self._last_reads[0] < MIN_PROBE_INTERVAL_SECONDS:
            return self._last_reads[1]  # older, so it claims less: safe to reuse under a flood of wakes
        try:
            reads = await self._probe.probe()
        except Exception as error:  # noqa: BLE001 - whatever it is, the broker's answer is unknown
            if not self._probe_failing:
                log.warning("cannot tell how far the group has read (%s); expiry timers wait", brief(error))
            self._probe_failing = True
            return None
        if self._probe_failing:
            log.warning("the broker answers again: expiry timers follow the group's progress")
        self._probe_failing = False
        self._last_reads = (time.monotonic(), reads)
        return reads


def _waits_for_reads(report: FireReport, now: datetime) -> bool:
    """A pending timer is due by the clock, but the renewals are not known to be read up to it."""
    return report.next_due_at is not None and report.next_due_at <= now


def _log_fired(report: FireReport) -> None:
    for fired in report.terminated:
        decisions.info(
            "expired subscription=%s account=%s expired_at=%s due_at=%s",
            fired.subscription_id,
            fired.account_id,
            fired.expired_at.isoformat(),
            fired.due_at.isoformat(),
        )
    for subscription in report.already_terminated:
        decisions.info("expiry timer of subscription=%s found it terminated by a request", subscription)
    for parked in report.parked:  # once: a parked timer is never claimed again
        log.warning(
            "expiry timer of subscription=%s (expiry ce_id=%s) cannot fire and is set aside in "
            "expiry_timer_failures: %s",
            parked.subscription_id,
            parked.expiry_ce_id,
            parked.error,
        )


# --- the pipelines' apply functions -----------------------------------------------------------


def expiry_applier(grace: GracePeriod, clock: Callable[[], datetime] = _utc_now) -> Apply[ExpiryCommand]:
    async def apply(conn: AsyncConnection, commands: Sequence[ExpiryCommand]) -> Applied:
        results = await apply_expiry_batch(conn, commands, grace=grace, now=clock())
        conflicts = _conflicts([(r.command.ce_id, r.outcome) for r in results])
        return Applied(conflicts, on_commit=lambda: _log_expiries(results))

    return apply


def renewal_applier(clock: Callable[[], datetime] = _utc_now) -> Apply[RenewalCommand]:
    async def apply(conn: AsyncConnection, commands: Sequence[RenewalCommand]) -> Applied:
        results = await apply_renewal_batch(conn, commands, now=clock())
        conflicts = _conflicts([(r.command.ce_id, r.outcome) for r in results])
        return Applied(conflicts, on_commit=lambda: _log_renewals(results))

    return apply


def _conflicts(outcomes: Sequence[tuple[str, object]]) -> list[tuple[int, PoisonMessage]]:
    return [
        (
            index,
            IdempotencyConflict(
                f"ce_id {ce_id!r} was processed before with another payload; a new event needs a new ce_id"
            ),
        )
        for index, (ce_id, outcome) in enumerate(outcomes)
        if outcome is Redelivery.CONFLICT
    ]


def _log_expiries(results: Sequence[ExpiryResult]) -> None:
    """One line per expiry handled, once committed (conflicts are logged by the dead-lettering)."""
    for result in results:
        if result.outcome is Redelivery.CONFLICT:
            continue
        command = result.command
        decisions.info(
            "expiry %s subscription=%s account=%s ce_id=%s expired_at=%s due_at=%s",
            result.outcome.value,
            command.subscription_id,
            command.account_id,
            command.ce_id,
            command.expired_at.isoformat(),
            result.due_at.isoformat() if result.due_at else None,
        )


def _log_renewals(results: Sequence[RenewalResult]) -> None:
    for result in results:
        if result.outcome is Redelivery.CONFLICT:
            continue
        command = result.command
        # A renewal after an expiry whose timer already fired: the subscription stays terminated,
        # which an operator may want to look at (the customer paid for a terminated subscription).
        level = logging.WARNING if result.outcome is RenewalOutcome.TOO_LATE else logging.INFO
        decisions.log(
            level,
            "renewal %s subscription=%s account=%s ce_id=%s renewed_at=%s",
            result.outcome.value,
            command.subscription_id,
            command.account_id,
            command.ce_id,
            command.renewed_at.isoformat(),
        )


# --- reads and writes shared by the batches ---------------------------------------------------


def _subscription_key(subscription_id: str) -> int:
    """A stable signed 32-bit hash of the id: the second key of its advisory lock."""
    return int.from_bytes(
        hashlib.blake2b(subscription_id.encode(), digest_size=4).digest(), "big", signed=True
    )


async def _lock_subscriptions(conn: AsyncConnection, subscription_ids: Iterable[str]) -> None:
    """Serialise the expiry and renewal batches that touch the same subscriptions until commit.

    Keys are taken in ascending order (unnest keeps the array's order), so two batches never
    wait on each other in a cycle; two ids sharing a hash only share a lock.
    """
    keys = sorted({_subscription_key(s) for s in subscription_ids})
    if not keys:
        return
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:lock_class, k) FROM unnest(:keys) AS k").bindparams(
            bindparam("keys", type_=ARRAY(Integer))
        ),
        {"lock_class": _SUBSCRIPTION_LOCK_CLASS, "keys": keys},
    )


def _redelivery(seen: Mapping[str, bytes], ce_id: str, digest: bytes) -> Redelivery | None:
    known = seen.get(ce_id)
    if known is None:
        return None
    return Redelivery.DUPLICATE if known == digest else Redelivery.CONFLICT


async def _timers(conn: AsyncConnection, subscription_ids: set[str]) -> dict[str, _Stored]:
    ids = wanted("ids")
    query = (
        select(expiry_timers)
        .join_from(ids, expiry_timers, expiry_timers.c.subscription_id == ids.c.id)
        .with_for_update(of=expiry_timers)
    )
    rows = await conn.execute(query, {"ids": list(subscription_ids)})
    return {
        row.subscription_id: _Stored(
            account_id=row.account_id,
            reseller_id=row.reseller_id,
            expiry_ce_id=row.expiry_ce_id,
            renewal_ce_id=row.renewal_ce_id,
            timer=Timer(
                expired_at=row.expired_at,
                due_at=row.due_at,
                state=TimerState(row.state),
                renewed_at=row.renewed_at,
                cancelled_by=CancelledBy(row.cancelled_by) if row.cancelled_by else None,
            ),
        )
        for row in rows
    }


async def _renewals(
    conn: AsyncConnection, subscription_ids: set[str], *, after: datetime
) -> dict[str, dict[datetime, str]]:
    """The renewals later than `after` of each subscription: renewed_at -> its ce_id."""
    r, ids = subscription_renewals.c, wanted("ids")
    query = select(r.subscription_id, r.renewed_at, r.ce_id).join_from(
        ids, subscription_renewals, (r.subscription_id == ids.c.id) & (r.renewed_at > after)
    )
    rows = await conn.execute(query, {"ids": list(subscription_ids)})
    found: dict[str, dict[datetime, str]] = {}
    for subscription_id, renewed_at, ce_id in rows:
        found.setdefault(subscription_id, {})[renewed_at] = ce_id
    return found


def _timer_row(subscription_id: str, stored: _Stored, now: datetime) -> dict[str, Any]:
    timer = stored.timer
    return {
        "subscription_id": subscription_id,
        "account_id": stored.account_id,
        "reseller_id": stored.reseller_id,
        "expired_at": timer.expired_at,
        "due_at": timer.due_at,
        "state": timer.state.value,
        "cancelled_by": timer.cancelled_by.value if timer.cancelled_by else None,
        "renewed_at": timer.renewed_at,
        "expiry_ce_id": stored.expiry_ce_id,
        "renewal_ce_id": stored.renewal_ce_id,
        "fired_at": None,
        "updated_at": now,
    }


_TIMER_UPDATABLE = (
    "account_id",
    "reseller_id",
    "expired_at",
    "due_at",
    "state",
    "cancelled_by",
    "renewed_at",
    "expiry_ce_id",
    "renewal_ce_id",
    "updated_at",
)


async def _upsert_timers(conn: AsyncConnection, rows: Iterable[dict[str, Any]]) -> None:
    """Write the timers' new states; a fired timer is never overwritten (it has terminated)."""
    values = list(rows)
    if not values:
        return
    add = insert(expiry_timers).values(values)
    await conn.execute(
        add.on_conflict_do_update(
            index_elements=[expiry_timers.c.subscription_id],
            set_={name: add.excluded[name] for name in _TIMER_UPDATABLE},
            where=expiry_timers.c.state != TimerState.FIRED.value,
        )
    )
