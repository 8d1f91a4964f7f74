"""What an operator asks of an account's credits (contract section 8), and what the rules answer.

The rules themselves are in worker/domain/adjustments.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from worker.domain.account_facts import AdjustmentKind
from worker.domain.errors import InvalidAdjustment, InvalidAmount
from worker.domain.money import MAX_MINOR_DIGITS, Currency, Money

FINANCE_MANAGE = "finance:manage"
EVERY_PERMISSION = "*"
ADJUSTING_PERMISSIONS = frozenset({FINANCE_MANAGE, EVERY_PERMISSION})


class RefusalCode(StrEnum):
    FORBIDDEN = "forbidden"
    INVALID_AMOUNT = "invalid_amount"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    EXCEEDS_REFUNDABLE = "exceeds_refundable"
    UNKNOWN_TARGET = "unknown_target"
    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_REVERSIBLE = "not_reversible"
    ALREADY_REVERSED = "already_reversed"
    # money refunds (section 9)
    METHOD_NOT_ALLOWED = "method_not_allowed"
    EXCEEDS_PAYMENT = "exceeds_payment"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the admin portal authenticated them."""

    id: str
    reseller_id: str
    permissions: frozenset[str] = frozenset()


def forbidden_detail(actor: Actor, reseller_id: str) -> str | None:
    """Why `actor` may not change the credits of `reseller_id`'s accounts, or None when it may: it acts
    for that reseller and holds finance:manage or * (contract sections 8 and 9)."""
    if actor.reseller_id != reseller_id:
        return f"{actor.id} acts for reseller {actor.reseller_id}, not {reseller_id}"
    if not actor.permissions & ADJUSTING_PERMISSIONS:
        return f"{actor.id} holds neither {FINANCE_MANAGE} nor {EVERY_PERMISSION}"
    return None


@dataclass(frozen=True, slots=True)
class Transaction:
    """The charge a transaction refund refunds, with its full amount, in the request's currency."""

    transaction_id: str
    amount: Money
    description: str | None = None


@dataclass(frozen=True, slots=True)
class AdjustmentRequest:
    adjustment_id: str
    """The request's ce_id."""
    reseller_id: str
    account_id: str
    kind: AdjustmentKind
    currency: Currency
    amount: int | None
    """Signed minor units; None only for a reversal, which moves by the opposite of its target's change."""
    actor: Actor
    reason: str
    requested_at: datetime
    transaction: Transaction | None = None
    reverses: str | None = None
    """The adjustment_id, or a termination's refund_id, that a reversal takes back."""

    def __post_init__(self) -> None:
        if self.kind is not AdjustmentKind.REVERSAL and self.amount is None:
            raise InvalidAdjustment(f"a {self.kind} needs an amount")
        if self.amount is not None and abs(self.amount) >= 10**MAX_MINOR_DIGITS:
            raise InvalidAmount(f"amount has more than {MAX_MINOR_DIGITS} digits of minor units")
        if self.kind is AdjustmentKind.TRANSACTION_REFUND and self.transaction is None:
            raise InvalidAdjustment("a transaction_refund names the transaction it refunds")
        if self.transaction is not None and self.transaction.amount.currency != self.currency:
            raise InvalidAdjustment(
                f"transaction {self.transaction.transaction_id} is in {self.transaction.amount.currency}, "
                f"the request in {self.currency}"
            )
        if self.kind is AdjustmentKind.REVERSAL and self.reverses is None:
            raise InvalidAdjustment("a reversal names the adjustment or refund it reverses")

    @property
    def change(self) -> int:
        """The signed amount of a credit, correction or transaction refund."""
        if self.amount is None:
            raise InvalidAdjustment(f"a {self.kind} without an amount has no change")
        return self.amount

    @property
    def refunded(self) -> Transaction:
        if self.transaction is None:
            raise InvalidAdjustment(f"a {self.kind} without a transaction refunds none")
        return self.transaction

    @property
    def target(self) -> str:
        if self.reverses is None:
            raise InvalidAdjustment(f"a {self.kind} without `reverses` reverses nothing")
        return self.reverses


@dataclass(frozen=True, slots=True)
class Applied:
    """The adjustment changes the balance by `delta`, to `balance` (both signed minor units)."""

    adjustment_id: str
    kind: AdjustmentKind
    currency: Currency
    delta: int
    balance: int
    detail: str
    transaction_id: str | None = None
    """The transaction refunded, also when a transaction refund is reversed (its amount is freed)."""
    reverses: str | None = None
    refund_id: str | None = None
    """The termination's refund whose credits a reversal takes back."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A well-formed request the rules refuse: nothing changes."""

    adjustment_id: str
    kind: AdjustmentKind
    code: RefusalCode
    detail: str


Decision = Applied | Refused
