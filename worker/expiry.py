"""The expiry lifecycle (contract section 3): expiries become durable timers, due timers terminate.

- `apply_expiry_batch`: each `subscription-expired` arms, re-arms or ignores the subscription's
  timer (worker.domain.expiry decides), in the caller's transaction.
- `apply_renewal_batch`: each `subscription-renewed` is kept, and cancels a pending timer whose
  grace period it falls in.
- `fire_due_timers`: one transaction terminates the subscriptions whose timers are due, with a
  `subscription-terminated` event in the outbox. Only one worker fires at a time (an advisory
  lock), and the timer rows are claimed FOR UPDATE SKIP LOCKED, so a timer fires once however
  many workers run; a termination request that got there first wins (ON CONFLICT DO NOTHING).
- `ExpiryTimers`: the background task that calls it every EXPIRY_CHECK_SECONDS, sooner when the
  next timer is due sooner or an expiry batch has just committed.

Expiry and renewal batches lock their subscriptions (transaction-scoped advisory locks, in key
order) before reading, so an expiry and a renewal of the same subscription handled at the same
moment by two consumers see each other, whichever commits first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.outputs import UNKNOWN_CURRENCY_AMOUNT, SubscriptionTerminated, TerminationCause
from schemas.topics import Topic
from worker.db.bulk import copy_rows, wanted
from worker.db.inbox import inbox_row, seen_digests, terminated_subscriptions
from worker.db.tables import expiry_timers, inbox, outbox, subscription_renewals, terminations
from worker.domain.expiry import (
    CancelledBy,
    ExpiryOutcome,
    GracePeriod,
    RenewalOutcome,
    Timer,
    TimerState,
    judge_expiry,
    judge_renewal,
)
from worker.domain.policy import NoRefundReason
from worker.failures import IdempotencyConflict, PoisonMessage
from worker.outbox import OutboxEvent, derived_id
from worker.pipeline import Applied, Apply

log = logging.getLogger(__name__)
decisions = logging.getLogger("worker.decisions")

FIRE_BATCH_SIZE = 500
"""Timers terminated per transaction; the loop goes on at once while batches come back full."""
MAX_BACKOFF_SECONDS = 30.0

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
    stored = await _timers(conn, subscriptions)
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
    stored = await _timers(conn, subscriptions)

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
    return results


# --- firing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fired:
    subscription_id: str
    account_id: str
    expired_at: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class FireReport:
    locked_out: bool = False
    """Another worker is firing timers right now; this one did nothing."""
    claimed: int = 0
    terminated: tuple[Fired, ...] = ()
    already_terminated: tuple[str, ...] = ()
    """Subscriptions a termination request had terminated meanwhile: nothing was published."""
    next_due_at: datetime | None = None
    """The earliest pending deadline after `now`, if any (not known when locked out)."""


async def fire_due_timers(engine: AsyncEngine, now: datetime, limit: int = FIRE_BATCH_SIZE) -> FireReport:
    """Terminate, in one transaction, up to `limit` subscriptions whose timers are due at `now`."""
    async with engine.begin() as conn:
        if not await conn.scalar(select(func.pg_try_advisory_xact_lock(FIRING_LOCK_KEY))):
            return FireReport(locked_out=True)
        claim = (
            select(
                expiry_timers.c.subscription_id,
                expiry_timers.c.account_id,
                expiry_timers.c.reseller_id,
                expiry_timers.c.expired_at,
                expiry_timers.c.due_at,
            )
            .where(expiry_timers.c.state == TimerState.PENDING, expiry_timers.c.due_at <= now)
            .order_by(expiry_timers.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        due = (await conn.execute(claim)).all()
        fired: list[Fired] = []
        others: list[str] = []
        if due:
            ours = await _terminate_expired(conn, due, now)
            fired = [
                Fired(r.subscription_id, r.account_id, r.expired_at, r.due_at)
                for r in due
                if r.subscription_id in ours
            ]
            others = [r.subscription_id for r in due if r.subscription_id not in ours]
            await _mark_fired(conn, [f.subscription_id for f in fired], others, now)
        next_due = await conn.scalar(
            select(func.min(expiry_timers.c.due_at)).where(
                expiry_timers.c.state == TimerState.PENDING, expiry_timers.c.due_at > now
            )
        )
    return FireReport(False, len(due), tuple(fired), tuple(others), next_due)


async def _terminate_expired(conn: AsyncConnection, due: Sequence[Any], now: datetime) -> set[str]:
    """Insert the terminations and their events; returns the subscriptions terminated here (those a
    request terminated first keep that termination, and nothing is published for them)."""
    rows = [
        {
            "subscription_id": r.subscription_id,
            "account_id": r.account_id,
            "reseller_id": r.reseller_id,
            "cause": TerminationCause.EXPIRED,
            "request_id": None,
            "terminated_at": now,
            "currency": None,
            "refund_minor": 0,
            "rule": None,
            "no_refund_reason": NoRefundReason.EXPIRED,
        }
        for r in due
    ]
    add = (
        insert(terminations)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[terminations.c.subscription_id])
        .returning(terminations.c.subscription_id)
    )
    ours = set((await conn.execute(add)).scalars())
    events = [_terminated_event(r, now) for r in due if r.subscription_id in ours]
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


def _terminated_event(row: Any, now: datetime) -> OutboxEvent:
    data = SubscriptionTerminated(
        request_id=None,
        subscription_id=row.subscription_id,
        account_id=row.account_id,
        reseller_id=row.reseller_id,
        terminated_at=now,
        cause=TerminationCause.EXPIRED,
        refund_amount=UNKNOWN_CURRENCY_AMOUNT,
        currency=None,
        rule=None,
        no_refund_reason=NoRefundReason.EXPIRED,
    )
    return OutboxEvent.of(expiry_event_id(row.subscription_id, row.expired_at), data, now)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExpiryTimers:
    """Fires due timers until cancelled: every `check_seconds`, or sooner when the next is due
    sooner or `wake()` is called (after an expiry batch commits, so an expiry already past its
    deadline terminates at once). A database outage is logged and retried with backoff."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        check_seconds: float,
        batch_size: int = FIRE_BATCH_SIZE,
        after_fire: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._engine = engine
        self._check_seconds = check_seconds
        self._batch_size = batch_size
        self._after_fire = after_fire
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = self._check_seconds
        while True:
            try:
                delay = await self.fire_all()
                if backoff > self._check_seconds:
                    log.warning("expiry timers are running again")
                backoff = self._check_seconds
            except Exception:  # the database is away: the timers are durable, try again later
                log.exception("firing expiry timers failed; retrying in %.1fs", backoff)
                delay = backoff
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def fire_all(self) -> float:
        """Fire every timer due now; returns how long to wait before looking again."""
        while True:
            now = self._clock()
            report = await fire_due_timers(self._engine, now, self._batch_size)
            _log_fired(report)
            if report.terminated:
                self._after_fire()
            if report.locked_out or report.claimed < self._batch_size:
                break
        if report.next_due_at is None:
            return self._check_seconds
        until_due = (report.next_due_at - self._clock()).total_seconds()
        return min(max(until_due, 0.0) + 0.005, self._check_seconds)


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
    query = select(expiry_timers).join_from(ids, expiry_timers, expiry_timers.c.subscription_id == ids.c.id)
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
