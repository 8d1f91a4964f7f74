"""The expiry and renewal batches: one transaction each, their appliers for the pipeline and their logging."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.topics import Topic
from worker.db.bulk import copy_rows
from worker.db.inbox import Redelivery, inbox_row, inbox_tracking, terminated_subscriptions
from worker.db.schema.expiry import subscription_renewals
from worker.db.schema.inbox import inbox
from worker.domain.grace_period import GracePeriod
from worker.domain.timer_verdicts import RenewalOutcome, judge_expiry, judge_renewal
from worker.engine.clock import utc_now
from worker.engine.failures import IdempotencyConflict, PoisonMessage
from worker.engine.pipeline import Applied, Apply
from worker.expiry.commands import ExpiryCommand, ExpiryResult, RenewalCommand, RenewalResult
from worker.expiry.plan import StoredTimer, event_time_by_partition, timer_row
from worker.expiry.read_progress import (
    record_read,
)
from worker.expiry.store import lock_subscriptions, renewals_after, timers_for_update, upsert_timers

decisions = logging.getLogger("worker.decisions")


async def apply_expiry_batch(
    conn: AsyncConnection, commands: Sequence[ExpiryCommand], *, grace: GracePeriod, now: datetime
) -> list[ExpiryResult]:
    """Arm, re-arm or ignore each expiry's timer, in order; one result per command, in order."""
    topic = Topic.SUBSCRIPTION_EXPIRED.value
    subscriptions = {c.subscription_id for c in commands}
    await lock_subscriptions(conn, subscriptions)
    seen = await inbox_tracking(conn, topic, {c.ce_id for c in commands})
    terminated = await terminated_subscriptions(conn, subscriptions)
    stored = await timers_for_update(conn, subscriptions)  # FOR UPDATE: waits for a firing of them to end
    earliest = min((c.expired_at for c in commands), default=now)
    renewals = await renewals_after(conn, subscriptions, after=earliest)

    results: list[ExpiryResult] = []
    inbox_rows: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for command in commands:
        redelivery = seen.redelivery(command.ce_id, command.payload_sha256)
        if redelivery is not None:
            results.append(ExpiryResult(command, redelivery))
            continue
        seen.track(command.ce_id, command.payload_sha256)
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
            new = StoredTimer(command.account_id, command.reseller_id, command.ce_id, None, verdict.timer)
            if verdict.timer.renewed_at is not None:
                new = replace(new, renewal_ce_id=renewals[command.subscription_id][verdict.timer.renewed_at])
            stored[command.subscription_id] = new
            changed[command.subscription_id] = timer_row(command.subscription_id, new, now)
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
    await upsert_timers(conn, changed.values())
    return results


async def apply_renewal_batch(
    conn: AsyncConnection, commands: Sequence[RenewalCommand], *, now: datetime
) -> list[RenewalResult]:
    """Keep each renewal and cancel the pending timer it saves, in order; one result per command."""
    topic = Topic.SUBSCRIPTION_RENEWED.value
    subscriptions = {c.subscription_id for c in commands}
    await lock_subscriptions(conn, subscriptions)
    seen = await inbox_tracking(conn, topic, {c.ce_id for c in commands})
    stored = await timers_for_update(conn, subscriptions)  # FOR UPDATE: waits for a firing of them to end

    results: list[RenewalResult] = []
    inbox_rows: list[dict[str, Any]] = []
    renewal_rows: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for command in commands:
        redelivery = seen.redelivery(command.ce_id, command.payload_sha256)
        if redelivery is not None:
            results.append(RenewalResult(command, redelivery))
            continue
        seen.track(command.ce_id, command.payload_sha256)
        current = stored.get(command.subscription_id)
        verdict = judge_renewal(command.renewed_at, current=current.timer if current else None)
        if current is not None and verdict.timer is not None:
            new = replace(current, renewal_ce_id=command.ce_id, timer=verdict.timer)
            stored[command.subscription_id] = new
            changed[command.subscription_id] = timer_row(command.subscription_id, new, now)
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
    await upsert_timers(conn, changed.values())
    await record_read(conn, topic, event_time_by_partition(commands, now), now)
    return results


def expiry_applier(
    grace: GracePeriod, clock: Callable[[], datetime] = utc_now
) -> Apply[AsyncConnection, ExpiryCommand]:
    async def apply(conn: AsyncConnection, commands: Sequence[ExpiryCommand]) -> Applied:
        results = await apply_expiry_batch(conn, commands, grace=grace, now=clock())
        conflicts = _conflicts([(r.command.ce_id, r.outcome) for r in results])
        return Applied(conflicts, on_commit=lambda: _log_expiries(results))

    return apply


def renewal_applier(clock: Callable[[], datetime] = utc_now) -> Apply[AsyncConnection, RenewalCommand]:
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
