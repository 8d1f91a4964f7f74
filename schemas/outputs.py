"""The `data` of the events the worker publishes (contract section 1, outputs).

Field names and enum values are the contract's, exactly; extra fields are forbidden so that a typo in
the worker fails here rather than reaching the invoice and notification services. The JSON Schemas
published for consumers say the opposite on purpose (`additionalProperties: true`, schemas/export.py):
the contract lets fields be added, and a consumer's validator must let them through. Money is text with
exactly the currency's minor digits ("120.00" SGD, "1200" JPY). The few invariants the contract states
(a refund is above zero, no refund means a reason) are checked too, because a wrong event once
published cannot be taken back.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails

from schemas.enums import (
    CreditsCause,
    NoRefundReason,
    RefundMethod,
    RejectionReason,
    Rule,
    TerminationCause,
)
from schemas.money import CurrencyCode, ExactMoneyText, SignedMoneyText, exact_money
from schemas.refusals import attempt, invalid, refuse
from schemas.wire import NonBlankStr

UNKNOWN_CURRENCY_AMOUNT = "0"
"""refund_amount of a termination whose currency the worker never learnt (an expiry)."""


ADJUSTMENT_CAUSES = frozenset(
    {CreditsCause.CREDIT, CreditsCause.CORRECTION, CreditsCause.TRANSACTION_REFUND, CreditsCause.REVERSAL}
)
"""The causes that are an adjustment's kind: the change names its adjustment_id."""


class OutputData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class IssuedCreditNote(OutputData):
    # The fields added in v2 default to null for whoever builds a note, yet every published note
    # carries them: the schema for consumers lists them as required.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    credit_note_id: NonBlankStr
    number: Annotated[int, Field(ge=1)] | None
    """The worker's own gap-free number per reseller; null for a note sent from the invoice app."""
    amount: ExactMoneyText
    issued_at: AwareDatetime | None
    """When the worker issued its note; null for a note sent from the invoice app (not known here)."""
    display_number: NonBlankStr | None = None
    """The worker's own number as invoice apps show it, `CN-<reseller_id>-000042` (the same note as
    `number`); null for a note sent from the invoice app, which has its own number there."""
    reason: NonBlankStr | None = None
    """Why the worker issued its note: the termination request's reason; null for a note sent from the
    invoice app (its reason is the app's)."""
    amounts_include_tax: bool | None = None
    """True for the worker's own note: its amount is a share of what was paid, tax included as paid;
    null for a note sent from the invoice app (how it was computed is not known here)."""

    @model_validator(mode="after")
    def _own_note_complete(self) -> Self:
        own = self.number is not None
        described = (self.display_number, self.reason, self.amounts_include_tax)
        if own != (self.display_number is not None) or (own and None in described):
            message = "the worker's own note has number, display_number, reason and amounts_include_tax"
            refuse(type(self).__name__, [invalid(("display_number",), self.display_number, message)])
        return self


class RefundIssued(OutputData):
    refund_id: NonBlankStr
    request_id: NonBlankStr
    subscription_id: NonBlankStr
    account_id: NonBlankStr
    reseller_id: NonBlankStr
    amount: ExactMoneyText
    currency: CurrencyCode
    method: RefundMethod
    rule: Rule
    months_refunded: Annotated[int, Field(ge=0)]
    cycle_months: Annotated[int, Field(ge=1)]
    policy_amount: ExactMoneyText
    credit_note: IssuedCreditNote
    issued_at: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors: list[InitErrorDetails] = []
        currency = self.currency
        amount = _exact(errors, ("amount",), self.amount, currency)
        _exact(errors, ("policy_amount",), self.policy_amount, currency)
        _exact(errors, ("credit_note", "amount"), self.credit_note.amount, currency)
        if amount == 0:
            errors.append(
                invalid(("amount",), self.amount, "a refund-issued event is for an amount above zero")
            )
        if (self.method is RefundMethod.CREDIT_NOTE) != (self.rule is Rule.CREDIT_NOTE):
            errors.append(
                invalid(("rule",), self.rule, f"rule {self.rule} does not go with method {self.method}")
            )
        if self.months_refunded > self.cycle_months:
            errors.append(
                invalid(("months_refunded",), self.months_refunded, "more months than the cycle has")
            )
        if errors:
            refuse(type(self).__name__, errors)
        return self


