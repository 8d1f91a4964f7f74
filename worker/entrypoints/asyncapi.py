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
falls behind. Here: the document as a whole and its agreement with the worker; one topic's parts are
worker/entrypoints/asyncapi_topics.py, their headers schemas worker/entrypoints/asyncapi_headers.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.envelope import JSON_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from schemas.export import data_schema
from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, TOPICS, Topic
from worker.app import Services, build_worker
from worker.config.settings import Settings
from worker.entrypoints.asyncapi_headers import headers_schema
from worker.entrypoints.asyncapi_topics import (
    SCHEMAS,
    channel_of,
    message_name,
    message_of,
    operation_id,
    operation_of,
)

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.json"
SERVER = "kafka:9092"
_UNUSED_DATABASE = "postgresql://refund-worker@postgres:5432/refunds"
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
        messages[name] = message_of(spec, name)
        channels[topic.value] = channel_of(spec, name)
        operations[operation_id(spec)] = operation_of(spec, name)
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


def _add_schemas(schemas: dict[str, Any], topic: Topic, name: str) -> None:
    payload = data_schema(topic, ref_template=SCHEMAS + "{model}")
    for model, definition in {**payload.pop("$defs", {}), name: payload}.items():
        if schemas.setdefault(model, definition) != definition:
            raise ValueError(f"two different schemas are named {model!r} in the AsyncAPI document")
    schemas[f"{name}Headers"] = headers_schema(TOPICS[topic])


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
