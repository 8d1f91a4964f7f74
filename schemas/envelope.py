"""Reading CloudEvents 1.0 over Kafka, as the contract uses it (section 1): binary mode, or structured
mode (`content-type: application/cloudevents+json`, the whole event as the JSON value); the content
type decides, as the Kafka binding says. Writing (binary mode, always) is in schemas/outgoing.py; both
are re-exported here.

The headers are read directly rather than through the `cloudevents` SDK: the SDK invents a random
`ce_id` (and a `ce_time` of now) when the header is missing, which would turn a broken message into a
new, never-duplicate request, and it is several times slower on this hot path (numbers in
schemas/README.md). The tests use the SDK as the independent producer of both modes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from schemas.cloudevent import (
    CE_PREFIX,
    CONTENT_TYPE_HEADER,
    DEFAULT_SOURCE,
    JSON_CONTENT_TYPE,
    NO_EXTENSIONS,
    SPEC_VERSION,
    STRUCTURED_CONTENT_TYPE,
    Attributes,
    ContentMode,
    Headers,
    IncomingEvent,
    InputEvent,
)
from schemas.errors import (
    InvalidAttribute,
    InvalidEnvelope,
    MissingAttribute,
    NotJson,
    UnexpectedEventType,
    UnsupportedContentType,
    describe,
)
from schemas.events import INPUT_MODELS, validate_data
from schemas.limits import ATTRIBUTE_MAX_LENGTH, ID_MAX_LENGTH, KEY_MAX_BYTES, VALUE_MAX_BYTES
from schemas.outgoing import OutgoingMessage, binary_headers, encode_output, format_time
from schemas.refusals import shown
from schemas.topics import spec_of
from schemas.wire import Timestamp

_REQUIRED = ("specversion", "id", "source", "type")
_OPTIONAL = ("time", "datacontenttype", "dataschema", "subject")
_KNOWN = frozenset((*_REQUIRED, *_OPTIONAL))
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}", re.ASCII)
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


class OversizeMessage(InvalidEnvelope):
    """The key, the value or an attribute is longer than any event of the contract can be
    (schemas/limits.py): refused before it is parsed, so that no step spends long on it."""


def parse_message(headers: Headers | None, value: bytes | None, key: bytes | None = None) -> IncomingEvent:
    """The CloudEvent in a Kafka message, either mode; raises an InvalidEnvelope subclass naming the fault.

    In binary mode the value is not parsed here: `read_input` validates it (raising NotJson if need be).
    """
    _check_sizes(value, key)
    found, content_type = _scan_headers(headers or ())
    media_type = JSON_CONTENT_TYPE if content_type is None else _media_type(content_type)
    if content_type is not None and media_type.startswith("application/cloudevents"):
        return _structured(content_type, value, _decode_key(key))
    if media_type != JSON_CONTENT_TYPE:
        raise UnsupportedContentType(
            f"content-type {content_type!r} is neither {JSON_CONTENT_TYPE} nor structured"
        )
    if not value:
        raise NotJson("the message has no value, so no JSON data")
    found["datacontenttype"] = content_type
    return IncomingEvent(_attributes(found, "header ce_"), value, _decode_key(key), ContentMode.BINARY)


def read_input(
    topic: str, headers: Headers | None, value: bytes | None, key: bytes | None = None
) -> InputEvent:
    """An input message of `topic`, envelope and data checked; raises an InvalidMessage subclass otherwise."""
    spec = spec_of(topic)
    if not spec.is_input:
        raise ValueError(f"{topic!r} is an output topic; the worker does not consume it")
    event = parse_message(headers, value, key)
    if event.attributes.type != spec.ce_type:
        raise UnexpectedEventType(
            f"ce_type {event.attributes.type!r} does not belong on {topic}, which carries {spec.ce_type!r}"
        )
    return InputEvent(event.attributes, validate_data(INPUT_MODELS[spec.topic], event.data), event.key)


def _check_sizes(value: bytes | None, key: bytes | None) -> None:
    if value is not None and len(value) > VALUE_MAX_BYTES:
        raise OversizeMessage(f"the value has {len(value)} bytes, more than the {VALUE_MAX_BYTES} allowed")
    if key is not None and len(key) > KEY_MAX_BYTES:
        raise OversizeMessage(f"the key has {len(key)} bytes, more than the {KEY_MAX_BYTES} allowed")


def _scan_headers(headers: Headers) -> tuple[dict[str, str | None], str | None]:
    """The ce_* attributes (by name, without the prefix) and the content type, decoded as UTF-8."""
    found: dict[str, str | None] = {}
    content_type: str | None = None
    for name, raw in headers:
        lowered = name.lower()
        if lowered.startswith(CE_PREFIX):
            attribute = lowered[len(CE_PREFIX) :]
            text = _header_text(name, raw)
            if found.get(attribute, text) != text:
                raise InvalidAttribute(f"header {shown(name)} appears twice with different values")
            found[attribute] = text
        elif lowered == CONTENT_TYPE_HEADER:
            content_type = _header_text(name, raw)
    return found, content_type


def _header_text(name: str, raw: bytes | None) -> str:
    if raw is None:
        raise InvalidAttribute(f"header {shown(name)} has no value")
    if len(raw) > ATTRIBUTE_MAX_LENGTH:
        raise OversizeMessage(f"header {shown(name)} has {len(raw)} bytes, more than {ATTRIBUTE_MAX_LENGTH}")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise InvalidAttribute(f"header {shown(name)} is not UTF-8") from None


def _decode_key(key: bytes | None) -> str | None:
    try:
        return None if key is None else key.decode()
    except UnicodeDecodeError:
        raise InvalidEnvelope("the message key is not UTF-8") from None


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _structured(content_type: str, value: bytes | None, key: str | None) -> IncomingEvent:
    if _media_type(content_type) != STRUCTURED_CONTENT_TYPE:
        raise UnsupportedContentType(f"content-type {content_type!r}: only {STRUCTURED_CONTENT_TYPE} is read")
    try:
        # pydantic-core's parser, not json.loads: it stops at a nesting depth (json.loads would raise
        # RecursionError, which no caller expects) and refuses NaN and Infinity, which are not JSON.
        event = from_json(value or b"", allow_inf_nan=False)
    except ValueError as error:  # invalid JSON, invalid UTF-8, too deep
        raise NotJson(f"the structured event is not JSON: {error}") from None
    if not isinstance(event, dict):
        raise NotJson("the structured event is not a JSON object")
    data = event.pop("data", None)
    if not isinstance(data, dict):
        raise NotJson("the structured event's data is not a JSON object (data_base64 is not read)")
    if event.get("datacontenttype") not in (None, JSON_CONTENT_TYPE):
        raise UnsupportedContentType(
            f"datacontenttype {shown(event['datacontenttype'])} is not {JSON_CONTENT_TYPE}"
        )
    return IncomingEvent(_attributes(event, "attribute "), data, key, ContentMode.STRUCTURED)


def _attributes(found: Mapping[str, object], where: str) -> Attributes:
    """Attributes from raw texts, checked as CloudEvents 1.0 requires; `where` prefixes names in errors."""
    specversion = _required(found, "specversion", where)
    if specversion != SPEC_VERSION:
        raise InvalidAttribute(f"{where}specversion is {specversion!r}; only {SPEC_VERSION!r} is read")
    return Attributes(
        id=_required(found, "id", where),
        source=_required(found, "source", where),
        type=_required(found, "type", where),
        time=_time(_optional(found, "time", where), where),
        datacontenttype=_optional(found, "datacontenttype", where),
        dataschema=_optional(found, "dataschema", where),
        subject=_optional(found, "subject", where),
        # Checking the set view first keeps the usual case (no extensions) cheap.
        extensions=NO_EXTENSIONS if found.keys() <= _KNOWN else _extensions(found, where),
    )


def _required(found: Mapping[str, object], name: str, where: str) -> str:
    value = _optional(found, name, where)
    if value is None:
        raise MissingAttribute(f"{where}{name} is missing")
    return value


def _optional(found: Mapping[str, object], name: str, where: str) -> str | None:
    value = found.get(name)
    limit = ID_MAX_LENGTH if name == "id" else ATTRIBUTE_MAX_LENGTH
    if value is None or (isinstance(value, str) and 0 < len(value) <= limit and "\x00" not in value):
        return value  # the usual case in one test; below, which rule a bad value (an empty one too) breaks
    if isinstance(value, str) and len(value) > limit:
        raise OversizeMessage(f"{where}{name} has {len(value)} characters, more than the {limit} allowed")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidAttribute(f"{where}{name} must not contain U+0000 (NUL)")
    raise InvalidAttribute(f"{where}{name} must be a non-empty string, got {shown(value)}")


def _time(text: str | None, where: str) -> datetime | None:
    if text is None:
        return None
    try:
        return _TIMESTAMP.validate_python(text)
    except ValidationError as error:
        raise InvalidAttribute(f"{where}time {describe(error)}") from None


def _extensions(found: Mapping[str, object], where: str) -> Mapping[str, str]:
    names = found.keys() - _KNOWN
    extensions: dict[str, str] = {}
    for name in sorted(names):
        value = found[name]
        if _EXTENSION_NAME.fullmatch(name) is None:
            raise InvalidAttribute(
                f"{where}{shown(name)}: extension names are 1-20 lowercase letters and digits"
            )
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > ATTRIBUTE_MAX_LENGTH:
            raise OversizeMessage(f"{where}{name} has {len(text)} characters, over {ATTRIBUTE_MAX_LENGTH}")
        extensions[name] = text
    return MappingProxyType(extensions)


__all__ = [
    "CE_PREFIX",
    "CONTENT_TYPE_HEADER",
    "DEFAULT_SOURCE",
    "JSON_CONTENT_TYPE",
    "SPEC_VERSION",
    "STRUCTURED_CONTENT_TYPE",
    "Attributes",
    "ContentMode",
    "Headers",
    "IncomingEvent",
    "InputEvent",
    "OutgoingMessage",
    "OversizeMessage",
    "binary_headers",
    "encode_output",
    "format_time",
    "parse_message",
    "read_input",
]
