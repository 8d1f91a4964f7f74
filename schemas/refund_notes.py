"""The credit notes a `refund-issued` names: the worker's own or the operator's (`credit_note`), and
the invoice app's notes linked automatically (`credit_notes`, section 10)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from schemas.money import ExactMoneyText
from schemas.output_base import OutputData
from schemas.refusals import invalid, refuse
from schemas.wire import NonBlankStr


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


class LinkedCreditNote(OutputData):
    """A note from the invoice app that is the refund, linked automatically (section 10)."""

    credit_note_id: NonBlankStr
    number: NonBlankStr
    """The invoice app's own number, text."""
    amount: ExactMoneyText
    issued_at: AwareDatetime
