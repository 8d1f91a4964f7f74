"""The `data` of the double-refund guard (contract section 10): the invoice app's credit notes in,
conflicts out.

A `credit-note-issued` is keyed by its subscription_id, or by its account_id when it is for no
subscription (schemas/topics.py names both).
"""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, model_validator
from pydantic_core import InitErrorDetails

from schemas.adjustments import AmountText
from schemas.inputs import InputData
from schemas.money import CurrencyCode, ExactMoneyText, exact_money, money_minor
from schemas.outputs import OutputData
from schemas.refusals import attempt, refuse
from schemas.wire import Identifier, NameText, NonBlankStr, Timestamp


class CreditNoteIssued(InputData):
    credit_note_id: Identifier
    reseller_id: Identifier
    account_id: Identifier
    subscription_id: Identifier | None
    """The subscription it refunds; null: recorded, and never linked to a termination automatically."""
    amount: AmountText
    currency: CurrencyCode
    issued_at: Timestamp
    number: NameText
    """The invoice app's own number, text."""

    @model_validator(mode="after")
    def _amount_in_currency(self) -> Self:
        errors: list[InitErrorDetails] = []
        attempt(errors, ("amount",), self.amount, lambda: money_minor(self.amount, self.currency))
        if errors:
            refuse(type(self).__name__, errors)
        return self


class RefundConflictDetected(OutputData):
    subscription_id: NonBlankStr
    refund_id: NonBlankStr
    """The subscription's automatic refund (method account_credit), which finance may reverse."""
    credit_note_id: NonBlankStr
    """The invoice app's note that arrived after it."""
    amount: ExactMoneyText
    """The note's amount."""
    currency: CurrencyCode
    account_id: NonBlankStr
    reseller_id: NonBlankStr
    detected_at: AwareDatetime

    @model_validator(mode="after")
    def _exact_amount(self) -> Self:
        errors: list[InitErrorDetails] = []
        attempt(errors, ("amount",), self.amount, lambda: exact_money(self.amount, self.currency))
        if errors:
            refuse(type(self).__name__, errors)
        return self
