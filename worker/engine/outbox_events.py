"""The events the outbox stores and the relay publishes: ids derived from the request, the JSON data
encoded once when the decision is made, and the Kafka records built from them.

The JSON encoded here is both what COPY writes into the outbox (as text) and what the relay publishes after
the commit (worker/engine/outbox.py), so an event is serialised once. Hot use cases build their data
as plain dicts (`OutboxEvent.built`, e.g. worker/terminations/events.py), whose tests hold them to the
pydantic models; the others give a model (`OutboxEvent.of`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from schemas.dataschema import schema_id
from schemas.envelope import binary_headers
from schemas.events import message_key, topic_of
from schemas.outputs import OutputData
from schemas.topics import TopicSpec
from worker.engine.records import Headers, OutboundRecord

_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:refund-worker:events")
_NAMESPACE_SHA1 = hashlib.sha1(_EVENT_NAMESPACE.bytes, usedforsecurity=False)
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def derived_id(reseller_id: str, request_id: str, kind: str) -> str:
    """A stable id for the `kind` of thing a reseller's request caused: the same request always gives
    the same id, and two resellers' requests of the same id give different ones (contract section 7).
    The reseller's length goes first, so no reseller and request id pair reads as another.

    It is `str(uuid.uuid5(_EVENT_NAMESPACE, name))`, computed from the SHA-1 directly: the same text,
    a fifth of the time (uuid.UUID's checks and int conversions were 8 us of it; 4-6 ids a request).
    tests/unit/test_derived_ids.py holds it to uuid5."""
    sha1 = _NAMESPACE_SHA1.copy()
    sha1.update(f"{kind}/{len(reseller_id)}:{reseller_id}/{request_id}".encode())
    x = sha1.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


class OutboxEvent(NamedTuple):  # a named tuple, as the records (worker/engine/records.py)
    event_id: str
    topic: str
    key: str
    ce_type: str
    ce_time: datetime
    value: bytes
    """The data as JSON (UTF-8), exactly as published."""

    @property
    def data(self) -> dict[str, Any]:
        """The data decoded (for tests and tools; the worker never decodes it)."""
        decoded: dict[str, Any] = orjson.loads(self.value)
        return decoded

    @staticmethod
    def of(event_id: str, data: OutputData, time: datetime) -> OutboxEvent:
        """From a validated model: its JSON mode dump, so the wire is pydantic's."""
        spec = topic_of(type(data))
        key = message_key(data).decode()
        return OutboxEvent(
            event_id,
            spec.topic.value,
            key,
            spec.ce_type.value,
            time,
            orjson.dumps(data.model_dump(mode="json")),
        )

    @staticmethod
    def built(event_id: str, spec: TopicSpec, data: Mapping[str, Any], time: datetime) -> OutboxEvent:
        """From data already in JSON mode (strings, numbers, booleans, None, lists, dicts), keyed by
        the topic's key field, as `of` would give for the same model."""
        key = data[spec.key_field]
        if key is None and spec.key_fallback is not None:
            key = data[spec.key_fallback]
        return OutboxEvent(event_id, spec.topic.value, key, spec.ce_type.value, time, _json(data))


def _json(data: Mapping[str, Any]) -> bytes:
    """orjson's bytes, copied to their size: orjson's own keep the 4 KiB it started with, so a batch
    of 2000 requests held 24 MiB more than its JSON while its events waited to be published."""
    return memoryview(orjson.dumps(data)).tobytes()


class RecordBuilder:
    """Kafka records of stored events, the headers but ce_id built once per topic and time (a batch's
    events share a handful of those), in the order binary_headers gives them."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._headers: dict[tuple[str, str, datetime], tuple[Headers, Headers]] = {}

    def record(
        self, event_id: str, topic: str, key: str, ce_type: str, time: datetime, value: bytes
    ) -> OutboundRecord:
        shared = self._headers.get((topic, ce_type, time))
        if shared is None:
            if len(self._headers) > 64:
                self._headers.clear()
            headers = binary_headers(
                event_id="-", source=self._source, ce_type=ce_type, time=time, dataschema=schema_id(topic)
            )
            shared = self._headers[(topic, ce_type, time)] = (tuple(headers[:1]), tuple(headers[2:]))
        if not event_id:
            raise ValueError("event_id must not be empty")
        before, after = shared
        return OutboundRecord(topic, key.encode(), value, (*before, ("ce_id", event_id.encode()), *after))

    def records(self, events: Sequence[OutboxEvent]) -> list[OutboundRecord]:
        record = self.record
        return [record(e.event_id, e.topic, e.key, e.ce_type, e.ce_time, e.value) for e in events]
