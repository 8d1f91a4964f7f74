"""What the expiry use case is given (a subscription-expired, a subscription-renewed) and what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from worker.db.inbox import Redelivery
from worker.domain.timer_verdicts import ExpiryOutcome, RenewalOutcome


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


class Refused(StrEnum):
    ACCOUNT_MISMATCH = "account_mismatch"
    """The subscription is known under another account of the reseller: a dead letter, nothing stored."""


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    command: ExpiryCommand
    outcome: ExpiryOutcome | Redelivery | Refused
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RenewalResult:
    command: RenewalCommand
    outcome: RenewalOutcome | Redelivery | Refused
