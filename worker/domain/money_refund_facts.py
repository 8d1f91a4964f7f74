"""What an account knows of its money refunds (contract section 9): payments, instructions, credits.

The rules of a request (worker/domain/money_refunds.py) and of a settlement
(worker/domain/payment_settlements.py) judge against these facts. Facts are per account of one
reseller: a payment or instruction id not among them is not this account's. The balances are the
same available credits as section 8's (`AccountFacts.balances`): a money refund taken from the
balance debits them, a failed one gives them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from worker.domain.account_facts import figure
from worker.domain.errors import DomainError, InvalidAmount, InvalidMoneyRefund
from worker.domain.money import Currency, Money

DEFAULT_MONEY_REFUND_TIMEOUT_HOURS = 72
"""MONEY_REFUND_TIMEOUT_HOURS: how long an instruction may wait for its settlement before it is
reported overdue."""


class AccountType(StrEnum):
    RETAIL = "retail"
    CORPORATE = "corporate"


class MoneyRefundMethod(StrEnum):
    CHARGE_BACK = "charge_back"
    """Through the gateway that took a retail account's card payment."""
    CANCEL_PAYMENT = "cancel_payment"
    """A corporate account's payment, cancelled."""


ALLOWED_METHOD: Mapping[AccountType, MoneyRefundMethod] = MappingProxyType(
    {
        AccountType.RETAIL: MoneyRefundMethod.CHARGE_BACK,
        AccountType.CORPORATE: MoneyRefundMethod.CANCEL_PAYMENT,
    }
)
"""The one method each type of account may use."""


class InstructionState(StrEnum):
    INSTRUCTED = "instructed"
    """Open: sent to the payment service, not settled yet (overdue or not)."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """A payment money was returned from: its amount as first stated, and what its instructions that
    did not fail took."""

    amount: Money
    taken: int = 0
    """Minor units of the payment's currency."""

    def __post_init__(self) -> None:
        if not 0 <= self.taken <= self.amount.minor:
            raise InvalidAmount(
                f"a payment of {figure(self.amount.minor, self.currency)} cannot have "
                f"{figure(self.taken, self.currency)} returned"
            )

    @property
    def currency(self) -> Currency:
        return self.amount.currency

    @property
    def left(self) -> int:
        """What may still be returned of it, in minor units."""
        return self.amount.minor - self.taken


@dataclass(frozen=True, slots=True)
class InstructionFacts:
    """A money refund sent to the payment service, and how far it got."""

    request_id: str
    payment_id: str
    method: MoneyRefundMethod
    amount: Money
    debited: int
    """Minor units taken from the available credits (the amount with `from_balance`, else zero)."""
    instructed_at: datetime
    state: InstructionState = InstructionState.INSTRUCTED
    overdue_reported: bool = False

    def __post_init__(self) -> None:
        if self.debited not in (0, self.amount.minor):
            debited = figure(self.debited, self.currency)
            raise DomainError(f"an instruction debits all of its amount or nothing, not {debited}")
        if self.instructed_at.utcoffset() is None:
            raise DomainError("an instruction's time has an offset")

    @property
    def currency(self) -> Currency:
        return self.amount.currency

    @property
    def is_open(self) -> bool:
        return self.state is InstructionState.INSTRUCTED


@dataclass(frozen=True, slots=True)
class MoneyRefundFacts:
    """One account's payments, instructions and credits as the rules see them."""

    reseller_id: str
    account_id: str
    balances: Mapping[Currency, int] = field(default_factory=dict)
    """Minor units per currency; a currency not listed has a balance of zero."""
    payments: Mapping[str, PaymentFacts] = field(default_factory=dict)
    instructions: Mapping[str, InstructionFacts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("balances", "payments", "instructions"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def balance(self, currency: Currency) -> int:
        return self.balances.get(currency, 0)


@dataclass(frozen=True, slots=True)
class SettlementTimeout:
    """MONEY_REFUND_TIMEOUT_HOURS: fractions allowed (tests use seconds' worth), above zero."""

    hours: float = DEFAULT_MONEY_REFUND_TIMEOUT_HOURS

    def __post_init__(self) -> None:
        if not self.hours > 0:
            raise InvalidMoneyRefund(f"the money refund timeout must be above zero hours, got {self.hours}")

    @property
    def delta(self) -> timedelta:
        return timedelta(hours=self.hours)
