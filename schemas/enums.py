"""The enum values the output events carry, exactly as the contract lists them (section 1).

They are the contract's own: the refund rules have enums of the same values (`worker.domain.policy`,
`worker.domain.never_twice`), and the worker maps those to these where it builds an event
(worker/terminations/events.py); tests/unit/test_wire_matches_domain.py keeps the two from drifting.
"""

from __future__ import annotations

from enum import StrEnum


class RefundMethod(StrEnum):
    """`refund-issued.method`: how the refund reaches the customer."""

    ACCOUNT_CREDIT = "account_credit"
    CREDIT_NOTE = "credit_note"


class Rule(StrEnum):
    """`rule`: which rule of the refund policy gave the refund."""

    FULL_WITHIN_WINDOW = "full_within_window"
    UNUSED_MONTHS = "unused_months"
    CREDIT_NOTE = "credit_note"


class NoRefundReason(StrEnum):
    """`subscription-terminated.no_refund_reason`: why a termination refunded nothing."""

    REFUND_DISABLED = "refund_disabled"
    NOTHING_PAID = "nothing_paid"
    OUTSIDE_CYCLE = "outside_cycle"
    NO_UNUSED_MONTHS = "no_unused_months"
    EXPIRED = "expired"


class RejectionCode(StrEnum):
    """`termination-rejected.reason_code`: why a request was refused."""

    ALREADY_TERMINATED = "already_terminated"
    CREDIT_NOTE_ALREADY_USED = "credit_note_already_used"
    CREDIT_NOTE_INVALID = "credit_note_invalid"
    ACCOUNT_MISMATCH = "account_mismatch"


RejectionReason = RejectionCode
"""The same enum by the models' older name; the class keeps the name the published JSON Schemas use."""


class TerminationCause(StrEnum):
    CUSTOMER_REQUEST = "customer_request"
    EXPIRED = "expired"


class CreditsCause(StrEnum):
    """Why an account's available credits changed: a refund, an adjustment's kind, or a money refund
    (taken, or given back when it failed); open to more."""

    REFUND = "refund"
    CREDIT = "credit"
    CORRECTION = "correction"
    TRANSACTION_REFUND = "transaction_refund"
    REVERSAL = "reversal"
    MONEY_REFUND = "money_refund"
    """Credits taken for money returned through the payment service (section 9)."""
    MONEY_REFUND_FAILED = "money_refund_failed"
    """Those credits given back: the payment service could not return the money."""
