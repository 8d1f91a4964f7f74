"""The worker's AsyncAPI 3.0 document: every topic it reads and writes, for people and code generators.

    refund-worker asyncapi                          # print it
    refund-worker asyncapi --output schemas/asyncapi.json
    refund-worker asyncapi --check schemas/asyncapi.json

Written from the contract as code (`schemas/topics.py`, the data models, `schemas/examples.py`), not
taken as FastStream generates it: FastStream knows neither the CloudEvents headers nor the Kafka key,
names messages after its subscribers, adds a `correlationId` on a `correlation_id` header the worker
never sends, and puts the three input topics behind one description. What FastStream does see is
which topics the worker really consumes and publishes; `generate()` builds the worker as
`refund-worker run` does (default settings, never the caller's environment, so everyone generates the
same bytes; nothing connects) and refuses to write a document that disagrees with it.

Per topic: one channel (its id and address are the topic), one operation (`receive` or `send`), one
message named after its data model, with a headers schema (`ce_*` and `content-type`, the binary
content mode of the CloudEvents Kafka binding), the payload schema (the same as
schemas/json/<topic>.schema.json), the Kafka key as the Kafka message binding's `key`, and one example.
tests/unit/test_asyncapi_file.py checks it with @asyncapi/parser and fails when the committed file
falls behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.dataschema import schema_id
from schemas.envelope import DEFAULT_SOURCE, JSON_CONTENT_TYPE, SPEC_VERSION, STRUCTURED_CONTENT_TYPE
from schemas.events import DATA_MODELS
from schemas.examples import EXAMPLES
from schemas.export import data_schema
from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, TOPICS, Topic, TopicSpec
from worker.app import Services, build_worker
from worker.config.settings import Settings
from worker.handlers.inputs import DESCRIPTIONS
from worker.handlers.outputs import WHEN_PUBLISHED

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.json"
SERVER = "kafka:9092"
KAFKA_BINDING_VERSION = "0.5.0"
_UNUSED_DATABASE = "postgresql://refund-worker@postgres:5432/refunds"
_SCHEMAS = "#/components/schemas/"
_DESCRIPTION = (
    "Turns subscription terminations into refunds, credit notes and credit changes, exactly once.\n\n"
    "Every message is a CloudEvents 1.0 event in binary content mode (the CloudEvents Kafka protocol "
    "binding): the value is the JSON `data`, the attributes are the `ce_*` headers, and the Kafka key "
    "(UTF-8) is the data field named by each message's Kafka binding. Inputs may also use structured "
    f"mode (`content-type: {STRUCTURED_CONTENT_TYPE}`, the whole event as the value). Money is a "
    "decimal string with exactly the currency's ISO 4217 minor digits. Fields may be added to any "
    "message, never renamed: ignore the ones you do not know. Consumers de-duplicate on `ce_id`, which "
    "a re-published output keeps. The contract in prose: docs/contract.md."
)


async def generate() -> dict[str, Any]:
    document = build_document()
    _agree_with_worker(document, await _worker_channels())
    return document


async def render() -> str:
    return json.dumps(await generate(), indent=2, ensure_ascii=False) + "\n"


SERVED_TOPICS: tuple[Topic, ...] = (*INPUT_TOPICS, *OUTPUT_TOPICS)
"""What the document describes: the topics the worker reads and writes (schemas.topics.NOT_YET_SERVED
have JSON Schemas in schemas/json/ but join the document when the worker serves them)."""


def build_document(topics: tuple[Topic, ...] = SERVED_TOPICS) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics:
        spec = TOPICS[topic]
        name = message_name(topic)
        _add_schemas(schemas, topic, name)
        messages[name] = _message(spec, name)
        channels[topic.value] = _channel(spec, name)
        operations[operation_id(spec)] = _operation(spec, name)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "refund-worker", "version": "1.0.0", "description": _DESCRIPTION},
        "defaultContentType": JSON_CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": SERVER,
                "protocol": "kafka",
                "description": "The Kafka cluster; the worker's address of it is KAFKA_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def message_name(topic: Topic) -> str:
    """The message's name: its data model's (`RefundIssued`), what generated classes are called."""
    return DATA_MODELS[topic].__name__


def operation_id(spec: TopicSpec) -> str:
    return f"{'receive' if spec.is_input else 'send'}{message_name(spec.topic)}"


def _describe(spec: TopicSpec) -> str:
    what = DESCRIPTIONS.get(spec.topic) if spec.is_input else WHEN_PUBLISHED.get(spec.topic)
    direction = "The worker consumes it." if spec.is_input else "The worker publishes it."
    return (
        f"{what or spec.topic.value} {direction} CloudEvents type `{spec.ce_type}`; Kafka key: the data's "
        f"`{spec.key_field}` (UTF-8)."
    )


def _channel(spec: TopicSpec, name: str) -> dict[str, Any]:
    return {
        "address": spec.topic.value,
        "title": spec.topic.value,
        "description": _describe(spec),
        "servers": [{"$ref": "#/servers/kafka"}],
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        "bindings": {"kafka": {"topic": spec.topic.value, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operation(spec: TopicSpec, name: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": "receive" if spec.is_input else "send",
        "channel": {"$ref": f"#/channels/{spec.topic.value}"},
        "summary": f"{'Consume' if spec.is_input else 'Publish'} {spec.topic.value}.",
        "messages": [{"$ref": f"#/channels/{spec.topic.value}/messages/{name}"}],
    }
    if spec.is_input:
        group = {"type": "string", "default": "refund-worker", "description": "CONSUMER_GROUP"}
        operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING_VERSION}}
    return operation


def _message(spec: TopicSpec, name: str) -> dict[str, Any]:
    example = EXAMPLES.get(spec.topic)
    message: dict[str, Any] = {
        "name": name,
        "title": spec.topic.value,
        "summary": _describe(spec),
        "contentType": JSON_CONTENT_TYPE,
        "headers": {"$ref": f"{_SCHEMAS}{name}Headers"},
        "payload": {"$ref": f"{_SCHEMAS}{name}"},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"The data's `{spec.key_field}`, UTF-8.",
                    **({"examples": [example.key]} if example else {}),
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    correlation = _correlation_id(spec)
    if correlation is not None:
        message["correlationId"] = correlation
    if example is not None:
        message["examples"] = [
            {
                "name": f"{name}Example",
                "summary": f"{example.summary} (Kafka key {example.key!r}).",
                "headers": dict(example.headers),
                "payload": dict(example.data),
            }
        ]
    return message


def _correlation_id(spec: TopicSpec) -> dict[str, str] | None:
    """A termination request's `ce_id` header, and the `request_id` of the outputs that answer it."""
    if spec.topic is Topic.TERMINATION_REQUESTED:
        return {
            "description": "The request's ce_id; the events that answer it carry it as request_id.",
            "location": "$message.header#/ce_id",
        }
    if not spec.is_input and "request_id" in DATA_MODELS[spec.topic].model_fields:
        expiry = " (null for an expiry)" if spec.topic is Topic.SUBSCRIPTION_TERMINATED else ""
        return {
            "description": f"The ce_id of the termination-requested event this answers{expiry}.",
            "location": "$message.payload#/request_id",
        }
    return None


