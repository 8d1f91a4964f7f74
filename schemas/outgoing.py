"""Writing the worker's events: binary content mode, always. The value is the JSON data; the
attributes are the headers `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time` (RFC 3339),
`ce_dataschema` (the `$id` of the topic's JSON Schema) and `content-type`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.cloudevent import CONTENT_TYPE_HEADER, DEFAULT_SOURCE, JSON_CONTENT_TYPE, SPEC_VERSION
from schemas.dataschema import schema_id
from schemas.events import OutputData, encode_data, message_key, topic_of


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def binary_headers(
    *, event_id: str, source: str, ce_type: str, time: datetime, dataschema: str | None = None
) -> list[tuple[str, bytes]]:
    """The binary-mode headers of an outgoing event. `event_id` is fixed when the decision is stored.

    `dataschema` (the worker's outputs: `schema_id(topic)`) becomes `ce_dataschema`, omitted when None.
    """
    for name, text in (("event_id", event_id), ("source", source), ("ce_type", ce_type)):
        if not text:
            raise ValueError(f"{name} must not be empty")
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", format_time(time).encode()),
    ]
    if dataschema is not None:
        headers.append(("ce_dataschema", dataschema.encode()))
    headers.append((CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()))
    return headers


def encode_output(
    data: OutputData, *, event_id: str, time: datetime, source: str = DEFAULT_SOURCE
) -> OutgoingMessage:
    """Everything to publish an output event: its topic, key, JSON value and CloudEvents headers."""
    spec = topic_of(type(data))
    headers = binary_headers(
        event_id=event_id, source=source, ce_type=spec.ce_type, time=time, dataschema=schema_id(spec.topic)
    )
    return OutgoingMessage(spec.topic, message_key(data), encode_data(data), headers)


def format_time(time: datetime) -> str:
    """RFC 3339, `Z` for UTC (as the SDK writes it); a naive time is refused, it has no instant."""
    if time.tzinfo is None or time.utcoffset() is None:
        raise ValueError(f"ce_time needs an offset, got the naive {time.isoformat()}")
    text = time.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
