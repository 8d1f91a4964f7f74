"""What an account already knows when an operator adjusts its credits (contract section 8).

The adjustment rules (worker/domain/adjustments.py) judge a request against these facts: the
account's balance per currency, the transactions refunded so far, and the earlier entries a reversal
can name. Facts are per account of one reseller: an id not among them is not this account's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from worker.domain.errors import DomainError, InvalidAmount
from worker.domain.money import Currency, Money
from worker.domain.policy import RefundMethod


class AdjustmentKind(StrEnum):
    CREDIT = "credit"
    CORRECTION = "correction"
    TRANSACTION_REFUND = "transaction_refund"
    REVERSAL = "reversal"


class EntryKind(StrEnum):
    """What an earlier change of the account's credits was: an adjustment, or a termination's refund."""

    CREDIT = "credit"
    CORRECTION = "correction"
    TRANSACTION_REFUND = "transaction_refund"
    REVERSAL = "reversal"
    TERMINATION_REFUND = "termination_refund"


@dataclass(frozen=True, slots=True)
class TransactionFacts:
    """A charge refunded before: its full amount as first stated, and what its unreversed refunds took."""

    amount: Money
    refunded: int = 0
    """Minor units of the transaction's currency."""

    def __post_init__(self) -> None:
        if not 0 <= self.refunded <= self.amount.minor:
            raise InvalidAmount(
                f"a transaction of {figure(self.amount.minor, self.currency)} cannot have "
                f"{figure(self.refunded, self.amount.currency)} refunded"
            )

    @property
    def currency(self) -> Currency:
        return self.amount.currency

    @property
    def left(self) -> int:
        """What may still be refunded of it, in minor units."""
        return self.amount.minor - self.refunded


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """An earlier change of this account's credits, which a reversal may name."""

    kind: EntryKind
    currency: Currency
    delta: int
    """The signed change it made, in minor units (zero for a refund paid as a credit note)."""
    reversed: bool = False
    transaction_id: str | None = None
    """The transaction a transaction refund refunded (freed again when it is reversed)."""
    method: RefundMethod | None = None
    """How a termination's refund was paid; None for an adjustment."""

    def __post_init__(self) -> None:
        if (self.kind is EntryKind.TERMINATION_REFUND) != (self.method is not None):
            raise DomainError(f"a termination refund, and only one, has a refund method (a {self.kind})")
        if (self.kind is EntryKind.TRANSACTION_REFUND) != (self.transaction_id is not None):
            raise DomainError(f"a transaction refund, and only one, names its transaction (a {self.kind})")

    @property
    def moved_no_credits(self) -> bool:
        """A refund paid as the operator's credit note: there are no credits to take back."""
        return self.method is RefundMethod.CREDIT_NOTE


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """One account's credits as the rules see them; ids are the account's own, within its reseller."""

    reseller_id: str
    account_id: str
    balances: Mapping[Currency, int] = field(default_factory=dict)
    """Minor units per currency; a currency not listed has a balance of zero."""
    transactions: Mapping[str, TransactionFacts] = field(default_factory=dict)
    entries: Mapping[str, EntryFacts] = field(default_factory=dict)
    """By adjustment_id, or by refund_id for a termination's refund."""

    def __post_init__(self) -> None:
        # Read-only views, so that a frozen AccountFacts cannot change behind a decision's back.
        for name in ("balances", "transactions", "entries"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def balance(self, currency: Currency) -> int:
        return self.balances.get(currency, 0)


def figure(minor: int, currency: Currency) -> str:
    """A signed amount as people read it, with the currency's digits: `12.50 SGD`, `-5.00 SGD`."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{Money(abs(minor), currency)} {currency}"
