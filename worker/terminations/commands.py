"""What the termination use case is given (a validated termination request) and what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.domain.credit_note_guard import InvoiceNote
from worker.domain.never_twice import Rejection
from worker.domain.policy import RefundDecision, TerminationTerms


@dataclass(frozen=True, slots=True)
class TerminationCommand:
    """A validated termination request, with where it came from."""

    request_id: str
    payload_sha256: bytes
    subscription_id: str
    account_id: str
    reseller_id: str
    requested_by: str
    reason: str
    terms: TerminationTerms
    partition: int | None = None
    offset: int | None = None


class Outcome(StrEnum):
    TERMINATED = "terminated"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    """The ce_id was seen before with another payload: not ours to decide, a dead letter."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: TerminationCommand
    outcome: Outcome
    decision: RefundDecision | None = None
    rejection: Rejection | None = None
    linked: tuple[InvoiceNote, ...] = ()
    """The invoice app's notes the refund is, linked automatically, oldest first (contract section 10)."""
