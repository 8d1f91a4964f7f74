"""The committed JSON Schemas in schemas/json/ are exactly what the models produce."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.dataschema import schema_id
from schemas.events import DATA_MODELS, RefundIssued, TerminationRequested
from schemas.export import JSON_DIR, file_name, render_all, stale_files, write_all
from schemas.topics import TOPICS, Topic

TERMINATION = {
    "subscription_id": "sub-1",
    "account_id": "acc-1",
    "reseller_id": "res-1",
    "cycle_start": "2021-04-01",
    "cycle_months": 12,
    "amount_paid": "120.00",
    "currency": "SGD",
    "allow_refund": True,
    "requested_at": "2021-04-12T10:00:00+08:00",
    "requested_by": "op-1",
    "reason": "moving",
    "credit_note": None,
}

REGENERATE = "run python -m schemas.export and commit schemas/json/"


@pytest.mark.parametrize("topic", list(DATA_MODELS), ids=str)
def test_committed_schema_matches_the_models(topic: Topic) -> None:
    path = JSON_DIR / file_name(topic)
    assert path.is_file(), f"{path} is missing: {REGENERATE}"
    assert path.read_text(encoding="utf-8") == render_all()[path.name], f"{path} is out of date: {REGENERATE}"


def test_no_schema_file_is_left_from_a_removed_topic() -> None:
    assert stale_files() == [], f"stale or unknown files in {JSON_DIR}: {REGENERATE}"


def test_export_is_deterministic() -> None:
    assert render_all() == render_all()


def test_export_writes_one_file_per_topic_and_removes_leftovers(tmp_path: Path) -> None:
    (tmp_path / "refunds-old.schema.json").write_text("{}", encoding="utf-8")
    write_all(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(render_all())
    assert stale_files(tmp_path) == []


def test_schemas_name_their_topic_type_and_key() -> None:
    schema = json.loads(render_all()["credits-updated.schema.json"])
    assert (schema["x-topic"], schema["x-cloudevents-type"], schema["x-kafka-key"]) == (
        "credits-updated",
        "credits.updated.v1",
        "account_id",
    )


def objects_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every object schema (one with properties) in a JSON Schema, nested definitions included."""
    if isinstance(node, dict):
        if "properties" in node:
            yield node
        for child in node.values():
            yield from objects_in(child)
    elif isinstance(node, list):
        for child in node:
            yield from objects_in(child)


@pytest.mark.parametrize("topic", list(DATA_MODELS), ids=str)
def test_every_object_lets_fields_be_added(topic: Topic) -> None:
    schema = json.loads((JSON_DIR / file_name(topic)).read_text(encoding="utf-8"))
    objects = list(objects_in(schema))
    assert objects
    assert all(found["additionalProperties"] is True for found in objects)


def test_output_schemas_accept_a_field_added_later_while_the_model_still_forbids_it() -> None:
    schema = json.loads(render_all()["refund-issued.schema.json"])
    assert schema["$defs"]["IssuedCreditNote"]["additionalProperties"] is True
    assert RefundIssued.model_config.get("extra") == "forbid"
    assert "added" in schema["$comment"]


def test_input_schemas_say_unknown_fields_are_ignored() -> None:
    schema = json.loads(render_all()["termination-requested.schema.json"])
    assert "ignored" in schema["$comment"]
    assert schema["properties"]["amount_paid"]["type"] == "string"
    data = TerminationRequested.model_validate_json(json.dumps({**TERMINATION, "portal_version": "9"}))
    assert not hasattr(data, "portal_version")


@pytest.mark.parametrize("topic", list(DATA_MODELS), ids=str)
def test_each_schema_has_the_stable_id_its_events_name(topic: Topic) -> None:
    schema = json.loads((JSON_DIR / file_name(topic)).read_text(encoding="utf-8"))
    version = TOPICS[topic].ce_type.rsplit(".", 1)[-1]
    assert schema["$id"] == schema_id(topic) == f"urn:refund-worker:schema:{topic}:{version}"


def test_schema_ids_differ_per_topic() -> None:
    assert len({schema_id(topic) for topic in DATA_MODELS}) == len(DATA_MODELS)
