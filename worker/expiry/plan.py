"""The rows and events built from the expiry rules' verdicts, and the reading of a claimed timer row.
No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.outputs import UNKNOWN_CURRENCY_AMOUNT, NoRefundReason, SubscriptionTerminated, TerminationCause
from worker.domain.grace_period import Timer, require_in_range
from worker.domain.watermark import event_time_read
from worker.engine.outbox import OutboxEvent, derived_id
from worker.expiry.commands import RenewalCommand


@dataclass(frozen=True, slots=True)
class StoredTimer:
    """A timer row: the rule's view (`timer`) and who it is about."""

    account_id: str
    reseller_id: str
    expiry_ce_id: str
    renewal_ce_id: str | None
    timer: Timer


def timer_row(subscription_id: str, stored: StoredTimer, now: datetime) -> dict[str, Any]:
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


def event_time_by_partition(commands: Sequence[RenewalCommand], now: datetime) -> dict[int, datetime]:
    """How far the batch read each partition, in event time (redeliveries were read too)."""
    by_partition: dict[int, list[datetime]] = {}
    for command in commands:
        if command.partition is not None:
            by_partition.setdefault(command.partition, []).append(command.renewed_at)
    read = {p: event_time_read(instants, now=now) for p, instants in by_partition.items()}
    return {p: instant for p, instant in read.items() if instant is not None}


@dataclass(frozen=True, slots=True)
class Fired:
    reseller_id: str
    subscription_id: str
    account_id: str
    expired_at: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Parked:
    """A due timer that could not fire: set aside in expiry_timer_failures, with why."""

    reseller_id: str
    subscription_id: str
    expiry_ce_id: str
    error: str


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed timer whose values could be read."""

    subscription_id: str
    account_id: str
    reseller_id: str
    expiry_ce_id: str
    expired_at: datetime
    due_at: datetime


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stored_instant(epoch: Decimal) -> datetime:
    """A stored instant, from its epoch seconds; raises for one Python cannot hold (+-infinity, BC)."""
    instant = _EPOCH + timedelta(microseconds=int(epoch * 1_000_000))
    require_in_range(instant, "a stored instant")
    return instant


def readable(rows: Sequence[Any]) -> tuple[list[Due], list[Parked]]:
    due: list[Due] = []
    parked: list[Parked] = []
    for row in rows:
        try:
            expired_at, due_at = stored_instant(row.expired_epoch), stored_instant(row.due_epoch)
            expiry_event_id(row.reseller_id, row.subscription_id, expired_at)
        except (ArithmeticError, ValueError) as error:  # DomainError is a ValueError
            parked.append(
                Parked(
                    row.reseller_id, row.subscription_id, row.expiry_ce_id, f"{type(error).__name__}: {error}"
                )
            )
            continue
        due.append(
            Due(row.subscription_id, row.account_id, row.reseller_id, row.expiry_ce_id, expired_at, due_at)
        )
    return due, parked


def expiry_event_id(reseller_id: str, subscription_id: str, expired_at: datetime) -> str:
    """The ce_id of the subscription-terminated an expiry causes: fixed by the reseller, the
    subscription and the expiry."""
    expiry = f"{subscription_id}@{expired_at.astimezone(UTC).isoformat()}"
    return derived_id(reseller_id, expiry, "expiry-terminated")


def terminated_event(due: Due, now: datetime) -> OutboxEvent:
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
    return OutboxEvent.of(expiry_event_id(due.reseller_id, due.subscription_id, due.expired_at), data, now)
