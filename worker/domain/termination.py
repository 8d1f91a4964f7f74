"""Judging one termination request against what has already happened: the "never twice" rules."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.domain.policy import (
    DEFAULT_POLICY,
    CreditNoteInvalid,
    RefundDecision,
    RefundMethod,
    RefundPolicy,
    TerminationTerms,
    decide_refund,
)


class RejectionCode(StrEnum):
    ALREADY_TERMINATED = "already_terminated"
    CREDIT_NOTE_ALREADY_USED = "credit_note_already_used"
    CREDIT_NOTE_INVALID = "credit_note_invalid"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A well-formed request the rules refuse: nothing is terminated or refunded."""

    code: RejectionCode
    detail: str


@dataclass(frozen=True, slots=True)
class History:
    """What the store knows about a request's subscription and credit note."""

    subscription_terminated: bool = False
    credit_note_used: bool = False


def judge_request(
    terms: TerminationTerms, history: History, policy: RefundPolicy = DEFAULT_POLICY
) -> RefundDecision | Rejection:
    """Terminate (with or without a refund), or reject: a subscription ends once, a note backs one refund."""
    if history.subscription_terminated:
        return Rejection(RejectionCode.ALREADY_TERMINATED, "the subscription is already terminated")
    try:
        decision = decide_refund(terms, policy)
    except CreditNoteInvalid as invalid:
        return Rejection(RejectionCode.CREDIT_NOTE_INVALID, str(invalid))
    if decision.method is RefundMethod.CREDIT_NOTE and history.credit_note_used:
        note_id = decision.credit_note.credit_note_id if decision.credit_note else "?"
        return Rejection(
            RejectionCode.CREDIT_NOTE_ALREADY_USED,
            f"credit note {note_id} already backs another refund",
        )
    return decision
