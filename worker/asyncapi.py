"""The worker's AsyncAPI document, as FastStream generates it from the worker's own broker.

    refund-worker asyncapi                          # print it
    refund-worker asyncapi --output schemas/asyncapi.json
    refund-worker asyncapi --check schemas/asyncapi.json

The worker is built as `refund-worker run` builds it, from default settings (never the caller's
environment, so everyone generates the same bytes) and a neutral server address; nothing connects.
One addition to what FastStream writes: the input channels' payloads. The subscribers read raw
records (the pipeline parses each one itself, to isolate poison), so FastStream cannot see the
data model in their signatures; the document gets each input topic's model, as JSON Schema, instead
of an empty payload. tests/unit/test_asyncapi_file.py fails when the committed file falls behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.events import INPUT_MODELS
from schemas.topics import Topic
from worker.app import Services, build_worker
from worker.settings import Settings

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "schemas" / "asyncapi.json"
SERVER = "kafka:9092"
_UNUSED_DATABASE = "postgresql://refund-worker@postgres:5432/refunds"
_REF_TEMPLATE = "#/components/schemas/{model}"


async def generate() -> dict[str, Any]:
    worker = build_worker(Settings.model_construct(), Services(SERVER, _UNUSED_DATABASE))
    try:
        document: dict[str, Any] = worker.app.schema.to_specification().to_jsonable()
    finally:
        await worker.app.stop()  # never started: this only releases the unused clients
    _describe_input_payloads(document)
    _sort_by_name(document)
    return document


async def render() -> str:
    return json.dumps(await generate(), indent=2, ensure_ascii=False) + "\n"


def _describe_input_payloads(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for channel in document.get("channels", {}).values():
        model = _input_model(channel.get("address", ""))
        if model is None:
            continue
        schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
        for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are named {name!r} in the AsyncAPI document")
        for reference in channel.get("messages", {}).values():
            message = components["messages"][reference["$ref"].rsplit("/", 1)[-1]]
            message["payload"] = {"$ref": _REF_TEMPLATE.format(model=model.__name__)}
    empty = _REF_TEMPLATE.format(model="EmptyPayload")
    if "EmptyPayload" in schemas and empty not in json.dumps(components.get("messages", {})):
        del schemas["EmptyPayload"]


def _sort_by_name(document: dict[str, Any]) -> None:
    """FastStream lists subscribers from a WeakSet, whose order may change between runs."""
    for parent, key in [(document, "channels"), (document, "operations")] + [
        (document.get("components", {}), key) for key in ("messages", "schemas")
    ]:
        if key in parent:
            parent[key] = dict(sorted(parent[key].items()))


def _input_model(address: str) -> type[BaseModel] | None:
    try:
        return INPUT_MODELS.get(Topic(address))
    except ValueError:
        return None
