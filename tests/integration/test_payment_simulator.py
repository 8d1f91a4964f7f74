"""The simulated payment service through the real broker: instructions published as the worker
publishes them are answered on payment-refund-settled by the rule on the amount, a redelivered one
with the same settlement, and one whose amount ends in 99 never."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.envelope import encode_output
from schemas.money_refunds import MoneyRefundMethod, PaymentRefundInstructed
from schemas.topics import Topic
from tests.integration.harness import OutputWatcher, Raw, Received, publish, unique
from worker.entrypoints.payment_service.answers import settlement_id
from worker.entrypoints.payment_service.service import PaymentSimulator

SETTLED = Topic.PAYMENT_REFUND_SETTLED.value


def instructed(amount: str, method: MoneyRefundMethod = MoneyRefundMethod.CHARGE_BACK) -> Raw:
    """A payment-refund-instructed as the worker's outbox relay sends it."""
    data = PaymentRefundInstructed(
        instruction_id=str(uuid.uuid4()),
        request_id=unique("req"),
        payment_id=unique("pay"),
        method=method,
        amount=amount,
        currency="SGD",
        account_id=unique("acc"),
        reseller_id=unique("res"),
    )
    message = encode_output(data, event_id=str(uuid.uuid4()), time=datetime.now(UTC))
    return Raw(message.topic, message.key, message.value, list(message.headers))


def instruction_id(raw: Raw) -> str:
    return PaymentRefundInstructed.model_validate_json(raw.value or b"").instruction_id


def settlements_of(received: list[Received], raw: Raw) -> list[Received]:
    return [r for r in received if r.data.get("instruction_id") == instruction_id(raw)]


async def test_instructions_are_answered_by_the_rule_on_the_amount_and_the_silent_one_never(
    kafka_bootstrap: str, kafka_group_settings: dict[str, int]
) -> None:
    succeeds, fails, silent = instructed("50.00"), instructed("50.13"), instructed("20.99")
    group = unique("payment-simulator")
    async with (
        PaymentSimulator(kafka_bootstrap, group_id=group, consumer_options=kafka_group_settings) as sim,
        OutputWatcher(kafka_bootstrap, [SETTLED], fetch_max_wait_ms=100) as watcher,
    ):
        await publish(kafka_bootstrap, [succeeds, fails, silent, succeeds])  # the first redelivered
        ours = {instruction_id(raw) for raw in (succeeds, fails, silent)}
        await watcher.wait_for(
            lambda received: (
                len([h for h in sim.handled if h.instruction_id in ours]) == 4
                and len(settlements_of(received, succeeds)) == 2
                and len(settlements_of(received, fails)) == 1
            ),
            within=60.0,
            settle=3.0,
        )
    received = watcher.received
    assert settlements_of(received, silent) == []
    first, again = settlements_of(received, succeeds)
    (failed,) = settlements_of(received, fails)
    assert first.headers == again.headers
    assert first.data == again.data
    assert first.ce_id == settlement_id(instruction_id(succeeds))
    assert (first.data["status"], failed.data["status"]) == ("succeeded", "failed")
    assert failed.data["detail"] == "card expired"
    assert failed.key == PaymentRefundInstructed.model_validate_json(fails.value or b"").account_id
    assert failed.headers["ce_type"] == b"payment.refund.settled.v1"
    assert {h.status for h in sim.handled if h.instruction_id == instruction_id(silent)} == {None}
