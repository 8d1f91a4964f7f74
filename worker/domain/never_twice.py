"""Judging one termination request against what has already happened: the "never twice" rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from worker.domain.errors import DomainError
from worker.domain.ownership import AccountMismatch
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
    ACCOUNT_MISMATCH = "account_mismatch"


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
    account_mismatch: AccountMismatch | None = None
    """The subscription is known under another account of the reseller (worker.domain.ownership)."""


def judge_request(
    terms: TerminationTerms, history: History, policy: RefundPolicy = DEFAULT_POLICY
) -> RefundDecision | Rejection:
    """Terminate (with or without a refund), or reject: a subscription belongs to one account and ends
    once, a note backs one refund. The account comes before any other rule (contract section 7)."""
    if history.account_mismatch is not None:
        return Rejection(RejectionCode.ACCOUNT_MISMATCH, str(history.account_mismatch))
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


# --- the worker's own credit notes --------------------------------------------------------------

CREDIT_NOTE_PREFIX = "CN"
CREDIT_NOTE_DIGITS = 6

OWN_CREDIT_NOTES_INCLUDE_TAX = True
"""The worker's credit note gives back a share of what was paid, and amount_paid is what the
customer was charged, tax included: so the note's amount includes tax as it was paid. The input
says nothing of tax, so the note cannot split it out; the invoice app shows it as tax-inclusive."""


def credit_note_display_number(reseller_id: str, number: int) -> str:
    """The number as an invoice app shows it: `CN-<reseller>-000042`. Six digits keep the first
    million in sort order; a larger number simply grows (never cut), so each stays unique."""
    if number < 1:
        raise DomainError(f"credit-note numbers start at 1, got {number}")
    return f"{CREDIT_NOTE_PREFIX}-{reseller_id}-{number:0{CREDIT_NOTE_DIGITS}d}"


def number_in_order(resellers: Iterable[str], first_numbers: Mapping[str, int]) -> list[int]:
    """The numbers of notes issued in this order (one reseller per note), each reseller counting
    on from its first reserved number: a batch numbers its notes in the order they were read."""
    following = dict(first_numbers)
    numbers = []
    for reseller in resellers:
        numbers.append(following[reseller])
        following[reseller] += 1
    return numbers
