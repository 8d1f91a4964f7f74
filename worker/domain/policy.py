"""The refund policy (v1): what a termination request gives back, and how.

Checked in order, the first rule that applies decides:
1. "Allow Refund" off            -> nothing, refund_disabled
2. a trial, or nothing was paid  -> nothing, nothing_paid
3. asked on or after the cycle end -> nothing, outside_cycle
4. within the window              -> everything, full_within_window
5. otherwise the current month is kept; the unused whole months are refunded, rounded down.

All comparisons are on the customer's local calendar dates, never on instants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from worker.domain.calendar import add_months, local_date, whole_months_elapsed
from worker.domain.errors import DomainError, InvalidCycle
from worker.domain.money import Money

DEFAULT_WINDOW_DAYS = 14


class Rule(StrEnum):
    FULL_WITHIN_WINDOW = "full_within_window"
    UNUSED_MONTHS = "unused_months"
    CREDIT_NOTE = "credit_note"


class NoRefundReason(StrEnum):
    REFUND_DISABLED = "refund_disabled"
    NOTHING_PAID = "nothing_paid"
    OUTSIDE_CYCLE = "outside_cycle"
    NO_UNUSED_MONTHS = "no_unused_months"
    EXPIRED = "expired"


class RefundMethod(StrEnum):
    ACCOUNT_CREDIT = "account_credit"
    CREDIT_NOTE = "credit_note"


class CreditNoteInvalid(DomainError):
    """The chosen credit note cannot be the refund (amount zero, or above what was paid)."""

    reason_code = "credit_note_invalid"


@dataclass(frozen=True, slots=True)
class RefundPolicy:
    window_days: int = DEFAULT_WINDOW_DAYS

    def __post_init__(self) -> None:
        if self.window_days < 0:
            raise DomainError(f"the refund window must not be negative, got {self.window_days}")


@dataclass(frozen=True, slots=True)
class Cycle:
    start: date
    months: int

    def __post_init__(self) -> None:
        if self.months < 1:
            raise InvalidCycle(f"a cycle lasts at least one month, got {self.months}")
        try:
            add_months(self.start, self.months)
        except (ValueError, OverflowError):
            raise InvalidCycle(
                f"a cycle of {self.months} months from {self.start} ends past the calendar's last year"
            ) from None

    @property
    def end(self) -> date:
        return add_months(self.start, self.months)


@dataclass(frozen=True, slots=True)
class CreditNoteChoice:
    """A credit note the operator already sent from the invoice app, chosen as the refund."""

    credit_note_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class TerminationTerms:
    """What the policy needs to know about one termination request."""

    cycle: Cycle
    amount_paid: Money
    requested_at: datetime
    allow_refund: bool
    timezone: str = "UTC"
    is_trial: bool = False
    credit_note: CreditNoteChoice | None = None


@dataclass(frozen=True, slots=True)
class RefundDecision:
    amount: Money
    months_refunded: int
    cycle_months: int
    rule: Rule | None
    no_refund_reason: NoRefundReason | None
    method: RefundMethod | None
    policy_amount: Money
    """What the policy alone gives; differs from `amount` when a credit note is the refund."""
    credit_note: CreditNoteChoice | None = None

    @property
    def refundable(self) -> bool:
        return not self.amount.is_zero

    @property
    def issues_own_credit_note(self) -> bool:
        """The worker issues, and numbers, a credit note of its own: the refund is an account
        credit. With an operator's note chosen, the refund is that note (contract section 2)."""
        return self.method is RefundMethod.ACCOUNT_CREDIT

    @property
    def credits_account(self) -> bool:
        """The refund is added to the account's available credits (a balance change)."""
        return self.method is RefundMethod.ACCOUNT_CREDIT


DEFAULT_POLICY = RefundPolicy()


def decide_refund(terms: TerminationTerms, policy: RefundPolicy = DEFAULT_POLICY) -> RefundDecision:
    """The refund for `terms`; raises CreditNoteInvalid when the chosen credit note cannot back it."""
    refused = _refusal(terms)
    if refused is not None:
        return _no_refund(terms, refused)
    rule, months = _policy_share(terms, policy)
    policy_amount = terms.amount_paid.share(months, terms.cycle.months)
    if terms.credit_note is not None:
        return _by_credit_note(terms, terms.credit_note, months, policy_amount)
    if policy_amount.is_zero:
        return _no_refund(terms, NoRefundReason.NO_UNUSED_MONTHS)
    return RefundDecision(
        amount=policy_amount,
        months_refunded=months,
        cycle_months=terms.cycle.months,
        rule=rule,
        no_refund_reason=None,
        method=RefundMethod.ACCOUNT_CREDIT,
        policy_amount=policy_amount,
    )


def _refusal(terms: TerminationTerms) -> NoRefundReason | None:
    """Rules 1-3: the reasons that refuse any refund, credit note or not."""
    if not terms.allow_refund:
        return NoRefundReason.REFUND_DISABLED
    if terms.is_trial or terms.amount_paid.is_zero:
        return NoRefundReason.NOTHING_PAID
    if local_date(terms.requested_at, terms.timezone) >= terms.cycle.end:
        return NoRefundReason.OUTSIDE_CYCLE
    return None


def _policy_share(terms: TerminationTerms, policy: RefundPolicy) -> tuple[Rule, int]:
    """Rules 4-5 for a request inside the cycle: every month within the window, else the unused ones."""
    asked_on = local_date(terms.requested_at, terms.timezone)
    days_in = max((asked_on - terms.cycle.start).days, 0)  # a date before the start counts as day 0
    if days_in <= policy.window_days:
        return Rule.FULL_WITHIN_WINDOW, terms.cycle.months
    current_month = whole_months_elapsed(terms.cycle.start, asked_on)
    return Rule.UNUSED_MONTHS, terms.cycle.months - current_month - 1


def _by_credit_note(
    terms: TerminationTerms, note: CreditNoteChoice, months: int, policy_amount: Money
) -> RefundDecision:
    if note.amount.currency != terms.amount_paid.currency:
        raise CreditNoteInvalid(
            f"credit note {note.credit_note_id} is in {note.amount.currency}, "
            f"the subscription in {terms.amount_paid.currency}"
        )
    if note.amount.is_zero:
        raise CreditNoteInvalid(f"credit note {note.credit_note_id} is for {note.amount}: nothing")
    if note.amount > terms.amount_paid:
        raise CreditNoteInvalid(
            f"credit note {note.credit_note_id} is for {note.amount}, "
            f"more than the {terms.amount_paid} paid for this cycle"
        )
    return RefundDecision(
        amount=note.amount,
        months_refunded=months,
        cycle_months=terms.cycle.months,
        rule=Rule.CREDIT_NOTE,
        no_refund_reason=None,
        method=RefundMethod.CREDIT_NOTE,
        policy_amount=policy_amount,
        credit_note=note,
    )


def _no_refund(terms: TerminationTerms, reason: NoRefundReason) -> RefundDecision:
    zero = Money.zero(terms.amount_paid.currency)
    return RefundDecision(
        amount=zero,
        months_refunded=0,
        cycle_months=terms.cycle.months,
        rule=None,
        no_refund_reason=reason,
        method=None,
        policy_amount=zero,
    )
