"""The simulated payment service's rule on the amount, the settlement it builds (valid, keyed, stable
for a redelivered instruction), its reading of instructions, and its command's usage errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from typer.testing import CliRunner

from schemas.envelope import binary_headers, read_input
from schemas.errors import InvalidMessage
from schemas.events import validate_data
from schemas.examples_money import MONEY_EXAMPLES
from schemas.money_refunds import MoneyRefundMethod, PaymentRefundInstructed, SettlementStatus
from schemas.topics import TOPICS, Topic
from worker.entrypoints.cli import app
from worker.entrypoints.payment_service.answers import (
    SIMULATOR_SOURCE,
    settlement_for,
    settlement_id,
    simulated_answer,
)
from worker.entrypoints.payment_service.service import read_instruction

INSTRUCTED_AT = datetime(2021, 5, 6, 2, 0, 0, 734021, tzinfo=UTC)
CHARGE_BACK, CANCEL = MoneyRefundMethod.CHARGE_BACK, MoneyRefundMethod.CANCEL_PAYMENT


def instruction(**fields: Any) -> PaymentRefundInstructed:
    example = next(e for topic, e in MONEY_EXAMPLES if topic is Topic.PAYMENT_REFUND_INSTRUCTED)
    return PaymentRefundInstructed.model_validate({**example.data, **fields})


@pytest.mark.parametrize("minor", [5000, 1, 12, 14, 98, 100, 1300, 9900, 1314])
def test_an_amount_not_ending_in_13_or_99_succeeds_with_a_gateway_reference(minor: int) -> None:
    answer = simulated_answer("ins-1", CHARGE_BACK, minor)
    assert answer is not None
    assert answer.status is SettlementStatus.SUCCEEDED
    assert answer.detail.startswith("simulated gateway reference SIM-")


@pytest.mark.parametrize("minor", [13, 5013, 100_013])
def test_an_amount_ending_in_13_fails_as_an_expired_card_for_a_charge_back(minor: int) -> None:
    assert simulated_answer("ins-1", CHARGE_BACK, minor) == simulated_answer("ins-2", CHARGE_BACK, minor)
    answer = simulated_answer("ins-1", CHARGE_BACK, minor)
    assert answer is not None
    assert (answer.status, answer.detail) == (SettlementStatus.FAILED, "card expired")


def test_a_cancelled_payment_that_fails_says_the_bank_refused() -> None:
    answer = simulated_answer("ins-1", CANCEL, 5013)
    assert answer is not None
    assert (answer.status, answer.detail) == (
        SettlementStatus.FAILED,
        "the bank refused to cancel the payment",
    )


@pytest.mark.parametrize("minor", [99, 2099, 100_099])
def test_an_amount_ending_in_99_is_never_answered(minor: int) -> None:
    assert simulated_answer("ins-1", CHARGE_BACK, minor) is None
    assert settlement_for(instruction(amount=f"{minor // 100}.{minor % 100:02d}"), INSTRUCTED_AT) is None


def test_the_rule_reads_minor_units_so_a_currency_without_decimals_fails_at_1013() -> None:
    settlement = settlement_for(instruction(amount="1013", currency="JPY"), INSTRUCTED_AT)
    assert settlement is not None
    assert settlement.data.status is SettlementStatus.FAILED


def test_the_settlement_is_a_valid_binary_cloudevent_the_worker_reads_keyed_by_the_account() -> None:
    settlement = settlement_for(instruction(amount="50.00"), INSTRUCTED_AT)
    assert settlement is not None
    message = settlement.message
    event = read_input(message.topic, message.headers, message.value, message.key)
    headers = dict(message.headers)
    assert message.topic == Topic.PAYMENT_REFUND_SETTLED.value
    assert message.key == b"acc-2001"
    assert event.attributes.type == TOPICS[Topic.PAYMENT_REFUND_SETTLED].ce_type
    assert event.attributes.source == SIMULATOR_SOURCE
    assert headers["ce_id"].decode() == settlement_id("82f9874b-f994-5370-8ade-6b2bc7aba0ff")
    assert event.data == settlement.data
    data = json.loads(message.value)
    assert data.pop("detail").startswith("simulated gateway reference SIM-")
    assert data == {
        "instruction_id": "82f9874b-f994-5370-8ade-6b2bc7aba0ff",
        "reseller_id": "res-b3",
        "account_id": "acc-2001",
        "status": "succeeded",
        "settled_at": "2021-05-06T02:00:00.734021Z",
    }


def test_a_redelivered_instruction_is_answered_with_the_very_same_settlement() -> None:
    first = settlement_for(instruction(), INSTRUCTED_AT)
    again = settlement_for(instruction(), INSTRUCTED_AT)
    other = settlement_for(instruction(instruction_id="another-instruction"), INSTRUCTED_AT)
    assert first is not None
    assert again is not None
    assert other is not None
    assert first.message == again.message
    assert dict(other.message.headers)["ce_id"] != dict(first.message.headers)["ce_id"]
    assert other.data.detail != first.data.detail  # each success has its own gateway reference


def _record(headers: list[tuple[str, bytes]], value: bytes) -> ConsumerRecord[bytes, bytes]:
    topic = Topic.PAYMENT_REFUND_INSTRUCTED.value
    return ConsumerRecord(topic, 0, 7, 0, 0, b"acc-2001", value, None, len(value), 8, headers)


def _instruction_headers(ce_type: str) -> list[tuple[str, bytes]]:
    return binary_headers(event_id="ce-1", source="/refund-worker", ce_type=ce_type, time=INSTRUCTED_AT)


def test_an_instruction_is_read_with_its_ce_time() -> None:
    value = instruction().model_dump_json().encode()
    ce_type = TOPICS[Topic.PAYMENT_REFUND_INSTRUCTED].ce_type
    read, instructed_at = read_instruction(_record(_instruction_headers(ce_type), value))
    assert read == instruction()
    assert instructed_at == INSTRUCTED_AT


@pytest.mark.parametrize(
    ("ce_type", "value"),
    [
        (TOPICS[Topic.PAYMENT_REFUND_SETTLED].ce_type, b"{}"),
        (TOPICS[Topic.PAYMENT_REFUND_INSTRUCTED].ce_type, b'{"instruction_id": "x"}'),
        (TOPICS[Topic.PAYMENT_REFUND_INSTRUCTED].ce_type, b"not json"),
    ],
    ids=["another event type", "missing fields", "not JSON"],
)
def test_an_instruction_that_cannot_be_read_is_an_invalid_message(ce_type: str, value: bytes) -> None:
    with pytest.raises(InvalidMessage):
        read_instruction(_record(_instruction_headers(ce_type), value))


def test_the_settled_data_fits_the_model_as_the_worker_validates_it() -> None:
    settlement = settlement_for(instruction(amount="50.13"), INSTRUCTED_AT)
    assert settlement is not None
    validated = validate_data(type(settlement.data), settlement.message.value)
    assert (validated.status, validated.detail) == (SettlementStatus.FAILED, "card expired")


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ([], {"KAFKA_BOOTSTRAP_SERVERS": None}, "KAFKA_BOOTSTRAP_SERVERS is not set"),
        (["--group", " "], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, "--group must not be blank"),
        ([], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "TOPIC_PARTITIONS": "abc"}, "TOPIC_PARTITIONS"),
    ],
    ids=["no broker", "blank group", "bad setting"],
)
def test_the_simulator_command_refuses_bad_input_in_one_line_with_exit_2(
    args: list[str], env: dict[str, str | None], says: str
) -> None:
    result = CliRunner().invoke(app, ["payment-simulator", *args], env=env)
    assert result.exit_code == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
