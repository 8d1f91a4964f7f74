"""docs/contract.md cannot drift from the code: every example message on it is checked.

An example is a fenced block tagged with its topic (```json refund-issued) holding
`{"key", "headers", "data"}`. For a topic the worker handles, the example goes through the worker's own
envelope parser (inputs) or is re-encoded by it (outputs), and must be the one in the AsyncAPI
document (schemas/examples.py). For a v2 topic not implemented yet, it is checked against the
contract's field list below; once the topic has a data model, the first kind of check applies.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.dataschema import SCHEMA_ID_PREFIX, schema_id
from schemas.envelope import encode_output, read_input
from schemas.events import DATA_MODELS, INPUT_MODELS, OUTPUT_MODELS, TerminationRequested
from schemas.examples import EXAMPLES
from schemas.money_refunds import MoneyRefundStatus
from schemas.topics import TOPICS, Topic
from worker.domain.policy import DEFAULT_POLICY
from worker.engine.outbox import derived_id
from worker.entrypoints.adjust import adjust_input
from worker.entrypoints.quote import quote
from worker.money_refunds.commands import instruction_id
from worker.money_refunds.events import INSTRUCTED_KIND, updated_kind

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
_BLOCK = re.compile(r"^```json ([a-z-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
CE_HEADERS = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"]

# Contract v2 sections 8-10: topic -> (ce_type, key field, is input, the data's fields).
PENDING_V2: dict[str, tuple[str, str, bool, set[str]]] = {
    "balance-adjustment-requested": (
        "account.adjustment.requested.v1",
        "account_id",
        True,
        {
            *("account_id", "reseller_id", "currency", "kind", "amount", "transaction", "reverses"),
            *("reason", "requested_at", "actor"),
        },
    ),
    "balance-adjusted": (
        "account.balance.adjusted.v1",
        "account_id",
        False,
        {
            *("adjustment_id", "kind", "account_id", "reseller_id", "currency", "delta", "balance"),
            *("balance_version", "transaction_id", "reverses", "reason", "requested_by", "applied_at"),
        },
    ),
    "adjustment-rejected": (
        "account.adjustment.rejected.v1",
        "account_id",
        False,
        {"request_id", "account_id", "reseller_id", "kind", "reason_code", "detail"},
    ),
    "money-refund-requested": (
        "account.money_refund.requested.v1",
        "account_id",
        True,
        {
            *("account_id", "reseller_id", "account_type", "method", "payment", "amount"),
            *("from_balance", "reason", "requested_at", "actor"),
        },
    ),
    "payment-refund-instructed": (
        "payment.refund.instructed.v1",
        "account_id",
        False,
        {
            *("instruction_id", "request_id", "payment_id", "method", "amount", "currency"),
            *("account_id", "reseller_id"),
        },
    ),
    "payment-refund-settled": (
        "payment.refund.settled.v1",
        "account_id",
        True,
        {"instruction_id", "reseller_id", "account_id", "status", "detail", "settled_at"},
    ),
    "money-refund-updated": (
        "account.money_refund.updated.v1",
        "account_id",
        False,
        {
            *("instruction_id", "request_id", "payment_id", "method", "account_id", "reseller_id"),
            *("amount", "currency", "from_balance", "status", "detail", "updated_at"),
        },
    ),
    "credit-note-issued": (
        "invoice.credit_note.issued.v1",
        "subscription_id",
        True,
        {
            *("credit_note_id", "reseller_id", "account_id", "subscription_id", "amount"),
            *("currency", "issued_at", "number"),
        },
    ),
    "refund-conflict-detected": (
        "billing.refund.conflict.v1",
        "subscription_id",
        False,
        {
            *("subscription_id", "refund_id", "credit_note_id", "amount", "currency"),
            *("account_id", "reseller_id", "detected_at"),
        },
    ),
}
Examples = dict[str, dict[str, Any]]
IMPLEMENTED = [topic.value for topic in DATA_MODELS]
"""Topics with a data model (section 8's too, though the worker does not serve them yet)."""
PENDING = [topic for topic in PENDING_V2 if topic not in IMPLEMENTED]


def contract_examples(text: str) -> Examples:
    """Topic -> its example, from every tagged fenced block; a topic shown twice is an error."""
    found: Examples = {}
    for topic, body in _BLOCK.findall(text):
        assert topic not in found, f"docs/contract.md shows {topic} twice"
        example = json.loads(body)
        assert set(example) == {"key", "headers", "data"}, f"{topic}: an example is {{key, headers, data}}"
        found[topic] = example
    return found


@pytest.fixture(scope="module")
def examples() -> Examples:
    return contract_examples(CONTRACT.read_text(encoding="utf-8"))


def test_every_topic_of_the_contract_has_one_example(examples: Examples) -> None:
    assert sorted(examples) == sorted({*IMPLEMENTED, *PENDING_V2})


def test_a_block_that_is_not_json_is_refused() -> None:
    with pytest.raises(json.JSONDecodeError):
        contract_examples('```json refund-issued\n{"key": \n```\n')


def encoded_headers(example: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in example["headers"].items()]


@pytest.mark.parametrize("topic", list(INPUT_MODELS), ids=str)
def test_input_examples_pass_the_workers_own_parser(examples: Examples, topic: Topic) -> None:
    example = examples[topic.value]
    value = json.dumps(example["data"]).encode()
    event = read_input(topic, encoded_headers(example), value, example["key"].encode())
    assert event.key == example["key"] == example["data"][TOPICS[topic].key_field]
    assert list(example["headers"]) == [*CE_HEADERS, "content-type"]
    assert example == EXAMPLES[topic].as_json(), "docs/contract.md and schemas/examples.py differ"


@pytest.mark.parametrize("topic", list(OUTPUT_MODELS), ids=str)
def test_output_examples_are_what_the_worker_writes(examples: Examples, topic: Topic) -> None:
    example = examples[topic.value]
    data = OUTPUT_MODELS[topic].model_validate(example["data"])
    headers = example["headers"]
    message = encode_output(
        data,
        event_id=headers["ce_id"],
        time=datetime.fromisoformat(headers["ce_time"]),
        source=headers["ce_source"],
    )
    assert json.loads(message.value) == example["data"], "the worker would write this data otherwise"
    assert message.headers == encoded_headers(example), "the worker would write these headers otherwise"
    assert message.key == example["key"].encode()
    assert example == EXAMPLES[topic].as_json(), "docs/contract.md and schemas/examples.py differ"


@pytest.mark.parametrize("topic", PENDING, ids=str)
def test_v2_examples_follow_the_contracts_field_lists(examples: Examples, topic: str) -> None:
    ce_type, key_field, is_input, fields = PENDING_V2[topic]
    example = examples[topic]
    headers = example["headers"]
    assert set(example["data"]) == fields
    assert example["key"] == (example["data"][key_field] or example["data"]["account_id"])
    assert headers["ce_type"] == ce_type
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    datetime.fromisoformat(headers["ce_time"])
    expected = [*CE_HEADERS, "content-type"] if is_input else [*CE_HEADERS, "ce_dataschema", "content-type"]
    assert list(headers) == expected
    if not is_input:
        assert headers["ce_dataschema"] == f"{SCHEMA_ID_PREFIX}{topic}:v1"


def test_the_examples_tell_one_story(examples: Examples) -> None:
    """The request's decision is what the refund and the termination say, and they name the request."""
    request = examples["termination-requested"]
    decided = quote(TerminationRequested.model_validate(request["data"]), DEFAULT_POLICY)
    refund = examples["refund-issued"]["data"]
    terminated = examples["subscription-terminated"]["data"]
    credits = examples["credits-updated"]["data"]
    assert (refund["amount"], refund["months_refunded"], refund["rule"]) == (
        decided["amount"],
        decided["months_refunded"],
        decided["rule"],
    )
    assert (terminated["refund_amount"], terminated["rule"]) == (decided["amount"], decided["rule"])
    assert refund["request_id"] == terminated["request_id"] == request["headers"]["ce_id"]
    assert credits["refund_id"] == refund["refund_id"]
    assert credits["delta"] == refund["amount"]
    rejected = examples["termination-rejected"]["data"]
    assert rejected["subscription_id"] == request["data"]["subscription_id"]
    assert rejected["request_id"] != request["headers"]["ce_id"]


def test_the_adjustment_examples_tell_one_story(examples: Examples) -> None:
    """The rules applied to the request, on the balance credits-updated left, give balance-adjusted;
    a later request for 30.00 more of the charge gives adjustment-rejected."""
    request = examples["balance-adjustment-requested"]
    credits = examples["credits-updated"]["data"]
    adjusted = examples["balance-adjusted"]["data"]
    rejected = examples["adjustment-rejected"]["data"]
    first = {
        **request["data"],
        "adjustment_id": request["headers"]["ce_id"],
        "current_balance": credits["balance"],
    }
    again = {**request["data"], "adjustment_id": rejected["request_id"], "amount": "30.00"}
    applied, refused = adjust_input(f"{json.dumps(first)}\n{json.dumps(again)}".encode()).decisions
    assert (adjusted["delta"], adjusted["balance"], adjusted["transaction_id"]) == (
        applied["delta"],
        applied["balance"],
        applied["transaction_id"],
    )
    assert adjusted["adjustment_id"] == request["headers"]["ce_id"]
    assert adjusted["balance_version"] == credits["balance_version"] + 1
    assert adjusted["requested_by"] == request["data"]["actor"]["id"]
    assert (rejected["reason_code"], rejected["detail"]) == (refused["reason_code"], refused["detail"])
    assert examples["balance-adjusted"]["headers"]["ce_id"] == derived_id(
        adjusted["reseller_id"], adjusted["adjustment_id"], "balance-adjusted"
    )
    assert examples["adjustment-rejected"]["headers"]["ce_id"] == derived_id(
        rejected["reseller_id"], rejected["request_id"], "adjustment-rejected"
    )


def test_the_money_refund_examples_tell_one_story_with_the_ids_the_worker_derives(
    examples: Examples,
) -> None:
    """The request becomes the instruction the payment service is told of, which it settles; the
    instruction id and the outputs' ce_ids are the ones the worker derives (the instruction's and
    the instructed event's from the request, the settled update's from the instruction)."""
    request, instructed = examples["money-refund-requested"], examples["payment-refund-instructed"]
    settled, updated = examples["payment-refund-settled"], examples["money-refund-updated"]
    reseller, request_id = request["data"]["reseller_id"], request["headers"]["ce_id"]
    instruction = instructed["data"]["instruction_id"]

    assert instruction == instruction_id(reseller, request_id)
    assert settled["data"]["instruction_id"] == updated["data"]["instruction_id"] == instruction
    assert instructed["data"]["request_id"] == updated["data"]["request_id"] == request_id
    assert instructed["headers"]["ce_id"] == derived_id(reseller, request_id, INSTRUCTED_KIND)
    assert updated["headers"]["ce_id"] == derived_id(
        reseller, instruction, updated_kind(MoneyRefundStatus(updated["data"]["status"]))
    )
    assert (updated["data"]["status"], updated["data"]["detail"]) == (
        settled["data"]["status"],
        settled["data"]["detail"],
    )
    payment = request["data"]["payment"]
    assert (instructed["data"]["payment_id"], instructed["data"]["currency"]) == (
        payment["payment_id"],
        payment["currency"],
    )
    assert instructed["data"]["amount"] == updated["data"]["amount"] == request["data"]["amount"]


def test_every_field_of_every_model_is_on_the_page() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    models = [*DATA_MODELS.values()]
    nested = [field.annotation for model in models for field in model.model_fields.values()]
    for model in models + [m for m in nested if isinstance(m, type) and hasattr(m, "model_fields")]:
        for name in model.model_fields:
            assert f"`{name}`" in text or f"{{{name}" in text or f", {name}" in text, (
                f"{model.__name__}.{name} is not described in docs/contract.md"
            )


def test_the_schema_id_on_the_page_is_the_one_the_worker_sends() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    assert f"`{SCHEMA_ID_PREFIX}<topic>:v1`" in text
    assert schema_id(Topic.REFUND_ISSUED) == f"{SCHEMA_ID_PREFIX}refund-issued:v1"


def test_every_variable_and_command_of_the_contract_is_on_the_page() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    variables = ["KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REFUND_WINDOW_DAYS", "EXPIRY_GRACE_DAYS"]
    variables += ["CONSUMER_GROUP", "MONEY_REFUND_TIMEOUT_HOURS"]
    commands = ["run", "migrate", "quote", "adjust", "dlq", "asyncapi"]
    missing = [v for v in variables if f"`{v}`" not in text]
    missing += [c for c in commands if f"`refund-worker {c}" not in text]
    assert missing == []