class CreditsUpdated(OutputData):
    # adjustment_id (v2) defaults to null for whoever builds a refund's change, yet every published
    # change carries it: the schema for consumers lists it as required.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    account_id: NonBlankStr
    reseller_id: NonBlankStr
    currency: CurrencyCode
    delta: SignedMoneyText
    balance: SignedMoneyText
    balance_version: Annotated[int, Field(ge=1)]
    cause: CreditsCause
    refund_id: NonBlankStr | None
    """The termination's refund: the one that added the credits, or the one a reversal takes back."""
    updated_at: AwareDatetime
    adjustment_id: NonBlankStr | None = None
    """The operator's adjustment (the request's ce_id) when the cause is an adjustment's kind."""

    @model_validator(mode="after")
    def _exact_amounts(self) -> Self:
        errors: list[InitErrorDetails] = []
        for field in ("delta", "balance"):
            exact_signed(errors, field, getattr(self, field), self.currency)
        if self.cause is CreditsCause.REFUND and self.refund_id is None:
            errors.append(invalid(("refund_id",), None, "a change caused by a refund names the refund"))
        if self.refund_id is not None and self.cause not in (CreditsCause.REFUND, CreditsCause.REVERSAL):
            message = "only a refund, or the reversal of one, names a refund"
            errors.append(invalid(("refund_id",), self.refund_id, message))
        if (self.cause in ADJUSTMENT_CAUSES) != (self.adjustment_id is not None):
            message = "a change caused by an adjustment, and only one, names the adjustment"
            errors.append(invalid(("adjustment_id",), self.adjustment_id, message))
        if errors:
            refuse(type(self).__name__, errors)
        return self


class SubscriptionTerminated(OutputData):
    request_id: NonBlankStr | None
    """The termination-requested event's ce_id; null for an expiry."""
    subscription_id: NonBlankStr
    account_id: NonBlankStr
    reseller_id: NonBlankStr
    terminated_at: AwareDatetime
    cause: TerminationCause
    refund_amount: ExactMoneyText
    currency: CurrencyCode | None
    rule: Rule | None
    no_refund_reason: NoRefundReason | None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors = [*self._amount_errors(), *self._cause_errors()]
        if errors:
            refuse(type(self).__name__, errors)
        return self

    def _amount_errors(self) -> list[InitErrorDetails]:
        errors: list[InitErrorDetails] = []
        if self.currency is None:
            amount = None
            if self.refund_amount != UNKNOWN_CURRENCY_AMOUNT:
                message = f'without a currency the refund amount is "{UNKNOWN_CURRENCY_AMOUNT}"'
                errors.append(invalid(("refund_amount",), self.refund_amount, message))
        else:
            amount = _exact(errors, ("refund_amount",), self.refund_amount, self.currency)
        if errors:
            return errors
        refunded = amount is not None and amount != 0
        if refunded == (self.no_refund_reason is not None) or refunded != (self.rule is not None):
            message = "a refund has a rule and no no_refund_reason; no refund, a no_refund_reason and no rule"
            errors.append(invalid(("no_refund_reason",), self.no_refund_reason, message))
        return errors

    def _cause_errors(self) -> list[InitErrorDetails]:
        expired = self.cause is TerminationCause.EXPIRED
        if expired and (self.request_id is not None or self.no_refund_reason is not NoRefundReason.EXPIRED):
            message = "an expiry has no request_id and no_refund_reason expired"
            return [invalid(("cause",), self.cause, message)]
        if not expired and self.request_id is None:
            return [invalid(("request_id",), None, "a customer request names its request_id")]
        return []


class TerminationRejected(OutputData):
    request_id: NonBlankStr
    subscription_id: NonBlankStr
    account_id: NonBlankStr
    reason_code: RejectionReason
    detail: str


def _exact(errors: list[InitErrorDetails], loc: tuple[str, ...], text: str, currency: str) -> int | None:
    """The amount in minor units if `text` carries exactly the currency's digits, else None with the
    error recorded."""
    return attempt(errors, loc, text, lambda: exact_money(text, currency))


def exact_signed(errors: list[InitErrorDetails], field: str, text: str, currency: str) -> None:
    """Records an error unless `text` is a signed amount with exactly the currency's digits."""
    attempt(errors, (field,), text, lambda: exact_money(text, currency, signed=True))


__all__ = [
    "UNKNOWN_CURRENCY_AMOUNT",
    "CreditsCause",
    "CreditsUpdated",
    "IssuedCreditNote",
    "NoRefundReason",
    "OutputData",
    "RefundIssued",
    "RefundMethod",
    "RejectionReason",
    "Rule",
    "SubscriptionTerminated",
    "TerminationCause",
    "TerminationRejected",
    "exact_signed",
]
