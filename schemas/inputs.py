"""The `data` of the events the worker consumes (contract section 1, inputs).

Strict about what they accept, so that a bad message is dead-lettered with the field named instead of
being half-understood, and bounded (every field has a maximum: schemas/limits.py): no coercion
("12" is not 12, "true" is not true), money as strings with at most the currency's digits, timestamps
with an offset only. Fields a producer adds beyond the contract are ignored.

Validate what came off the wire: JSON text (`model_validate_json`, the fast path) or the object a
structured-mode event decoded to. Dates and timestamps are read from text only, never from Python
`date`/`datetime` objects or numbers.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.limits import CYCLE_MONTHS_MAX
from schemas.money import CurrencyCode, MoneyText, money_minor
from schemas.refusals import attempt, refuse
from schemas.wire import Identifier, IsoDate, NameText, OptionalText, ReasonText, Timestamp, TimeZoneName

DEFAULT_TIME_ZONE = "UTC"


def _absent_if_null(default: Any, value_type: Any) -> BeforeValidator:
    """An explicit null in an optional field means "not given", as many producers write absent values."""
    return BeforeValidator(
        lambda value: default if value is None else value, json_schema_input_type=value_type | None
    )


class InputData(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, use_attribute_docstrings=True)


class CreditNoteRequest(BaseModel):
    """A credit note the operator already sent from the invoice app; its currency is the subscription's."""

    model_config = InputData.model_config

    credit_note_id: Identifier
    amount: MoneyText
    """Zero or above amount_paid is well-formed here; the rules reject it as credit_note_invalid."""


class TerminationRequested(InputData):
    subscription_id: Identifier
    account_id: Identifier
    reseller_id: Identifier
    """The portal owner."""
    product: OptionalText | None = None
    """For humans."""
    cycle_start: IsoDate
    """First day of the current paid cycle (purchase or last renewal)."""
    cycle_months: Annotated[int, Field(ge=1, le=CYCLE_MONTHS_MAX)]
    """1 monthly, 12 yearly, any custom length up to a hundred years."""
    amount_paid: MoneyText
    """What was charged for this cycle, in `currency`."""
    currency: CurrencyCode
    timezone: Annotated[TimeZoneName, _absent_if_null(DEFAULT_TIME_ZONE, str)] = DEFAULT_TIME_ZONE
    """The account's IANA zone; null or absent means UTC."""
    is_trial: Annotated[bool, _absent_if_null(False, bool)] = False
    """Null or absent means false."""
    allow_refund: bool
    """The reseller's "Allow Refund" portal setting."""
    requested_at: Timestamp
    """When the customer asked."""
    requested_by: NameText
    """The operator or user who asked."""
    reason: ReasonText
    """Why; the portal requires one."""
    credit_note: CreditNoteRequest | None = None
    """A credit note already sent from the invoice app, chosen instead of an automatic refund."""

    @model_validator(mode="after")
    def _amounts_in_currency(self) -> Self:
        """Every amount within the currency's digits, all bad ones reported together. Only the shape is
        checked: a credit note of zero or above amount_paid is well-formed, and the rules reject it as
        credit_note_invalid (a termination-rejected event); it is not a poison message."""
        try:  # the usual case, every amount fine, without the error collection below
            money_minor(self.amount_paid, self.currency)
            if self.credit_note is not None:
                money_minor(self.credit_note.amount, self.currency)
            return self
        except PydanticCustomError:
            pass
        errors: list[InitErrorDetails] = []
        paid = self.amount_paid
        attempt(errors, ("amount_paid",), paid, lambda: money_minor(paid, self.currency))
        if self.credit_note is not None:
            text = self.credit_note.amount
            attempt(errors, ("credit_note", "amount"), text, lambda: money_minor(text, self.currency))
        if errors:
            refuse(type(self).__name__, errors)
        return self


class SubscriptionExpired(InputData):
    subscription_id: Identifier
    account_id: Identifier
    reseller_id: Identifier
    expired_at: Timestamp


class SubscriptionRenewed(InputData):
    subscription_id: Identifier
    account_id: Identifier
    reseller_id: Identifier
    renewed_at: Timestamp