def _add_schemas(schemas: dict[str, Any], topic: Topic, name: str) -> None:
    payload = data_schema(topic, ref_template=_SCHEMAS + "{model}")
    for model, definition in {**payload.pop("$defs", {}), name: payload}.items():
        if schemas.setdefault(model, definition) != definition:
            raise ValueError(f"two different schemas are named {model!r} in the AsyncAPI document")
    schemas[f"{name}Headers"] = headers_schema(TOPICS[topic])


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


async def _worker_channels() -> dict[str, str]:
    """Topic -> `receive` or `send`, as FastStream sees the worker's own subscribers and publishers."""
    worker = build_worker(Settings.model_construct(), Services(SERVER, _UNUSED_DATABASE))
    try:
        seen: dict[str, Any] = worker.app.schema.to_specification().to_jsonable()
    finally:
        await worker.app.stop()  # never started: this only releases the unused clients
    addresses = {key: channel["address"] for key, channel in seen.get("channels", {}).items()}
    return {
        addresses[operation["channel"]["$ref"].rsplit("/", 1)[-1]]: operation["action"]
        for operation in seen.get("operations", {}).values()
    }


def _agree_with_worker(document: dict[str, Any], worker: dict[str, str]) -> None:
    documented = {
        document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[-1]]["address"]: operation["action"]
        for operation in document["operations"].values()
    }
    if documented != worker:
        raise ValueError(f"the AsyncAPI document says {documented}, but the worker does {worker}")
