"""The `data` of money refunds through the payment service (contract section 9).

Inputs: `money-refund-requested` (from the admin portal) and `payment-refund-settled` (from the
payment service). Outputs: `payment-refund-instructed` (to the payment service) and
`money-refund-updated`. The inputs are checked for their shape here, amounts within the currency's
digits included; the rules decide the rest (an amount of zero is well-formed, and answered
`adjustment-rejected` with kind `money_refund` and `invalid_amount`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, Strict, model_validator
from pydantic_core import InitErrorDetails

from schemas.adjustments import AdjustmentActor, AmountText
from schemas.inputs import InputData
from schemas.money import CurrencyCode, ExactMoneyText, exact_money, money_minor
from schemas.outputs import OutputData
from schemas.refusals import attempt, invalid, refuse
from schemas.wire import Identifier, NonBlankStr, OptionalText, ReasonText, Timestamp


class AccountType(StrEnum):
    RETAIL = "retail"
    CORPORATE = "corporate"


class MoneyRefundMethod(StrEnum):
    CHARGE_BACK = "charge_back"
    """Through the gateway that took a retail account's card payment."""
    CANCEL_PAYMENT = "cancel_payment"
    """A corporate account's payment, cancelled."""


class SettlementStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class MoneyRefundStatus(StrEnum):
    """`money-refund-updated.status`: instructed, then settled, or overdue while still open."""

    INSTRUCTED = "instructed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    OVERDUE = "overdue"


class RefundedPayment(BaseModel):
    """The payment money goes back from, with its full amount; its currency is the request's."""

    model_config = InputData.model_config

    payment_id: Identifier
    amount: AmountText
    """The payment's full amount; the first one stated for it is kept."""
    currency: CurrencyCode


class MoneyRefundRequested(InputData):
    account_id: Identifier
    reseller_id: Identifier
    account_type: Annotated[AccountType, Strict(False)]
    method: Annotated[MoneyRefundMethod, Strict(False)]
    """`charge_back` for a retail account, `cancel_payment` for a corporate one (else method_not_allowed)."""
    payment: RefundedPayment
    amount: AmountText
    """In the payment's currency; zero is well-formed and refused by the rules as invalid_amount."""
    from_balance: bool
    """Take the money out of the account's available credits first."""
    reason: ReasonText
    requested_at: Timestamp
    actor: AdjustmentActor

    @model_validator(mode="after")
    def _amounts_in_currency(self) -> Self:
        errors: list[InitErrorDetails] = []
        currency = self.payment.currency
        amount, paid = self.amount, self.payment.amount
        attempt(errors, ("amount",), amount, lambda: money_minor(amount, currency))
        attempt(errors, ("payment", "amount"), paid, lambda: money_minor(paid, currency))
        if errors:
            refuse(type(self).__name__, errors)
        return self


class PaymentRefundSettled(InputData):
    instruction_id: Identifier
    reseller_id: Identifier
    account_id: Identifier
    status: Annotated[SettlementStatus, Strict(False)]
    detail: OptionalText | None = None
    """For humans: the gateway's reference or why it failed."""
    settled_at: Timestamp


def _exact(errors: list[InitErrorDetails], loc: tuple[str, ...], text: str, currency: str) -> None:
    attempt(errors, loc, text, lambda: exact_money(text, currency))


class PaymentRefundInstructed(OutputData):
    instruction_id: NonBlankStr
    request_id: NonBlankStr
    """The money-refund-requested event's ce_id."""
    payment_id: NonBlankStr
    method: MoneyRefundMethod
    amount: ExactMoneyText
    currency: CurrencyCode
    account_id: NonBlankStr
    reseller_id: NonBlankStr

    @model_validator(mode="after")
    def _above_zero(self) -> Self:
        errors: list[InitErrorDetails] = []
        _exact(errors, ("amount",), self.amount, self.currency)
        if not errors and exact_money(self.amount, self.currency) == 0:
            errors.append(invalid(("amount",), self.amount, "an instruction returns an amount above zero"))
        if errors:
            refuse(type(self).__name__, errors)
        return self


class MoneyRefundUpdated(OutputData):
    instruction_id: NonBlankStr
    request_id: NonBlankStr
    payment_id: NonBlankStr
    method: MoneyRefundMethod
    account_id: NonBlankStr
    reseller_id: NonBlankStr
    amount: ExactMoneyText
    currency: CurrencyCode
    from_balance: bool
    status: MoneyRefundStatus
    detail: NonBlankStr | None
    """For humans: what happened (the payment service's detail once settled)."""
    updated_at: AwareDatetime

    @model_validator(mode="after")
    def _exact_amount(self) -> Self:
        errors: list[InitErrorDetails] = []
        _exact(errors, ("amount",), self.amount, self.currency)
        if errors:
            refuse(type(self).__name__, errors)
        return self
