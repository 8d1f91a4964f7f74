"""What a CloudEvent is here (CloudEvents 1.0 in the Kafka binding, contract section 1): the names and
content types of the binding, the context attributes of one event, and the events as they are read.

Reading is in schemas/envelope.py, writing in schemas/outgoing.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from schemas.inputs import InputData

SPEC_VERSION = "1.0"
CE_PREFIX = "ce_"
CONTENT_TYPE_HEADER = "content-type"
JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_SOURCE = "/refund-worker"
"""The `ce_source` of the worker's own events unless its settings say otherwise."""

NO_EXTENSIONS: Mapping[str, str] = MappingProxyType({})

Headers = Iterable[tuple[str, bytes | None]]
"""Kafka headers as clients give them: (name, value) pairs, names possibly repeated, values possibly null."""


class ContentMode(StrEnum):
    BINARY = "binary"
    STRUCTURED = "structured"


@dataclass(frozen=True, slots=True)
class Attributes:
    """The CloudEvents context attributes of one event."""

    id: str
    source: str
    type: str
    time: datetime | None
    """Optional in CloudEvents; when present it is an RFC 3339 timestamp with an offset."""
    specversion: str = SPEC_VERSION
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    extensions: Mapping[str, str] = field(default_factory=lambda: NO_EXTENSIONS)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    attributes: Attributes
    data: bytes | dict[str, Any]
    """Binary mode: the value, JSON still to be validated (so it is parsed once). Structured: the `data`."""
    key: str | None
    mode: ContentMode


@dataclass(frozen=True, slots=True)
class InputEvent:
    """An input event, checked from envelope to data: what a handler works on."""

    attributes: Attributes
    data: InputData
    key: str | None
