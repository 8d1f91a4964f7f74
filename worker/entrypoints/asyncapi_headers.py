"""The headers schema of each message in the AsyncAPI document: the CloudEvents 1.0 attributes in
binary content mode, as Kafka headers (the CloudEvents Kafka protocol binding)."""

from __future__ import annotations

from typing import Any

from schemas.dataschema import schema_id
from schemas.envelope import DEFAULT_SOURCE, JSON_CONTENT_TYPE, SPEC_VERSION, STRUCTURED_CONTENT_TYPE
from schemas.topics import TopicSpec
from worker.entrypoints.asyncapi_topics import message_name


def headers_schema(spec: TopicSpec) -> dict[str, Any]:
    """The CloudEvents attributes of a binary-mode message, as Kafka headers (UTF-8 text)."""
    text = {"type": "string", "minLength": 1}
    optional = " (optional in CloudEvents; the worker reads a message without it)" if spec.is_input else ""
    properties: dict[str, Any] = {
        "ce_specversion": {"type": "string", "const": SPEC_VERSION},
        "ce_id": {
            **text,
            "description": (
                "The event's id and idempotency key: the same ce_id again has no second effect; "
                "the same ce_id with other data is dead-lettered."
                if spec.is_input
                else "Fixed when the decision is stored: a re-publish keeps it, so de-duplicate on it."
            ),
        },
        "ce_source": {
            **text,
            "description": "A URI-reference naming the producer"
            + ("." if spec.is_input else f"; `{DEFAULT_SOURCE}` unless CE_SOURCE says otherwise."),
        },
        "ce_type": {"type": "string", "const": str(spec.ce_type)},
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": f"RFC 3339 with an offset{optional}.",
        },
    }
    if spec.is_input:
        properties["content-type"] = {
            "type": "string",
            "examples": [JSON_CONTENT_TYPE],
            "description": (
                f"{JSON_CONTENT_TYPE}; a message without it is read as JSON. With "
                f"{STRUCTURED_CONTENT_TYPE} the message is in structured mode instead: the whole event "
                "is the value, and these ce_ headers are not read."
            ),
        }
        required = ["ce_specversion", "ce_id", "ce_source", "ce_type"]
    else:
        properties["ce_dataschema"] = {
            "type": "string",
            "const": schema_id(spec.topic),
            "description": "The $id of this data's JSON Schema (schemas/json/).",
        }
        properties["content-type"] = {"type": "string", "const": JSON_CONTENT_TYPE}
        required = list(properties)
    return {
        "type": "object",
        "title": f"{message_name(spec.topic)}Headers",
        "description": "CloudEvents 1.0 attributes in binary content mode (Kafka protocol binding).",
        "properties": properties,
        "required": required,
        "additionalProperties": True,
    }
