"""CloudEvents over Kafka: both content modes in, binary mode out, and a named error for everything else.

The `cloudevents` SDK produces the messages here wherever it can, so that the parser is checked against
an independent implementation of the binding, not only against itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from schemas.envelope import (
    ContentMode,
    binary_headers,
    encode_output,
    format_time,
    parse_message,
    read_input,
)
from schemas.errors import (
    InvalidAttribute,
    InvalidEnvelope,
    InvalidEventData,
    InvalidMessage,
    MissingAttribute,
    NotJson,
    UnexpectedEventType,
    UnsupportedContentType,
)
from schemas.events import SubscriptionExpired, TerminationRejected, TerminationRequested
from schemas.export import render_all
from schemas.outputs import RejectionReason
from schemas.topics import CeType, Topic

TIME = datetime(2021, 4, 17, 1, 30, tzinfo=UTC)
DATA: dict[str, Any] = {
    "subscription_id": "sub-1",
    "account_id": "acc-1",
    "reseller_id": "res-1",
    "cycle_start": "2021-04-01",
    "cycle_months": 12,
    "amount_paid": "120.00",
    "currency": "SGD",
    "allow_refund": True,
    "requested_at": "2021-04-17T09:30:00+08:00",
    "requested_by": "operator@res-1",
    "reason": "moving",
}
VALUE = json.dumps(DATA).encode()


def sdk_event(**attributes: Any) -> CloudEvent:
    return CloudEvent(
        {
            "id": "ce-1",
            "source": "/portal",
            "type": str(CeType.TERMINATION_REQUESTED),
            "time": TIME,
            "datacontenttype": "application/json",
            **attributes,
        },
        dict(DATA),
    )


def incoming_headers(**overrides: bytes | None) -> list[tuple[str, bytes | None]]:
    """Headers of a valid binary-mode termination request; an override of None drops that header."""
    headers: dict[str, bytes | None] = {
        "ce_specversion": b"1.0",
        "ce_id": b"ce-1",
        "ce_source": b"/portal",
        "ce_type": str(CeType.TERMINATION_REQUESTED).encode(),
        "ce_time": b"2021-04-17T01:30:00Z",
        "content-type": b"application/json",
        **overrides,
    }
    return [
        (name, value)
        for name, value in headers.items()
        if name not in overrides or overrides[name] is not None
    ]


# --- binary mode in --------------------------------------------------------------------------------


def test_reads_a_binary_event_written_by_the_sdk() -> None:
    message = sdk_kafka.to_binary(sdk_event(), JSONFormat())
    event = read_input(Topic.TERMINATION_REQUESTED, list(message.headers.items()), message.value, b"sub-1")
    assert (event.attributes.id, event.attributes.source, event.attributes.time) == ("ce-1", "/portal", TIME)
    assert isinstance(event.data, TerminationRequested)
    assert event.data.amount_paid == "120.00"
    assert event.key == "sub-1"


def test_binary_mode_hands_the_value_over_unparsed() -> None:
    event = parse_message(incoming_headers(), VALUE, b"sub-1")
    assert (event.mode, event.data, event.attributes.datacontenttype) == (
        ContentMode.BINARY,
        VALUE,
        "application/json",
    )


def test_keeps_extension_attributes() -> None:
    event = parse_message(incoming_headers(ce_traceparent=b"00-abc-def-01"), VALUE)
    assert event.attributes.extensions == {"traceparent": "00-abc-def-01"}


def test_ignores_headers_that_are_not_cloudevents_attributes() -> None:
    headers = [*incoming_headers(), ("kafka_dlt-original-topic", b"termination-requested"), ("x-trace", None)]
    assert parse_message(headers, VALUE).attributes.extensions == {}


def test_accepts_a_json_content_type_with_a_charset() -> None:
    event = parse_message(incoming_headers(**{"content-type": b"application/json; charset=utf-8"}), VALUE)
    assert event.mode is ContentMode.BINARY


def test_reads_a_binary_event_without_a_content_type_as_json() -> None:
    event = read_input(Topic.TERMINATION_REQUESTED, incoming_headers(**{"content-type": None}), VALUE)
    assert event.attributes.datacontenttype is None
    assert isinstance(event.data, TerminationRequested)


def test_reads_an_event_without_time() -> None:
    assert parse_message(incoming_headers(ce_time=None), VALUE).attributes.time is None


@pytest.mark.parametrize("header", ["ce_id", "ce_source", "ce_type", "ce_specversion"])
def test_refuses_a_binary_event_missing_a_required_attribute(header: str) -> None:
    # The SDK would invent a ce_id here, making a broken message look like a new request.
    with pytest.raises(MissingAttribute, match=header):
        parse_message(incoming_headers(**{header: None}), VALUE)


def test_refuses_an_empty_ce_id() -> None:
    with pytest.raises(InvalidAttribute, match="ce_id"):
        parse_message(incoming_headers(ce_id=b""), VALUE)


@pytest.mark.parametrize("version", [b"0.3", b"1", b"2.0"])
def test_refuses_another_specversion(version: bytes) -> None:
    with pytest.raises(InvalidAttribute, match="specversion"):
        parse_message(incoming_headers(ce_specversion=version), VALUE)


@pytest.mark.parametrize("time", [b"2021-04-17T01:30:00", b"yesterday", b"1618623000"])
def test_refuses_a_ce_time_that_is_not_rfc3339_with_offset(time: bytes) -> None:
    with pytest.raises(InvalidAttribute, match="ce_time"):
        parse_message(incoming_headers(ce_time=time), VALUE)


def test_refuses_a_header_that_is_not_utf8() -> None:
    with pytest.raises(InvalidAttribute, match="ce_source"):
        parse_message(incoming_headers(ce_source=b"\xff\xfe"), VALUE)


def test_refuses_a_null_header_value() -> None:
    with pytest.raises(InvalidAttribute, match="ce_id"):
        parse_message([*incoming_headers(ce_id=None), ("ce_id", None)], VALUE)


def test_refuses_a_repeated_ce_id_with_different_values() -> None:
    with pytest.raises(InvalidAttribute, match="twice"):
        parse_message([*incoming_headers(), ("ce_id", b"ce-2")], VALUE)


def test_refuses_an_invalid_extension_name() -> None:
    with pytest.raises(InvalidAttribute, match="partition-key"):
        parse_message(incoming_headers(**{"ce_partition-key": b"x"}), VALUE)


def test_refuses_a_binary_value_that_is_not_json() -> None:
    with pytest.raises(NotJson):
        read_input(Topic.TERMINATION_REQUESTED, incoming_headers(), b"<xml/>")


def test_refuses_an_empty_value() -> None:
    with pytest.raises(NotJson):
        parse_message(incoming_headers(), None)


def test_refuses_a_non_json_content_type() -> None:
    with pytest.raises(UnsupportedContentType, match="avro"):
        parse_message(incoming_headers(**{"content-type": b"application/avro"}), VALUE)


def test_refuses_a_key_that_is_not_utf8() -> None:
    with pytest.raises(InvalidEnvelope, match="key"):
        parse_message(incoming_headers(), VALUE, b"\xff")


def test_refuses_an_event_type_that_does_not_belong_on_the_topic() -> None:
    headers = incoming_headers(ce_type=str(CeType.SUBSCRIPTION_EXPIRED).encode())
    with pytest.raises(UnexpectedEventType, match=r"subscription\.expired\.v1"):
        read_input(Topic.TERMINATION_REQUESTED, headers, VALUE)


def test_refuses_invalid_data_naming_the_field() -> None:
    value = json.dumps({**DATA, "currency": "XYZ"}).encode()
    with pytest.raises(InvalidEventData, match="currency"):
        read_input(Topic.TERMINATION_REQUESTED, incoming_headers(), value)


def test_every_refusal_is_an_invalid_message() -> None:
    # The worker dead-letters on this one base class.
    assert issubclass(InvalidEnvelope, InvalidMessage)
    assert issubclass(InvalidEventData, InvalidMessage)


def test_refuses_to_consume_an_output_topic() -> None:
    with pytest.raises(ValueError, match="output topic"):
        read_input(Topic.REFUND_ISSUED, incoming_headers(), VALUE)


# --- structured mode in ----------------------------------------------------------------------------


def test_reads_a_structured_event_written_by_the_sdk() -> None:
    message = sdk_kafka.to_structured(sdk_event(), JSONFormat())
    assert message.headers == {"content-type": b"application/cloudevents+json"}
    event = read_input(Topic.TERMINATION_REQUESTED, list(message.headers.items()), message.value, b"sub-1")
    assert (event.attributes.id, event.attributes.type, event.attributes.time) == (
        "ce-1",
        "subscription.termination.requested.v1",
        TIME,
    )
    assert isinstance(event.data, TerminationRequested)
    assert event.data.reason == "moving"


def structured(event: dict[str, Any]) -> tuple[list[tuple[str, bytes | None]], bytes]:
    return [("content-type", b"application/cloudevents+json")], json.dumps(event).encode()


def structured_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/portal",
        "type": str(CeType.TERMINATION_REQUESTED),
        "time": "2021-04-17T01:30:00Z",
        "data": DATA,
        **changes,
    }
    return {name: value for name, value in event.items() if value is not None}


def test_structured_mode_hands_over_the_decoded_data() -> None:
    event = parse_message(*structured(structured_event()))
    assert (event.mode, event.data) == (ContentMode.STRUCTURED, DATA)


def test_structured_mode_is_decided_by_content_type_not_by_ce_headers() -> None:
    headers, value = structured(structured_event())
    event = parse_message([*headers, ("ce_id", b"from-a-header")], value)
    assert event.attributes.id == "ce-1"


def test_refuses_a_structured_event_without_id() -> None:
    with pytest.raises(MissingAttribute, match="id"):
        parse_message(*structured(structured_event(id=None)))


def test_refuses_a_structured_event_of_another_specversion() -> None:
    with pytest.raises(InvalidAttribute, match="specversion"):
        parse_message(*structured(structured_event(specversion="0.3")))


def test_refuses_a_structured_id_that_is_not_a_string() -> None:
    with pytest.raises(InvalidAttribute, match="id"):
        parse_message(*structured(structured_event(id=17)))


def test_refuses_a_structured_event_whose_data_is_not_an_object() -> None:
    with pytest.raises(NotJson, match="data"):
        parse_message(*structured(structured_event(data=None, data_base64="e30=")))


def test_refuses_a_structured_value_that_is_not_json() -> None:
    with pytest.raises(NotJson):
        parse_message([("content-type", b"application/cloudevents+json")], b"{oops")


def test_refuses_batched_structured_events() -> None:
    with pytest.raises(UnsupportedContentType, match="batch"):
        parse_message([("content-type", b"application/cloudevents-batch+json")], b"[]")


def test_refuses_structured_data_invalid_for_the_topic() -> None:
    headers, value = structured(structured_event(data={**DATA, "cycle_start": "2021-02-30"}))
    with pytest.raises(InvalidEventData, match="cycle_start"):
        read_input(Topic.TERMINATION_REQUESTED, headers, value)


# --- binary mode out -------------------------------------------------------------------------------


def test_builds_the_contracts_incoming_headers() -> None:
    headers = binary_headers(event_id="out-1", source="/refund-worker", ce_type="refund.issued.v1", time=TIME)
    assert headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"out-1"),
        ("ce_source", b"/refund-worker"),
        ("ce_type", b"refund.issued.v1"),
        ("ce_time", b"2021-04-17T01:30:00Z"),
        ("content-type", b"application/json"),
    ]


def test_writes_ce_time_with_its_offset() -> None:
    assert format_time(datetime(2021, 4, 17, 9, 30, 0, 250000, tzinfo=timezone(timedelta(hours=8)))) == (
        "2021-04-17T09:30:00.250000+08:00"
    )


def test_refuses_a_naive_ce_time() -> None:
    with pytest.raises(ValueError, match="offset"):
        binary_headers(event_id="out-1", source="/refund-worker", ce_type="x", time=datetime(2021, 4, 17))


def test_refuses_an_empty_event_id() -> None:
    with pytest.raises(ValueError, match="event_id"):
        binary_headers(event_id="", source="/refund-worker", ce_type="x", time=TIME)


def test_encodes_an_output_that_the_sdk_reads_back() -> None:
    rejected = TerminationRejected(
        request_id="ce-2",
        subscription_id="sub-1",
        account_id="acc-1",
        reason_code=RejectionReason.CREDIT_NOTE_ALREADY_USED,
        detail="CN-7 backs refund rf-1",
    )
    message = encode_output(rejected, event_id="out-9", time=TIME)
    assert (message.topic, message.key) == ("termination-rejected", b"sub-1")
    event = sdk_kafka.from_binary(
        sdk_kafka.KafkaMessage(dict(message.headers), message.key, message.value), JSONFormat(), CloudEvent
    )
    assert (event.get_id(), event.get_type(), event.get_time()) == (
        "out-9",
        CeType.TERMINATION_REJECTED,
        TIME,
    )
    assert event.get_data() == json.loads(message.value)
    assert json.loads(message.value)["reason_code"] == "credit_note_already_used"


def test_an_output_names_its_topics_schema_id_as_dataschema() -> None:
    rejected = TerminationRejected(
        request_id="ce-2",
        subscription_id="sub-1",
        account_id="acc-1",
        reason_code=RejectionReason.ALREADY_TERMINATED,
        detail="the subscription is already terminated",
    )
    message = encode_output(rejected, event_id="out-9", time=TIME)
    assert [name for name, _ in message.headers] == [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_dataschema",
        "content-type",
    ]
    event = sdk_kafka.from_binary(
        sdk_kafka.KafkaMessage(dict(message.headers), message.key, message.value), JSONFormat(), CloudEvent
    )
    assert event.get_dataschema() == "urn:refund-worker:schema:termination-rejected:v1"
    assert event.get_dataschema() == json.loads(render_all()["termination-rejected.schema.json"])["$id"]


def test_round_trips_an_expiry_through_its_own_headers() -> None:
    headers = binary_headers(event_id="x-1", source="/portal", ce_type=CeType.SUBSCRIPTION_EXPIRED, time=TIME)
    value = b'{"subscription_id":"s","account_id":"a","reseller_id":"r","expired_at":"2021-05-01T00:00:00Z"}'
    event = read_input(Topic.SUBSCRIPTION_EXPIRED, list(headers), value, b"s")
    assert isinstance(event.data, SubscriptionExpired)
    assert event.attributes.id == "x-1"
