"""schemas/asyncapi.json is what FastStream generates for the worker now, and it describes the contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.events import DATA_MODELS, INPUT_MODELS
from schemas.topics import TOPICS, Topic
from worker.asyncapi import DOCUMENT_PATH, render
from worker.cli import app

REGENERATE = "run refund-worker asyncapi --output schemas/asyncapi.json and commit it"


@pytest.fixture(scope="module")
async def rendered() -> str:
    return await render()


@pytest.fixture(scope="module")
def document(rendered: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(rendered)
    return parsed


def test_committed_document_is_up_to_date(rendered: str) -> None:
    assert DOCUMENT_PATH.is_file(), f"{DOCUMENT_PATH} is missing: {REGENERATE}"
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == rendered, f"{DOCUMENT_PATH} is stale: {REGENERATE}"


def channel_of(document: dict[str, Any], topic: Topic) -> dict[str, Any]:
    """The channel whose address is the topic (FastStream keys channels by subscriber and address)."""
    channels: list[dict[str, Any]] = list(document["channels"].values())
    (channel,) = [channel for channel in channels if channel["address"] == topic.value]
    return channel


def test_every_topic_of_the_contract_is_a_channel_in_its_direction(document: dict[str, Any]) -> None:
    actions = {
        document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[-1]]["address"]: operation["action"]
        for operation in document["operations"].values()
    }
    assert actions == {topic.value: "receive" if TOPICS[topic].is_input else "send" for topic in DATA_MODELS}


def payload_schema(document: dict[str, Any], topic: Topic) -> dict[str, Any]:
    (reference,) = channel_of(document, topic)["messages"].values()
    message = document["components"]["messages"][reference["$ref"].rsplit("/", 1)[-1]]
    schema_name = message["payload"]["$ref"].rsplit("/", 1)[-1]
    found: dict[str, Any] = document["components"]["schemas"][schema_name]
    return found


@pytest.mark.parametrize("topic", list(DATA_MODELS), ids=str)
def test_each_channel_carries_its_topics_data_model(document: dict[str, Any], topic: Topic) -> None:
    schema = payload_schema(document, topic)
    assert schema["title"] == DATA_MODELS[topic].__name__
    assert set(schema["properties"]) == set(DATA_MODELS[topic].model_fields)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for reference in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node: Any = document
        for key in reference.split("/"):
            assert key in node, f"#/{reference} does not resolve"
            node = node[key]


def test_inputs_accept_extra_fields_as_their_json_schemas_say(document: dict[str, Any]) -> None:
    for topic in INPUT_MODELS:
        assert "additionalProperties" not in payload_schema(document, topic)


def test_command_checks_and_writes_the_file(tmp_path: Path, rendered: str) -> None:
    target = tmp_path / "asyncapi.json"
    target.write_text("{}", encoding="utf-8")
    runner = CliRunner()
    stale = runner.invoke(app, ["asyncapi", "--check", str(target)])
    assert stale.exit_code == 1
    assert "is out of date" in stale.output
    assert runner.invoke(app, ["asyncapi", "--output", str(target)]).exit_code == 0
    assert target.read_text(encoding="utf-8") == rendered
    assert runner.invoke(app, ["asyncapi", "--check", str(target)]).exit_code == 0
