"""Every input field's maximum (schemas/limits.py, docs/input-limits.md): at the limit accepted,
past it poison naming the field; and what can never be processed (deep nesting, dates at the
calendar's edges, NUL) is refused at the input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.envelope import OversizeMessage, read_input
from schemas.errors import InvalidAttribute, InvalidEventData, NotJson
from schemas.events import SubscriptionExpired, SubscriptionRenewed, TerminationRequested, validate_data
from schemas.limits import (
    ATTRIBUTE_MAX_LENGTH,
    CYCLE_MONTHS_MAX,
    ID_MAX_LENGTH,
    JSON_MAX_DEPTH,
    KEY_MAX_BYTES,
    NAME_MAX_LENGTH,
    REASON_MAX_LENGTH,
    VALUE_MAX_BYTES,
)
from schemas.topics import CeType, Topic
from tests.unit.test_envelope import DATA

REQUEST: dict[str, Any] = dict(DATA)  # the envelope tests' valid request
EXPIRY = {"subscription_id": "sub-1", "account_id": "acc-1", "reseller_id": "res-1"}


def request(**changes: Any) -> bytes:
    return json.dumps({**REQUEST, **changes}).encode()


def refused_fields(payload: bytes, model: type[Any] = TerminationRequested) -> set[str]:
    with pytest.raises(InvalidEventData) as caught:
        validate_data(model, payload)
    return {".".join(str(part) for part in detail["loc"]) for detail in caught.value.errors}


LIMITS = [
    ("subscription_id", ID_MAX_LENGTH),
    ("account_id", ID_MAX_LENGTH),
    ("reseller_id", ID_MAX_LENGTH),
    ("requested_by", NAME_MAX_LENGTH),
    ("product", NAME_MAX_LENGTH),
    ("reason", REASON_MAX_LENGTH),
]


@pytest.mark.parametrize(("field", "limit"), LIMITS)
def test_a_text_at_its_limit_is_accepted_and_one_character_more_refused(field: str, limit: int) -> None:
    validate_data(TerminationRequested, request(**{field: "é" * limit}))
    assert refused_fields(request(**{field: "é" * (limit + 1)})) == {field}


def test_a_credit_note_id_is_an_id() -> None:
    note = {"credit_note_id": "c" * (ID_MAX_LENGTH + 1), "amount": "10.00"}
    assert refused_fields(request(credit_note=note)) == {"credit_note.credit_note_id"}


def test_cycle_months_stops_at_a_hundred_years() -> None:
    validate_data(TerminationRequested, request(cycle_months=CYCLE_MONTHS_MAX))
    assert refused_fields(request(cycle_months=CYCLE_MONTHS_MAX + 1)) == {"cycle_months"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("currency", "SGDX"), ("timezone", "Asia/" + "x" * 64), ("amount_paid", "1" * 65)],
)
def test_codes_zones_and_amounts_are_bounded(field: str, value: str) -> None:
    assert refused_fields(request(**{field: value})) == {field}


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
        "0999-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
        "2021-04-12T10:00:00." + "0" * 30 + "Z",
    ],
)
def test_timestamps_at_the_calendars_edges_are_refused(timestamp: str) -> None:
    assert refused_fields(request(requested_at=timestamp)) == {"requested_at"}
    expiry = json.dumps({**EXPIRY, "expired_at": timestamp}).encode()
    assert refused_fields(expiry, SubscriptionExpired) == {"expired_at"}
    renewal = json.dumps({**EXPIRY, "renewed_at": timestamp}).encode()
    assert refused_fields(renewal, SubscriptionRenewed) == {"renewed_at"}


@pytest.mark.parametrize("timestamp", ["1000-01-01T00:00:00+23:59", "8999-12-31T23:59:59-23:59"])
def test_timestamps_inside_the_years_are_accepted_even_at_extreme_offsets(timestamp: str) -> None:
    validate_data(SubscriptionExpired, json.dumps({**EXPIRY, "expired_at": timestamp}).encode())


def test_a_cycle_start_at_the_calendars_edge_is_refused() -> None:
    assert refused_fields(request(cycle_start="0001-01-01")) == {"cycle_start"}
    assert refused_fields(request(cycle_start="9999-12-01")) == {"cycle_start"}


@pytest.mark.parametrize("field", ["subscription_id", "requested_by", "reason", "product"])
def test_a_nul_character_is_refused_in_any_text(field: str) -> None:
    assert refused_fields(request(**{field: "a\x00b"})) == {field}


def headers(**overrides: bytes) -> list[tuple[str, bytes | None]]:
    values = {
        "ce_specversion": b"1.0",
        "ce_id": b"ce-1",
        "ce_source": b"/portal",
        "ce_type": str(CeType.TERMINATION_REQUESTED).encode(),
        "content-type": b"application/json",
        **overrides,
    }
    return list(values.items())


def read(value: bytes, key: bytes | None = b"sub-1", **overrides: bytes) -> object:
    return read_input(Topic.TERMINATION_REQUESTED, headers(**overrides), value, key)


def test_a_value_larger_than_any_event_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(OversizeMessage, match="value"):
        read(request(product="x" * VALUE_MAX_BYTES))


def test_a_key_longer_than_any_id_is_refused() -> None:
    read(request(), key=b"k" * KEY_MAX_BYTES)
    with pytest.raises(OversizeMessage, match="key"):
        read(request(), key=b"k" * (KEY_MAX_BYTES + 1))


def test_ce_id_is_an_id_and_other_attributes_are_bounded() -> None:
    read(request(), ce_id=b"c" * ID_MAX_LENGTH)
    with pytest.raises(OversizeMessage, match="id"):
        read(request(), ce_id=b"c" * (ID_MAX_LENGTH + 1))
    with pytest.raises(OversizeMessage, match="ce_source"):
        read(request(), ce_source=b"s" * (ATTRIBUTE_MAX_LENGTH + 1))


def test_a_nul_in_ce_id_is_refused() -> None:
    with pytest.raises(InvalidAttribute, match="NUL"):
        read(request(), ce_id=b"ce\x00-1")


def test_a_ce_time_at_the_calendars_edge_is_refused() -> None:
    with pytest.raises(InvalidAttribute, match="time"):
        read(request(), ce_time=b"9999-12-31T23:59:59-23:59")


def structured(event: str) -> object:
    return read(event.encode(), **{"content-type": b"application/cloudevents+json"})


def test_a_structured_event_nested_5000_deep_is_not_json() -> None:
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(NotJson, match="recursion limit"):
        structured(f'{{"specversion": "1.0", "id": "x", "deep": {deep}}}')


def test_nan_in_a_structured_event_is_not_json() -> None:
    with pytest.raises(NotJson):
        structured('{"specversion": "1.0", "id": NaN, "data": {}}')


def test_json_nests_at_most_json_max_depth_levels_in_either_mode() -> None:
    def nested(levels: int) -> str:  # the data object is the outermost level
        inner = levels - 1
        return '{"product": ' + "[" * inner + "]" * inner + "}"

    with pytest.raises(InvalidEventData, match="product"):  # parsed, then refused as not a string
        validate_data(TerminationRequested, nested(JSON_MAX_DEPTH).encode())
    with pytest.raises(NotJson, match="recursion limit"):
        validate_data(TerminationRequested, nested(JSON_MAX_DEPTH + 1).encode())
    event = '{{"specversion": "1.0", "id": "x", "data": {}}}'
    with pytest.raises(NotJson, match="recursion limit"):
        structured(event.format(nested(JSON_MAX_DEPTH)))  # one level more: the event around the data
