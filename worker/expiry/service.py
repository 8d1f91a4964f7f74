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
from worker.db.bulk import ResellerKey, copy_rows
from worker.db.inbox import (
    Redelivery,
    inbox_row,
    inbox_tracking,
    subscription_owners,
    terminated_subscriptions,
)
from worker.db.schema.expiry import subscription_renewals
from worker.db.schema.inbox import inbox
from worker.domain.grace_period import GracePeriod
from worker.domain.ownership import account_mismatch
from worker.domain.timer_verdicts import RenewalOutcome, judge_expiry, judge_renewal
from worker.engine.clock import utc_now
from worker.engine.failures import IdempotencyConflict, PoisonMessage, SubscriptionOfAnotherAccount
from worker.engine.pipeline import Applied, Apply
from worker.expiry.commands import (
    ExpiryCommand,
    ExpiryResult,
    Refused,
    RenewalCommand,
    RenewalResult,
)
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
    subscriptions = {_subscription(c) for c in commands}
    await lock_subscriptions(conn, subscriptions)
    seen = await inbox_tracking(conn, topic, {(c.reseller_id, c.ce_id) for c in commands})
    owners = await subscription_owners(conn, subscriptions)
    terminated = await terminated_subscriptions(conn, subscriptions)
    stored = await timers_for_update(conn, subscriptions)  # FOR UPDATE: waits for a firing of them to end
    earliest = min((c.expired_at for c in commands), default=now)
    renewals = await renewals_after(conn, subscriptions, after=earliest)

    results: list[ExpiryResult] = []
    inbox_rows: list[dict[str, Any]] = []
    changed: dict[ResellerKey, dict[str, Any]] = {}
    for command in commands:
        key, ce_id = _subscription(command), (command.reseller_id, command.ce_id)
        redelivery = seen.redelivery(ce_id, command.payload_sha256)
        if redelivery is not None:
            results.append(ExpiryResult(command, redelivery))
            continue
        if account_mismatch(command.subscription_id, command.account_id, owners.get(key)) is not None:
            results.append(ExpiryResult(command, Refused.ACCOUNT_MISMATCH))
            continue
        owners[key] = command.account_id
        seen.track(ce_id, command.payload_sha256)
        current = stored.get(key)
        verdict = judge_expiry(
            command.expired_at,
            now=now,
            grace=grace,
            terminated=key in terminated,
            current=current.timer if current else None,
            renewals=renewals.get(key, ()),
        )
        if verdict.timer is not None:
            new = StoredTimer(command.account_id, command.reseller_id, command.ce_id, None, verdict.timer)
            if verdict.timer.renewed_at is not None:
                new = replace(new, renewal_ce_id=renewals[key][verdict.timer.renewed_at])
            stored[key] = new
            changed[key] = timer_row(command.subscription_id, new, now)
        inbox_rows.append(
            inbox_row(
                command.reseller_id,
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
    subscriptions = {_subscription(c) for c in commands}
    await lock_subscriptions(conn, subscriptions)
    seen = await inbox_tracking(conn, topic, {(c.reseller_id, c.ce_id) for c in commands})
    owners = await subscription_owners(conn, subscriptions)
    stored = await timers_for_update(conn, subscriptions)  # FOR UPDATE: waits for a firing of them to end

    results: list[RenewalResult] = []
    inbox_rows: list[dict[str, Any]] = []
    renewal_rows: list[dict[str, Any]] = []
    changed: dict[ResellerKey, dict[str, Any]] = {}
    for command in commands:
        key, ce_id = _subscription(command), (command.reseller_id, command.ce_id)
        redelivery = seen.redelivery(ce_id, command.payload_sha256)
        if redelivery is not None:
            results.append(RenewalResult(command, redelivery))
            continue
        if account_mismatch(command.subscription_id, command.account_id, owners.get(key)) is not None:
            results.append(RenewalResult(command, Refused.ACCOUNT_MISMATCH))
            continue
        owners[key] = command.account_id
        seen.track(ce_id, command.payload_sha256)
        current = stored.get(key)
        verdict = judge_renewal(command.renewed_at, current=current.timer if current else None)
        if current is not None and verdict.timer is not None:
            new = replace(current, renewal_ce_id=command.ce_id, timer=verdict.timer)
            stored[key] = new
            changed[key] = timer_row(command.subscription_id, new, now)
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
                command.reseller_id,
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
        conflicts = _conflicts(results)
        return Applied(conflicts, on_commit=lambda: _log_expiries(results))

    return apply


def renewal_applier(clock: Callable[[], datetime] = utc_now) -> Apply[AsyncConnection, RenewalCommand]:
    async def apply(conn: AsyncConnection, commands: Sequence[RenewalCommand]) -> Applied:
        results = await apply_renewal_batch(conn, commands, now=clock())
        conflicts = _conflicts(results)
        return Applied(conflicts, on_commit=lambda: _log_renewals(results))

    return apply


def _poison(command: ExpiryCommand | RenewalCommand, outcome: object) -> PoisonMessage | None:
    """The dead letter an expiry or renewal becomes: a reused ce_id, or a subscription of another account."""
    if outcome is Redelivery.CONFLICT:
        return IdempotencyConflict.reused(command.ce_id, "event")
    if outcome is Refused.ACCOUNT_MISMATCH:
        return SubscriptionOfAnotherAccount(
            f"subscription {command.subscription_id!r} of reseller {command.reseller_id!r} belongs to "
            f"another account than {command.account_id!r}; it can never be expired or renewed under it"
        )
    return None


def _conflicts(results: Sequence[ExpiryResult | RenewalResult]) -> list[tuple[int, PoisonMessage]]:
    poisoned = [(index, _poison(result.command, result.outcome)) for index, result in enumerate(results)]
    return [(index, poison) for index, poison in poisoned if poison is not None]


def _subscription(command: ExpiryCommand | RenewalCommand) -> ResellerKey:
    return (command.reseller_id, command.subscription_id)


def _log_expiries(results: Sequence[ExpiryResult]) -> None:
    """One line per expiry handled, once committed (conflicts are logged by the dead-lettering)."""
    for result in results:
        if result.outcome in (Redelivery.CONFLICT, Refused.ACCOUNT_MISMATCH):
            continue  # the dead-lettering logs it
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
        if result.outcome in (Redelivery.CONFLICT, Refused.ACCOUNT_MISMATCH):
            continue  # the dead-lettering logs it
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
