"""The `data` of operator adjustments (contract section 8): the request, and the two answers to it.

`balance-adjustment-requested` is checked here for its shape: types, bounds, the money's pattern,
and that each kind carries what it needs (an amount unless a reversal, the transaction of a
transaction refund, the target of a reversal). What needs the currency's digits is checked where the
amounts are read with their currency (worker/adjustments/commands.py), and the rules decide the rest:
a credit of zero is well-formed, and answered `adjustment-rejected` with `invalid_amount`.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, Field, Strict, model_validator
from pydantic_core import InitErrorDetails

from schemas.inputs import InputData
from schemas.limits import MONEY_MAX_LENGTH, PERMISSIONS_MAX_ITEMS
from schemas.outputs import OutputData, exact_signed
from schemas.wire import (
    MONEY_PATTERN,
    SIGNED_MONEY_PATTERN,
    CurrencyCode,
    Identifier,
    MoneyText,
    NameText,
    NonBlankStr,
    OptionalText,
    ReasonText,
    SignedMoneyText,
    Timestamp,
    invalid,
    refuse,
)


class AdjustmentKind(StrEnum):
    CREDIT = "credit"
    CORRECTION = "correction"
    TRANSACTION_REFUND = "transaction_refund"
    REVERSAL = "reversal"


class AdjustmentRejectionReason(StrEnum):
    FORBIDDEN = "forbidden"
    INVALID_AMOUNT = "invalid_amount"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    EXCEEDS_REFUNDABLE = "exceeds_refundable"
    UNKNOWN_TARGET = "unknown_target"
    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_REVERSIBLE = "not_reversible"
    ALREADY_REVERSED = "already_reversed"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """Section 9: a charge back only for retail, a cancelled payment only for corporate accounts."""
    EXCEEDS_PAYMENT = "exceeds_payment"
    """Section 9: more than what is left of the payment."""


class RejectedKind(StrEnum):
    """`adjustment-rejected.kind`: an adjustment's kind, or a money refund (section 9)."""

    CREDIT = "credit"
    CORRECTION = "correction"
    TRANSACTION_REFUND = "transaction_refund"
    REVERSAL = "reversal"
    MONEY_REFUND = "money_refund"


Kind = Annotated[AdjustmentKind, Strict(False)]
"""The kind's value, also from a structured-mode event's decoded object (strict takes only members)."""

# The money's shape is enforced natively here (the wire types only document it), so that the text is
# a decimal before any rule reads it; its digits per currency are checked with the currency.
AmountText = Annotated[MoneyText, Field(pattern=MONEY_PATTERN)]
SignedAmountText = Annotated[
    str,
    Field(
        max_length=MONEY_MAX_LENGTH,
        pattern=SIGNED_MONEY_PATTERN,
        description="decimal string, at most the currency's minor digits; `-` for a correction down",
    ),
]
ExactSignedAmountText = Annotated[SignedMoneyText, Field(pattern=SIGNED_MONEY_PATTERN)]


class AdjustedTransaction(BaseModel):
    """The charge a transaction refund refunds, in the request's currency."""

    model_config = InputData.model_config

    transaction_id: Identifier
    amount: AmountText
    """The transaction's full amount; the first one stated for it is kept."""
    description: OptionalText | None = None
    """For humans."""


class AdjustmentActor(BaseModel):
    """Who acts, as the admin portal authenticated them."""

    model_config = InputData.model_config

    id: NameText
    reseller_id: Identifier
    permissions: Annotated[list[NameText], Field(max_length=PERMISSIONS_MAX_ITEMS)]
    """`finance:manage` or `*` may adjust credits."""


class BalanceAdjustmentRequested(InputData):
    account_id: Identifier
    reseller_id: Identifier
    currency: CurrencyCode
    """Which of the account's balances."""
    kind: Kind
    amount: SignedAmountText | None = None
    """Required but for a reversal (where it is ignored); only a correction is meant to be negative."""
    transaction: AdjustedTransaction | None = None
    """Required for a transaction refund."""
    reverses: Identifier | None = None
    """Required for a reversal: the adjustment_id of an earlier adjustment, or the refund_id of an
    automatic termination refund."""
    reason: ReasonText
    requested_at: Timestamp
    actor: AdjustmentActor

    @model_validator(mode="after")
    def _what_the_kind_needs(self) -> Self:
        errors: list[InitErrorDetails] = []
        if self.kind is not AdjustmentKind.REVERSAL and self.amount is None:
            errors.append(
                invalid(("amount",), None, f"a {self.kind} needs an amount (null only for a reversal)")
            )
        if self.kind is AdjustmentKind.TRANSACTION_REFUND and self.transaction is None:
            errors.append(invalid(("transaction",), None, "a transaction_refund names its transaction"))
        if self.kind is AdjustmentKind.REVERSAL and self.reverses is None:
            errors.append(
                invalid(("reverses",), None, "a reversal names the adjustment or refund it reverses")
            )
        if errors:
            refuse(type(self).__name__, errors)
        return self


class BalanceAdjusted(OutputData):
    adjustment_id: NonBlankStr
    """The request's ce_id."""
    kind: AdjustmentKind
    account_id: NonBlankStr
    reseller_id: NonBlankStr
    currency: CurrencyCode
    delta: ExactSignedAmountText
    balance: ExactSignedAmountText
    """Never below zero: an adjustment that would take it there is rejected."""
    balance_version: Annotated[int, Field(ge=1)]
    """The same counter as credits-updated's: +1 per change of the account and currency."""
    transaction_id: NonBlankStr | None
    """The transaction refunded; also on the reversal of a transaction refund."""
    reverses: NonBlankStr | None
    """What a reversal takes back."""
    reason: NonBlankStr
    requested_by: NonBlankStr
    """The actor's id."""
    applied_at: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors: list[InitErrorDetails] = []
        for field in ("delta", "balance"):
            exact_signed(errors, field, getattr(self, field), self.currency)
        delta = Decimal(self.delta)
        if self.kind in (AdjustmentKind.CREDIT, AdjustmentKind.TRANSACTION_REFUND) and delta <= 0:
            errors.append(invalid(("delta",), self.delta, f"a {self.kind} raises the balance"))
        if self.kind is AdjustmentKind.CORRECTION and delta == 0:
            errors.append(invalid(("delta",), self.delta, "a correction changes the balance"))
        if Decimal(self.balance) < 0:
            errors.append(
                invalid(("balance",), self.balance, "an adjustment never leaves a balance below zero")
            )
        if (self.kind is AdjustmentKind.TRANSACTION_REFUND) and self.transaction_id is None:
            errors.append(invalid(("transaction_id",), None, "a transaction refund names its transaction"))
        if (self.kind is AdjustmentKind.REVERSAL) != (self.reverses is not None):
            errors.append(
                invalid(("reverses",), self.reverses, "a reversal, and only one, names what it reverses")
            )
        if (
            self.kind in (AdjustmentKind.CREDIT, AdjustmentKind.CORRECTION)
            and self.transaction_id is not None
        ):
            errors.append(
                invalid(("transaction_id",), self.transaction_id, f"a {self.kind} names no transaction")
            )
        if errors:
            refuse(type(self).__name__, errors)
        return self


class AdjustmentRejected(OutputData):
    request_id: NonBlankStr
    """The request's ce_id."""
    account_id: NonBlankStr
    reseller_id: NonBlankStr
    kind: RejectedKind
    reason_code: AdjustmentRejectionReason
    detail: NonBlankStr
    """For humans; names the figure that decided (the balance, what is left of the transaction)."""
