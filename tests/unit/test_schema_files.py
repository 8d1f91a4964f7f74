"""The committed JSON Schemas in schemas/json/ are exactly what the models produce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.events import DATA_MODELS
from schemas.export import JSON_DIR, file_name, render_all, stale_files, write_all
from schemas.topics import Topic

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
    assert schema["additionalProperties"] is False


def test_input_schemas_let_producers_add_fields() -> None:
    schema = json.loads(render_all()["termination-requested.schema.json"])
    assert "additionalProperties" not in schema
    assert schema["properties"]["amount_paid"]["type"] == "string"
