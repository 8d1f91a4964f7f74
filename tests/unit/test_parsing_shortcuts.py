"""The shortcuts taken on the termination path's parsing (issue 13) give what the longer way gave:
the payload digest is still that of `model_dump_json()`, a text still gets the blank or the NUL
refusal it got from two validators, and bad amounts are still reported together."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.envelope import binary_headers, read_input
from schemas.errors import InvalidEventData
from schemas.events import validate_data
from schemas.inputs import TerminationRequested
from schemas.topics import TOPICS, Topic
from tests.fuzz_messages import Generator
from worker.engine.parsing import payload_digest

TEXT_FIELDS = ["subscription_id", "account_id", "reseller_id", "requested_by", "reason"]


def _data(**changes: Any) -> dict[str, Any]:
    data = Generator(7).termination_data()
    data.update(changes)
    return data


def test_the_payload_digest_is_that_of_the_models_json_for_every_valid_input() -> None:
    cases = [case for case in Generator(13).cases(600, valid_share=1.0) if case.valid]
    assert len(cases) > 500
    for case in cases:
        message = case.message
        data = read_input(message.topic, message.headers, message.value, message.key).data
        assert payload_digest(data) == hashlib.sha256(data.model_dump_json().encode()).digest()


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u2028", "\u3000", "\x1c"])
def test_a_blank_text_is_refused_as_blank(field: str, blank: str) -> None:
    with pytest.raises(InvalidEventData) as refused:
        validate_data(TerminationRequested, json.dumps(_data(**{field: blank})).encode())
    assert [(e["loc"], e["type"]) for e in refused.value.errors] == [
        ((field,), "string_too_short" if blank == "" else "blank_string")
    ]


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("text", ["\x00", " \x00 ", "a\x00b"])
def test_a_text_holding_nul_is_refused_for_the_nul(field: str, text: str) -> None:
    with pytest.raises(InvalidEventData) as refused:
        validate_data(TerminationRequested, json.dumps(_data(**{field: text})).encode())
    errors = refused.value.errors
    assert [(e["loc"], e["type"]) for e in errors] == [((field,), "nul_character")]
    assert "PostgreSQL text cannot hold" in errors[0]["msg"]


def test_both_bad_amounts_are_reported_together_and_good_ones_pass() -> None:
    note = {"credit_note_id": "cn-1", "amount": "1.001"}
    with pytest.raises(InvalidEventData) as refused:
        validate_data(
            TerminationRequested,
            json.dumps(_data(currency="SGD", amount_paid="12.345", credit_note=note)).encode(),
        )
    assert [(e["loc"], e["type"]) for e in refused.value.errors] == [
        (("amount_paid",), "invalid_amount"),
        (("credit_note", "amount"), "invalid_amount"),
    ]
    good = {"credit_note_id": "cn-1", "amount": "1.5"}
    accepted = _data(currency="SGD", amount_paid="12.3", credit_note=good)
    assert validate_data(TerminationRequested, json.dumps(accepted).encode()).amount_paid == "12.3"


def test_a_termination_request_without_content_type_is_read_as_json() -> None:
    ce_type = TOPICS[Topic.TERMINATION_REQUESTED].ce_type
    headers = binary_headers(event_id="ce-1", source="/test", ce_type=ce_type, time=datetime.now(UTC))
    without = [(name, raw) for name, raw in headers if name != "content-type"]
    assert len(without) == len(headers) - 1
    value = json.dumps(_data()).encode()
    event = read_input(Topic.TERMINATION_REQUESTED, without, value, b"sub-1")
    assert isinstance(event.data, TerminationRequested)
    assert event.attributes.datacontenttype is None
