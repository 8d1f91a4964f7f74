"""The data model of every topic, and the two ways in and out of them: validating and encoding.

validate_data(TerminationRequested, line)    -> TerminationRequested    (raises InvalidEventData, NotJson)
encode_data(refund_issued)                   -> b'{"refund_id":...}'
message_key(refund_issued)                   -> b"sub-1"
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.adjustments import (
    AdjustmentKind,
    AdjustmentRejected,
    AdjustmentRejectionReason,
    BalanceAdjusted,
    BalanceAdjustmentRequested,
)
from schemas.credit_notes import CreditNoteIssued, RefundConflictDetected
from schemas.errors import InvalidEventData, NotJson, describe
from schemas.inputs import (
    CreditNoteRequest,
    InputData,
    SubscriptionExpired,
    SubscriptionRenewed,
    TerminationRequested,
)
from schemas.money_refunds import (
    MoneyRefundRequested,
    MoneyRefundUpdated,
    PaymentRefundInstructed,
    PaymentRefundSettled,
)
from schemas.outputs import (
    UNKNOWN_CURRENCY_AMOUNT,
    CreditsCause,
    CreditsUpdated,
    IssuedCreditNote,
    NoRefundReason,
    OutputData,
    RefundIssued,
    RefundMethod,
    RejectionReason,
    Rule,
    SubscriptionTerminated,
    TerminationCause,
    TerminationRejected,
)
from schemas.topics import TOPICS, Topic, TopicSpec

DataT = TypeVar("DataT", bound=BaseModel)

INPUT_MODELS: Mapping[Topic, type[InputData]] = MappingProxyType(
    {
        Topic.TERMINATION_REQUESTED: TerminationRequested,
        Topic.SUBSCRIPTION_EXPIRED: SubscriptionExpired,
        Topic.SUBSCRIPTION_RENEWED: SubscriptionRenewed,
        Topic.BALANCE_ADJUSTMENT_REQUESTED: BalanceAdjustmentRequested,
        Topic.MONEY_REFUND_REQUESTED: MoneyRefundRequested,
        Topic.PAYMENT_REFUND_SETTLED: PaymentRefundSettled,
        Topic.CREDIT_NOTE_ISSUED: CreditNoteIssued,
    }
)
OUTPUT_MODELS: Mapping[Topic, type[OutputData]] = MappingProxyType(
    {
        Topic.REFUND_ISSUED: RefundIssued,
        Topic.CREDITS_UPDATED: CreditsUpdated,
        Topic.SUBSCRIPTION_TERMINATED: SubscriptionTerminated,
        Topic.TERMINATION_REJECTED: TerminationRejected,
        Topic.BALANCE_ADJUSTED: BalanceAdjusted,
        Topic.ADJUSTMENT_REJECTED: AdjustmentRejected,
        Topic.PAYMENT_REFUND_INSTRUCTED: PaymentRefundInstructed,
        Topic.MONEY_REFUND_UPDATED: MoneyRefundUpdated,
        Topic.REFUND_CONFLICT_DETECTED: RefundConflictDetected,
    }
)
DATA_MODELS: Mapping[Topic, type[InputData | OutputData]] = MappingProxyType(
    {**INPUT_MODELS, **OUTPUT_MODELS}
)
"""The model of each topic's `data`, in the contract's order."""

_TOPIC_OF: Mapping[type[BaseModel], Topic] = {model: topic for topic, model in DATA_MODELS.items()}


def topic_of(model: type[BaseModel]) -> TopicSpec:
    """The topic whose events carry this model as data."""
    return TOPICS[_TOPIC_OF[model]]


def validate_data(model: type[DataT], raw: bytes | str | Mapping[str, Any]) -> DataT:
    """`raw` (JSON text, or an already decoded object from a structured-mode event) as `model`.

    Raises NotJson when the text is not JSON, InvalidEventData (fields named) when it does not fit.
    """
    subject = _TOPIC_OF.get(model, model.__name__)
    try:
        if isinstance(raw, bytes | str):
            return model.model_validate_json(raw)
        return model.model_validate(raw)
    except ValidationError as error:
        if any(detail["type"] == "json_invalid" for detail in error.errors()):
            raise NotJson(f"{subject} data is not JSON: {describe(error)}") from error
        raise InvalidEventData(str(subject), error) from error


def encode_data(data: OutputData) -> bytes:
    """The event's data as the Kafka value: compact JSON with the contract's field names."""
    return data.model_dump_json().encode()


def message_key(data: InputData | OutputData) -> bytes:
    """The Kafka key of an event with this data: its topic's key field (or, when that is null, its
    fallback: a credit note for no subscription is keyed by its account), UTF-8."""
    spec = topic_of(type(data))
    value: str | None = getattr(data, spec.key_field)
    if value is None and spec.key_fallback is not None:
        value = getattr(data, spec.key_fallback)
    if value is None:
        raise ValueError(f"{spec.topic} data has no {spec.key_field} to key it by")
    return value.encode()


__all__ = [
    "DATA_MODELS",
    "INPUT_MODELS",
    "OUTPUT_MODELS",
    "UNKNOWN_CURRENCY_AMOUNT",
    "AdjustmentKind",
    "AdjustmentRejected",
    "AdjustmentRejectionReason",
    "BalanceAdjusted",
    "BalanceAdjustmentRequested",
    "CreditNoteIssued",
    "CreditNoteRequest",
    "CreditsCause",
    "CreditsUpdated",
    "InputData",
    "IssuedCreditNote",
    "MoneyRefundRequested",
    "MoneyRefundUpdated",
    "NoRefundReason",
    "OutputData",
    "PaymentRefundInstructed",
    "PaymentRefundSettled",
    "RefundConflictDetected",
    "RefundIssued",
    "RefundMethod",
    "RejectionReason",
    "Rule",
    "SubscriptionExpired",
    "SubscriptionRenewed",
    "SubscriptionTerminated",
    "TerminationCause",
    "TerminationRejected",
    "TerminationRequested",
    "encode_data",
    "message_key",
    "topic_of",
    "validate_data",
]
