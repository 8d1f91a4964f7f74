"""From a `balance-adjustment-requested` event to the request the adjustment rules judge, and the
command the worker applies (the request with where it came from) and its result.

The event's model checks its shape; here its amounts are read with their currency, so that one with
more digits than the currency has is refused naming its field (a DomainError: poison for the worker,
exit 2 for the command line). What a kind does not use is dropped: a reversal's amount is ignored,
as the contract says, and so is a transaction named by anything but a transaction refund.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.adjustments import AdjustedTransaction, BalanceAdjustmentRequested
from worker.domain.account_facts import AdjustmentKind
from worker.domain.adjustment_requests import Actor, AdjustmentRequest, Decision, Transaction
from worker.domain.errors import DomainError, InvalidAmount
from worker.domain.money import Currency, Money


def adjustment_request(adjustment_id: str, data: BalanceAdjustmentRequested) -> AdjustmentRequest:
    """The request whose id is its event's ce_id, with amounts in minor units of its currency."""
    currency = Currency.of(data.currency)
    kind = AdjustmentKind(data.kind)
    amount = None
    if kind is not AdjustmentKind.REVERSAL and data.amount is not None:
        amount = signed_minor(data.amount, currency, "amount")
    transaction = None
    if kind is AdjustmentKind.TRANSACTION_REFUND and data.transaction is not None:
        transaction = _transaction(data.transaction, currency)
    return AdjustmentRequest(
        adjustment_id=adjustment_id,
        reseller_id=data.reseller_id,
        account_id=data.account_id,
        kind=kind,
        currency=currency,
        amount=amount,
        actor=Actor(data.actor.id, data.actor.reseller_id, frozenset(data.actor.permissions)),
        reason=data.reason,
        requested_at=data.requested_at,
        transaction=transaction,
        reverses=data.reverses if kind is AdjustmentKind.REVERSAL else None,
    )


def signed_minor(text: str, currency: Currency, field: str) -> int:
    """A decimal string with an optional `-`, at most the currency's digits, in signed minor units."""
    if text.startswith("-"):
        return -money(text[1:], currency, field).minor
    return money(text, currency, field).minor


def money(text: str, currency: Currency, field: str) -> Money:
    try:
        return Money.parse(text, currency)
    except DomainError as refused:
        raise InvalidAmount(f"{field}: {refused}") from None


def _transaction(stated: AdjustedTransaction, currency: Currency) -> Transaction:
    amount = money(stated.amount, currency, "transaction.amount")
    return Transaction(stated.transaction_id, amount, stated.description)


def signed_text(minor: int, currency: Currency) -> str:
    """Signed minor units as the contract writes money: `12.50`, `-5.00` (the inverse of signed_minor)."""
    return ("-" if minor < 0 else "") + str(Money(abs(minor), currency))


@dataclass(frozen=True, slots=True)
class AdjustmentCommand:
    """A validated adjustment request, with where it came from."""

    request: AdjustmentRequest
    payload_sha256: bytes
    partition: int | None = None
    offset: int | None = None


class Outcome(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    """The ce_id was seen before with another payload: not ours to decide, a dead letter."""


@dataclass(frozen=True, slots=True)
class AdjustmentResult:
    command: AdjustmentCommand
    outcome: Outcome
    decision: Decision | None = None
    """Applied or Refused; None for a redelivery."""
