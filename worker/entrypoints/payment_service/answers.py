"""What the simulated payment service answers to an instruction (contract section 9), decided by a
rule on the amount alone, so that a demo or a test picks the outcome by the amount it asks for.

The rule, on the last two digits of the amount in the currency's minor units:

- `13` fails (`50.13 SGD`, `1013 JPY`): `failed`, "card expired" for a charge back, "the bank
  refused to cancel the payment" for a cancelled payment;
- `99` is never answered (`20.99 SGD`): the instruction stays open until the worker reports it
  overdue;
- anything else succeeds, with a simulated gateway reference.

Pure: no I/O, no clock. A settlement is a function of the instruction and the instruction's time
alone, so a redelivered instruction is answered with the very same event (same `ce_id`, same data),
which the worker takes as a duplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from schemas.envelope import OutgoingMessage, binary_headers
from schemas.events import validate_data
from schemas.money import exact_money
from schemas.money_refunds import (
    MoneyRefundMethod,
    PaymentRefundInstructed,
    PaymentRefundSettled,
    SettlementStatus,
)
from schemas.topics import TOPICS, Topic

SIMULATOR_SOURCE = "/payment-simulator"
FAILING_ENDING = 13
SILENT_ENDING = 99
_ENDINGS = 100
_SETTLEMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:refund-worker:payment-simulator:settlements")
_FAILURES = {
    MoneyRefundMethod.CHARGE_BACK: "card expired",
    MoneyRefundMethod.CANCEL_PAYMENT: "the bank refused to cancel the payment",
}


@dataclass(frozen=True, slots=True)
class SimulatedAnswer:
    status: SettlementStatus
    detail: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """A settlement: its data, as the worker will read it, and the Kafka message that carries it."""

    data: PaymentRefundSettled
    message: OutgoingMessage


def simulated_answer(
    instruction_id: str, method: MoneyRefundMethod, amount_minor: int
) -> SimulatedAnswer | None:
    """The answer to an instruction by the rule on its amount (in minor units); None: no answer, ever."""
    if not is_answered(amount_minor):
        return None
    if amount_minor % _ENDINGS == FAILING_ENDING:
        return SimulatedAnswer(SettlementStatus.FAILED, _FAILURES[method])
    reference = uuid.uuid5(_SETTLEMENT_NAMESPACE, f"reference/{instruction_id}").hex[:8].upper()
    return SimulatedAnswer(SettlementStatus.SUCCEEDED, f"simulated gateway reference SIM-{reference}")


def is_answered(amount_minor: int) -> bool:
    """Whether the simulated service ever answers an instruction of this amount (minor units)."""
    return amount_minor % _ENDINGS != SILENT_ENDING


def settlement_id(instruction_id: str) -> str:
    """The settlement's `ce_id`: derived from the instruction's id, the same at every redelivery."""
    return str(uuid.uuid5(_SETTLEMENT_NAMESPACE, f"settlement/{instruction_id}"))


def settlement_for(instruction: PaymentRefundInstructed, instructed_at: datetime) -> Settlement | None:
    """The `payment-refund-settled` answering `instruction`, or None when the rule never answers it.

    The simulated service settles at once: `settled_at` (and `ce_time`) is `instructed_at`, the
    instruction's `ce_time`, which the worker keeps when it sends an instruction again.
    """
    answer = simulated_answer(
        instruction.instruction_id, instruction.method, exact_money(instruction.amount, instruction.currency)
    )
    if answer is None:
        return None
    settled = validate_data(
        PaymentRefundSettled,
        {
            "instruction_id": instruction.instruction_id,
            "reseller_id": instruction.reseller_id,
            "account_id": instruction.account_id,
            "status": answer.status.value,
            "detail": answer.detail,
            "settled_at": instructed_at.isoformat(),
        },
    )
    spec = TOPICS[Topic.PAYMENT_REFUND_SETTLED]
    headers = binary_headers(
        event_id=settlement_id(instruction.instruction_id),
        source=SIMULATOR_SOURCE,
        ce_type=spec.ce_type,
        time=instructed_at,
    )
    value = settled.model_dump_json().encode()
    return Settlement(settled, OutgoingMessage(spec.topic.value, settled.account_id.encode(), value, headers))
