"""One example message, as it travels: Kafka key, CloudEvents headers in the order the worker writes
them, and data. The examples themselves are in schemas/examples.py and the modules it gathers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from schemas.dataschema import schema_id
from schemas.topics import TOPICS, Topic

PORTAL_SOURCE = "/portal/res-b3"
ADMIN_PORTAL_SOURCE = "/admin-portal/res-b3"
WORKER_SOURCE = "/refund-worker"


@dataclass(frozen=True, slots=True)
class Example:
    """One message: what a producer writes, or what the worker publishes."""

    topic: Topic
    summary: str
    key: str
    headers: Mapping[str, str]
    """Header name -> UTF-8 text, in the order the worker writes them."""
    data: Mapping[str, Any]
    """The Kafka value: the CloudEvent's JSON `data`."""

    def as_json(self) -> dict[str, Any]:
        """The example as docs/contract.md writes it: `{"key", "headers", "data"}`."""
        return {"key": self.key, "headers": dict(self.headers), "data": dict(self.data)}


def _headers(topic: Topic, event_id: str, time: str, source: str | None) -> dict[str, str]:
    spec = TOPICS[topic]
    headers = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": source or (PORTAL_SOURCE if spec.is_input else WORKER_SOURCE),
        "ce_type": str(spec.ce_type),
        "ce_time": time,
    }
    if not spec.is_input:
        headers["ce_dataschema"] = schema_id(topic)
    headers["content-type"] = "application/json"
    return headers


def example(
    topic: Topic, summary: str, event_id: str, time: str, data: dict[str, Any], source: str | None = None
) -> tuple[Topic, Example]:
    spec = TOPICS[topic]
    key = data[spec.key_field] if data[spec.key_field] is not None else data[spec.key_fallback or ""]
    headers = _headers(topic, event_id, time, source)
    return topic, Example(topic, summary, key, headers, MappingProxyType(data))
