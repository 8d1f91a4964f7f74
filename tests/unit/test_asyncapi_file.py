"""schemas/asyncapi.json is what `refund-worker asyncapi` writes now, it describes the contract, and
the AsyncAPI parser that code generators use reads it without an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.dataschema import schema_id
from schemas.events import DATA_MODELS
from schemas.examples import EXAMPLES
from schemas.export import data_schema
from schemas.topics import NOT_YET_SERVED, TOPICS, Topic
from worker.entrypoints.asyncapi import DOCUMENT_PATH, SERVED_TOPICS, build_document, render
from worker.entrypoints.asyncapi import _agree_with_worker as agree_with_worker
from worker.entrypoints.asyncapi_topics import message_name
from worker.entrypoints.cli import app

REGENERATE = "run refund-worker asyncapi --output schemas/asyncapi.json and commit it"
PARSER_DIR = Path(__file__).resolve().parents[2] / "tools" / "asyncapi"
CE_HEADERS = {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"}


@pytest.fixture(scope="module")
async def rendered() -> str:
    return await render()


@pytest.fixture(scope="module")
def document(rendered: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(rendered)
    return parsed


def resolve(document: dict[str, Any], reference: str) -> Any:
    node: Any = document
    for key in reference.removeprefix("#/").split("/"):
        assert key in node, f"{reference} does not resolve"
        node = node[key]
    return node


def message_of(document: dict[str, Any], topic: Topic) -> dict[str, Any]:
    (reference,) = document["channels"][topic.value]["messages"].values()
    found: dict[str, Any] = resolve(document, reference["$ref"])
    return found


def test_committed_document_is_up_to_date(rendered: str) -> None:
    assert DOCUMENT_PATH.is_file(), f"{DOCUMENT_PATH} is missing: {REGENERATE}"
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == rendered, f"{DOCUMENT_PATH} is stale: {REGENERATE}"


def test_one_channel_per_topic_named_after_it_with_one_operation_in_its_direction(
    document: dict[str, Any],
) -> None:
    assert set(document["channels"]) == {topic.value for topic in SERVED_TOPICS}
    actions = {}
    for operation in document["operations"].values():
        channel = resolve(document, operation["channel"]["$ref"])
        assert channel["address"] not in actions, f"two operations on {channel['address']}"
        actions[channel["address"]] = operation["action"]
    assert actions == {
        topic.value: "receive" if TOPICS[topic].is_input else "send" for topic in SERVED_TOPICS
    }


@pytest.mark.parametrize("topic", SERVED_TOPICS, ids=str)
def test_each_message_is_named_after_its_model_and_carries_its_schema(
    document: dict[str, Any], topic: Topic
) -> None:
    message = message_of(document, topic)
    assert message["name"] == DATA_MODELS[topic].__name__ == message_name(topic)
    payload = resolve(document, message["payload"]["$ref"])
    exported = data_schema(topic, ref_template="#/components/schemas/{model}")
    exported.pop("$defs", None)
    assert payload == exported, "the payload is not the schema of schemas/json/"
    assert set(payload["properties"]) == set(DATA_MODELS[topic].model_fields)


@pytest.mark.parametrize("topic", SERVED_TOPICS, ids=str)
def test_each_message_describes_the_cloudevents_headers_and_the_kafka_key(
    document: dict[str, Any], topic: Topic
) -> None:
    spec = TOPICS[topic]
    message = message_of(document, topic)
    headers = resolve(document, message["headers"]["$ref"])
    assert set(headers["properties"]) >= CE_HEADERS
    assert headers["properties"]["ce_type"]["const"] == spec.ce_type
    assert {"ce_id", "ce_type", "ce_source", "ce_specversion"} <= set(headers["required"])
    if not spec.is_input:
        assert headers["properties"]["ce_dataschema"]["const"] == schema_id(topic)
        assert set(headers["required"]) == {*CE_HEADERS, "ce_dataschema"}
    kafka = message["bindings"]["kafka"]
    assert kafka["key"]["type"] == "string"
    assert spec.key_field in kafka["key"]["description"]


@pytest.mark.parametrize("topic", SERVED_TOPICS, ids=str)
def test_a_correlation_id_points_only_at_what_is_really_there(document: dict[str, Any], topic: Topic) -> None:
    message = message_of(document, topic)
    if "correlationId" not in message:
        return
    where, _, field = message["correlationId"]["location"].partition("#/")
    part = {"$message.header": "headers", "$message.payload": "payload"}[where]
    schema = resolve(document, message[part]["$ref"])
    assert field in schema["properties"]
    assert field in schema.get("required", [])
    assert field in ({"ce_id"} if part == "headers" else {"request_id", "adjustment_id"})


def test_answers_correlate_with_the_request(document: dict[str, Any]) -> None:
    correlated = {topic for topic in SERVED_TOPICS if "correlationId" in message_of(document, topic)}
    assert correlated == {
        Topic.TERMINATION_REQUESTED,
        Topic.REFUND_ISSUED,
        Topic.SUBSCRIPTION_TERMINATED,
        Topic.TERMINATION_REJECTED,
        Topic.BALANCE_ADJUSTMENT_REQUESTED,
        Topic.BALANCE_ADJUSTED,
        Topic.ADJUSTMENT_REJECTED,
        Topic.MONEY_REFUND_REQUESTED,
        Topic.PAYMENT_REFUND_INSTRUCTED,
        Topic.MONEY_REFUND_UPDATED,
    }


@pytest.mark.parametrize("topic", SERVED_TOPICS, ids=str)
def test_each_message_shows_the_topics_example(document: dict[str, Any], topic: Topic) -> None:
    (example,) = message_of(document, topic)["examples"]
    assert example["headers"] == dict(EXAMPLES[topic].headers)
    assert example["payload"] == dict(EXAMPLES[topic].data)
    assert repr(EXAMPLES[topic].key) in example["summary"]


def test_describes_every_topic_with_a_model_but_those_the_worker_does_not_serve_yet() -> None:
    assert set(SERVED_TOPICS) == set(DATA_MODELS) - NOT_YET_SERVED
    assert set(DATA_MODELS) >= NOT_YET_SERVED, "a topic not served yet still has its model and schema"


def test_no_schema_refuses_a_field_added_later(rendered: str) -> None:
    assert '"additionalProperties": false' not in rendered


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for reference in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        resolve(document, reference)


def test_refuses_to_describe_a_topic_the_worker_does_not_handle() -> None:
    document = build_document()
    worker = {topic.value: "receive" if TOPICS[topic].is_input else "send" for topic in SERVED_TOPICS}
    agree_with_worker(document, worker)
    del worker[Topic.SUBSCRIPTION_RENEWED.value]
    with pytest.raises(ValueError, match="the worker does"):
        agree_with_worker(document, worker)


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


# --- the real parser ------------------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: the AsyncAPI document cannot be checked with @asyncapi/parser"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def parse_with_asyncapi_parser(path: Path) -> tuple[int, dict[str, Any]]:
    """(exit status, report) of tools/asyncapi/validate.mjs; installs the pinned parser when needed."""
    node = _tool("node")
    if not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        # --ignore-scripts: a dependency's postinstall only sends telemetry; the lock file pins the rest.
        subprocess.run(
            [_tool("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=PARSER_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    done = subprocess.run(
        [node, "validate.mjs", str(path)], cwd=PARSER_DIR, capture_output=True, text=True, timeout=120
    )
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    status, report = parse_with_asyncapi_parser(DOCUMENT_PATH)
    errors = [d for d in report["diagnostics"] if d["severity"] in ("error", "warning")]
    assert status == 0, errors
    assert errors == []
    return report


@pytest.mark.slow
def test_the_asyncapi_parser_sees_each_topics_message_headers_key_and_example(parsed: dict[str, Any]) -> None:
    by_channel = {message["channel"]: message for message in parsed["messages"]}
    assert set(by_channel) == {topic.value for topic in SERVED_TOPICS}
    for topic in SERVED_TOPICS:
        message = by_channel[topic.value]
        assert message["name"] == message_name(topic)
        assert message["operations"] == ["receive" if TOPICS[topic].is_input else "send"]
        assert set(message["headers"]) >= CE_HEADERS
        assert message["payloadProperties"] == list(DATA_MODELS[topic].model_fields)
        assert message["key"]["type"] == "string"
        assert message["examples"] == 1
        assert message["correlationId"] in (
            None,
            "$message.header#/ce_id",
            "$message.payload#/request_id",
            "$message.payload#/adjustment_id",
        )


@pytest.mark.slow
def test_the_asyncapi_check_fails_on_an_example_that_breaks_its_schema(tmp_path: Path) -> None:
    document = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    example = document["components"]["messages"]["RefundIssued"]["examples"][0]
    example["payload"]["months_refunded"] = "eleven"
    example["headers"]["ce_type"] = "refund.issued.v9"
    broken = tmp_path / "asyncapi.json"
    broken.write_text(json.dumps(document), encoding="utf-8")
    status, report = parse_with_asyncapi_parser(broken)
    assert status == 1
    failed = {d["path"] for d in report["diagnostics"] if d["code"] == "message-example"}
    assert failed == {
        "components/messages/RefundIssued/examples/0/payload",
        "components/messages/RefundIssued/examples/0/headers",
    }


def test_a_missing_node_fails_the_check_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="node is not installed"):
        _tool("node")


def test_a_missing_node_skips_the_check_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="node is not installed"):
        _tool("node")
