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

from pydantic import AwareDatetime, ConfigDict, Field, model_validator
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
from schemas.output_base import OutputData
from schemas.refund_notes import IssuedCreditNote, LinkedCreditNote
from schemas.refusals import attempt, invalid, refuse
from schemas.wire import NonBlankStr

UNKNOWN_CURRENCY_AMOUNT = "0"
"""refund_amount of a termination whose currency the worker never learnt (an expiry)."""


ADJUSTMENT_CAUSES = frozenset(
    {CreditsCause.CREDIT, CreditsCause.CORRECTION, CreditsCause.TRANSACTION_REFUND, CreditsCause.REVERSAL}
)
"""The causes that are an adjustment's kind: the change names its adjustment_id."""
MONEY_REFUND_CAUSES = frozenset({CreditsCause.MONEY_REFUND, CreditsCause.MONEY_REFUND_FAILED})
"""The causes of a money refund (section 9): the change names its instruction_id."""


class RefundIssued(OutputData):
    # auto_linked and credit_notes (v2) default for whoever builds a refund, yet every published refund
    # carries them: the schema for consumers lists them as required.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

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
    auto_linked: bool = False
    """True when the refund is the subscription's unused notes from the invoice app, linked by the
    worker (section 10); `credit_note` is then the first of them."""
    credit_notes: tuple[LinkedCreditNote, ...] = ()
    """The notes linked automatically, oldest first, their amounts summing to `amount`; empty unless
    `auto_linked`."""

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
        errors.extend(self._linked_errors(amount))
        if self.months_refunded > self.cycle_months:
            errors.append(
                invalid(("months_refunded",), self.months_refunded, "more months than the cycle has")
            )
        if errors:
            refuse(type(self).__name__, errors)
        return self

    def _linked_errors(self, amount: int | None) -> list[InitErrorDetails]:
        errors: list[InitErrorDetails] = []
        if self.auto_linked != bool(self.credit_notes):
            message = "an auto-linked refund, and only one, lists its credit notes"
            return [invalid(("credit_notes",), len(self.credit_notes), message)]
        if not self.auto_linked:
            return errors
        if self.method is not RefundMethod.CREDIT_NOTE:
            errors.append(invalid(("auto_linked",), True, "an auto-linked refund is paid as credit notes"))
        amounts = [
            _exact(errors, ("credit_notes", "amount"), n.amount, self.currency) for n in self.credit_notes
        ]
        if None not in amounts and amount is not None and sum(a or 0 for a in amounts) != amount:
            errors.append(invalid(("credit_notes",), amount, "the linked notes sum to the refund's amount"))
        if self.credit_note.credit_note_id != self.credit_notes[0].credit_note_id:
            message = "credit_note is the first of the linked notes"
            errors.append(
                invalid(("credit_note", "credit_note_id"), self.credit_note.credit_note_id, message)
            )
        return errors


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
    instruction_id: NonBlankStr | None = None
    """The money refund's instruction when the cause is money_refund or money_refund_failed."""

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
        if (self.cause in MONEY_REFUND_CAUSES) != (self.instruction_id is not None):
            message = "a change caused by a money refund, and only one, names the instruction"
            errors.append(invalid(("instruction_id",), self.instruction_id, message))
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
    "LinkedCreditNote",
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
